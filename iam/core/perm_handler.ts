/**
 * Instance permissions: a secret per registered instance and the permissions of each
 * functional server it may call. In memory only, as upstream (SMs re-register after a restart).
 * @module
 */
import { AosError } from "@aos/shared/errors";

/** Upstream limit of registered instances. */
export const MAX_INSTANCES = 256;

/** Identity of a service instance (common.v2.InstanceIdent). */
export interface InstanceIdent {
  itemId: string;
  subjectId: string;
  instance: bigint;
  type: number;
  preinstalled: boolean;
}

/** Functional server id → function name → permission string. */
export type FunctionalPermissions = Record<string, Record<string, string>>;

function key(i: InstanceIdent): string {
  return JSON.stringify([i.itemId, i.subjectId, i.instance.toString(), i.type, i.preinstalled]);
}

/** Registers instances and answers permission look-ups by secret. */
export class PermHandler {
  readonly #byInstance = new Map<
    string,
    { secret: string; ident: InstanceIdent; perms: FunctionalPermissions }
  >();
  readonly #bySecret = new Map<string, string>();
  readonly #newSecret: () => string;

  /** `newSecret` defaults to a random UUID. */
  constructor(newSecret: () => string = () => crypto.randomUUID()) {
    this.#newSecret = newSecret;
  }

  /** Returns the instance's secret (the existing one when already registered). */
  registerInstance(ident: InstanceIdent, perms: FunctionalPermissions): string {
    const k = key(ident);
    const existing = this.#byInstance.get(k);
    if (existing) {
      existing.perms = perms;
      return existing.secret;
    }
    if (this.#byInstance.size >= MAX_INSTANCES) {
      throw new AosError(
        "noMemory",
        `Cannot register instance: ${MAX_INSTANCES} instances already registered`,
      );
    }
    let secret = this.#newSecret();
    while (this.#bySecret.has(secret)) secret = this.#newSecret();
    this.#byInstance.set(k, { secret, ident, perms });
    this.#bySecret.set(secret, k);
    return secret;
  }

  /** Removes an instance; `notFound` when it is not registered. */
  unregisterInstance(ident: InstanceIdent): void {
    const k = key(ident);
    const entry = this.#byInstance.get(k);
    if (!entry) {
      throw new AosError(
        "notFound",
        `Instance ${ident.itemId}/${ident.subjectId}/${ident.instance} is not registered`,
      );
    }
    this.#byInstance.delete(k);
    this.#bySecret.delete(entry.secret);
  }

  /** The instance and its permissions for one functional server. */
  getPermissions(
    secret: string,
    functionalServerId: string,
  ): { ident: InstanceIdent; permissions: Record<string, string> } {
    const k = this.#bySecret.get(secret);
    const entry = k === undefined ? undefined : this.#byInstance.get(k);
    if (!entry) throw new AosError("notFound", "Unknown instance secret");
    const permissions = entry.perms[functionalServerId];
    if (!permissions) {
      throw new AosError(
        "notFound",
        `Instance has no permissions for functional server "${functionalServerId}"`,
      );
    }
    return { ident: entry.ident, permissions: { ...permissions } };
  }
}

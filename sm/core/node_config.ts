/**
 * Node config pushed by the CM (`CheckNodeConfig` / `SetNodeConfig` / `GetNodeConfigStatus`):
 * validated, versioned with strictly increasing semver, persisted to `nodeConfigFile`.
 * @module
 */
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { ciObject } from "@aos/shared/config";
import { AosError, toAosError } from "@aos/shared/errors";
import type { Logger } from "@aos/shared/logger";
import { compareSemver, isSemver } from "@aos/shared/core";

/** Largest node config accepted (bytes of JSON). */
export const MAX_NODE_CONFIG = 256 * 1024;

const threshold = ciObject({
  minTimeout: z.optional(z.string()),
  minThreshold: z.number(),
  maxThreshold: z.number(),
});

const identity = ciObject({
  id: z.optional(z.string()),
  codename: z.optional(z.string()),
  title: z.optional(z.string()),
  type: z.optional(z.string()),
});

/** Schema of a node config (one entry of the unit config's `nodes[]`). */
export const nodeConfigSchema = ciObject({
  version: z.optional(z.string()),
  node: z.optional(identity),
  nodeGroupSubject: identity,
  alertRules: z.optional(ciObject({
    cpu: z.optional(threshold),
    ram: z.optional(threshold),
    partitions: z.optional(z.array(
      ciObject({
        name: z.string(),
        minTimeout: z.optional(z.string()),
        minThreshold: z.number(),
        maxThreshold: z.number(),
      }),
    )),
    download: z.optional(threshold),
    upload: z.optional(threshold),
  })),
  resourceRatios: z.optional(ciObject({
    cpu: z.optional(z.number()),
    ram: z.optional(z.number()),
    storage: z.optional(z.number()),
    state: z.optional(z.number()),
  })),
  labels: z._default(z.array(z.string()), []),
  priority: z._default(z.number().check(z.int()), 0),
});

/** A parsed node config. */
export type NodeConfig = z.output<typeof nodeConfigSchema>;

/** `NodeConfigStatus` content. */
export interface NodeConfigStatus {
  state: "absent" | "installed" | "failed";
  version: string;
  error?: AosError;
}

/** Parses a node config JSON text; errors say which key is wrong. */
export function parseNodeConfig(text: string): NodeConfig {
  if (text.length > MAX_NODE_CONFIG) {
    throw new AosError("outOfRange", `Node config larger than ${MAX_NODE_CONFIG} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AosError("invalidArgument", `Node config is not JSON: ${(err as Error).message}`);
  }
  const r = nodeConfigSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new AosError("invalidArgument", `Node config key "${i.path.join(".")}": ${i.message}`);
  }
  return r.data;
}

/** Keeps the node config and its status; persists installed configs. */
export class NodeConfigManager {
  readonly #file: string;
  readonly #logger: Logger;
  #status: NodeConfigStatus = { state: "absent", version: "" };
  #config: NodeConfig | undefined;
  readonly #listeners = new Set<(cfg: NodeConfig) => void>();

  constructor(file: string, logger: Logger) {
    this.#file = file;
    this.#logger = logger;
  }

  /** Loads the persisted config (absent when there is none; failed when it is unreadable). */
  async load(): Promise<void> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#file);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    try {
      const { config, version } = JSON.parse(text) as { config: string; version: string };
      this.#config = parseNodeConfig(config);
      this.#status = { state: "installed", version };
    } catch (err) {
      this.#status = { state: "failed", version: "", error: toAosError(err) };
      this.#logger.error("stored node config is unreadable", { file: this.#file, error: err });
    }
  }

  /** Current status. */
  get status(): NodeConfigStatus {
    return { ...this.#status };
  }

  /** Current config, if installed. */
  get config(): NodeConfig | undefined {
    return this.#config;
  }

  /** Validates `text` as the next config `version` without applying it. */
  check(text: string, version: string): NodeConfig {
    if (this.#status.state === "failed" && this.#status.error) throw this.#status.error;
    const config = parseNodeConfig(text);
    if (!isSemver(version)) {
      throw new AosError(
        "invalidArgument",
        `Node config version "${version}" is not a semantic version`,
      );
    }
    if (this.#status.state === "installed") {
      const cmp = compareSemver(version, this.#status.version);
      if (cmp === 0) {
        throw new AosError("alreadyExist", `Node config version ${version} is already installed`);
      }
      if (cmp < 0) {
        throw new AosError(
          "wrongState",
          `wrong version: ${version} is older than the installed ${this.#status.version}`,
        );
      }
    }
    return config;
  }

  /** Checks, persists (atomically, 0600) and applies a config; listeners are notified. */
  async set(text: string, version: string): Promise<void> {
    const config = this.check(text, version);
    const tmp = `${this.#file}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify({ version, config: text }), { mode: 0o600 });
    await Deno.rename(tmp, this.#file);
    this.#config = config;
    this.#status = { state: "installed", version };
    this.#logger.info("node config installed", { version });
    for (const l of this.#listeners) l(config);
  }

  /** Called with each newly installed config. */
  subscribe(listener: (cfg: NodeConfig) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

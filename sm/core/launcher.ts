/**
 * The SM launcher: keeps the desired instances (what the CM sent) persisted, and reconciles the
 * runtime with them by planning typed steps (stop, install, start) from desired vs actual,
 * executing them, and re-planning until nothing is left. Every change of the desired set is
 * stored before it is acted on, so a crash at any point resumes from the stored set.
 * @module
 */
import type { InstanceIdent as WireIdent } from "@aos/proto/common/v2/common.ts";
import {
  InstanceInfo,
  type InstanceStatus as WireStatus,
  type UpdateInstances,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { AosError, Mutex, toAosError, toErrorInfo } from "@aos/shared/core";
import type { Logger } from "@aos/shared/logger";
import { parseDigest } from "@aos/shared/oci";

/** One desired instance as stored. */
export interface DesiredInstance {
  instanceId: string;
  info: InstanceInfo;
}

/** A change of the desired set: rows written (replacing a row of the same ID) and IDs removed. */
export interface DesiredChange {
  put?: DesiredInstance[];
  remove?: string[];
}

/** Where the desired set is persisted (SQLite in production). */
export interface InstanceStore {
  /** The desired set, ordered by item, subject and instance. */
  list(): DesiredInstance[];
  /** Applies a change all or nothing (one transaction). */
  apply(change: DesiredChange): void;
}

/** Runtime state of an instance as the launcher sees it. */
export type RunState = "activating" | "active" | "inactive" | "failed";

/** What the launcher needs from the container runtime. */
export interface RuntimePort {
  start(instance: DesiredInstance): Promise<{ state: RunState; error?: AosError }>;
  stop(instanceId: string): Promise<void>;
  /** Current states of the instances the runtime manages. */
  states(): Map<string, { state: RunState; error?: AosError }>;
}

/** What the launcher needs from the image manager. */
export interface ImagePort {
  /** Makes the item available (idempotent). */
  install(info: InstanceInfo, signal?: AbortSignal): Promise<void>;
  /** The item version is no longer used by any instance (kept for its TTL). */
  release(itemId: string, version: string): Promise<void>;
}

/** A planned action. */
export type Step =
  | { kind: "stop"; instanceId: string }
  | { kind: "start"; instanceId: string }
  | { kind: "release"; itemId: string; version: string };

/** Upstream starts instances with a pool of 4 workers. */
export const START_CONCURRENCY = 4;

/** Identity key of a wire instance ident. */
export function identKey(i: WireIdent | undefined): string {
  return i ? `${i.itemId}:${i.subjectId}:${i.instance}` : "";
}

function sameInfo(a: InstanceInfo, b: InstanceInfo): boolean {
  const x = InstanceInfo.encode(a).finish();
  const y = InstanceInfo.encode(b).finish();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * Plans the steps that take `actual` to `desired`: stop what is not desired (or runs with other
 * parameters), start what is desired and not running, release item versions nobody uses.
 * Failed instances are not restarted by re-planning (the runtime's restart policy gave up);
 * a changed `InstanceInfo` does restart them.
 */
export function planSteps(
  desired: readonly DesiredInstance[],
  actual: ReadonlyMap<string, { state: RunState; info?: InstanceInfo }>,
  usedBefore: ReadonlySet<string>,
): Step[] {
  const steps: Step[] = [];
  const want = new Map(desired.map((d) => [d.instanceId, d]));
  for (const [id, a] of actual) {
    const d = want.get(id);
    const running = a.state === "active" || a.state === "activating";
    if (!d || (a.info && !sameInfo(a.info, d.info))) {
      if (running || a.state === "failed") steps.push({ kind: "stop", instanceId: id });
    }
  }
  for (const d of desired) {
    const a = actual.get(d.instanceId);
    const changed = a?.info !== undefined && !sameInfo(a.info, d.info);
    if (!a || a.state === "inactive" || changed) {
      steps.push({ kind: "start", instanceId: d.instanceId });
    }
  }
  const usedNow = new Set(desired.map((d) => `${d.info.instance?.itemId}\u0000${d.info.version}`));
  for (const key of usedBefore) {
    if (!usedNow.has(key)) {
      const [itemId, version] = key.split("\u0000") as [string, string];
      steps.push({ kind: "release", itemId, version });
    }
  }
  return steps;
}

/** Validates an `InstanceInfo` from the CM; returns the reason it is unusable, if any. */
export function checkInstanceInfo(info: InstanceInfo): AosError | undefined {
  const i = info.instance;
  if (!i || !i.itemId || i.itemId.length > 256 || i.subjectId.length > 256) {
    return new AosError("invalidArgument", "instance ident without a valid item ID");
  }
  if (/[\s:/]/.test(i.itemId) || /[\s:/]/.test(i.subjectId)) {
    return new AosError(
      "invalidArgument",
      `item or subject ID "${i.itemId}/${i.subjectId}" has forbidden characters`,
    );
  }
  if (i.instance >= 2n ** 63n) {
    return new AosError("outOfRange", `instance index ${i.instance} is out of range`);
  }
  try {
    parseDigest(info.manifestDigest);
  } catch (err) {
    return toAosError(err, "invalidArgument");
  }
  if (!info.version || info.version.length > 64) {
    return new AosError("invalidArgument", "missing or oversized version");
  }
  return undefined;
}

/** Dependencies of {@link Launcher}. */
export interface LauncherDeps {
  store: InstanceStore;
  runtime: RuntimePort;
  images: ImagePort;
  /** ID of an instance (UUID v3 of its ident). */
  instanceIdOf: (ident: WireIdent) => string;
  /** Runtime ID reported in statuses. */
  runtimeId: string;
  logger: Logger;
  concurrency?: number;
}

/** Reconciles the runtime with the desired instances. */
export class Launcher {
  readonly #d: LauncherDeps;
  /** Instances that could not be prepared (bad info, install failure): reported as failed. */
  readonly #errors = new Map<string, { info: InstanceInfo; error: AosError }>();
  /** The InstanceInfo each running instance was started with. */
  readonly #startedWith = new Map<string, InstanceInfo>();
  /**
   * Updates and the start-up restore run one after the other. Upstream rejects an update that
   * overlaps a running one with wrongState and only logs it, which loses the CM's batch: a CM
   * that reconnects while the restore runs sends its desired set right then.
   */
  readonly #lock = new Mutex();

  constructor(deps: LauncherDeps) {
    this.#d = deps;
  }

  #usedItems(): Set<string> {
    return new Set(
      this.#d.store.list().map((d) => `${d.info.instance?.itemId}\u0000${d.info.version}`),
    );
  }

  /**
   * Applies an `update_instances` delta: persists the new desired set, then reconciles.
   * Resolves with statuses of requests that named nothing (a stop of an instance this node does
   * not have): upstream ignores those silently; here the CM gets an `inactive` status with a
   * `notFound` error, while the snapshot stays the real state. Waits for a running update or
   * restore to finish first.
   */
  update(update: UpdateInstances): Promise<WireStatus[]> {
    return this.#lock.run(() => this.#update(update));
  }

  async #update(update: UpdateInstances): Promise<WireStatus[]> {
    const usedBefore = this.#usedItems();
    const known = new Set(this.#d.store.list().map((d) => d.instanceId));
    const rejected: WireStatus[] = [];
    const removed: string[] = [];
    const put: DesiredInstance[] = [];
    for (const ident of update.stopInstances) {
      const id = this.#d.instanceIdOf(ident);
      if (!known.has(id) && !this.#errors.has(id)) {
        const error = new AosError(
          "notFound",
          `Cannot stop instance ${identKey(ident)}: it is not on this node`,
        );
        this.#d.logger.warn("stop of an unknown instance ignored", { ident: identKey(ident) });
        rejected.push({
          instance: ident,
          version: "",
          runtimeId: this.#d.runtimeId,
          manifestDigest: "",
          envVars: [],
          state: "inactive",
          error: toErrorInfo(error),
        });
        continue;
      }
      removed.push(id);
      this.#errors.delete(id);
    }
    for (const info of update.startInstances) {
      const bad = checkInstanceInfo(info);
      const id = info.instance
        ? this.#d.instanceIdOf(info.instance)
        : `invalid:${identKey(info.instance)}`;
      if (bad) {
        this.#d.logger.warn("instance rejected", { item: info.instance?.itemId, error: bad });
        this.#errors.set(id, { info, error: bad });
        continue;
      }
      this.#errors.delete(id);
      put.push({ instanceId: id, info });
    }
    // One transaction for the whole batch: a crash stores all of it or none.
    this.#d.store.apply({ put, remove: removed });
    await this.#reconcile(usedBefore);
    return rejected;
  }

  /** Starts everything stored (SM start-up). */
  restore(): Promise<void> {
    return this.#lock.run(() => this.#reconcile(new Set()));
  }

  async #reconcile(usedBefore: Set<string>): Promise<void> {
    for (let round = 0; round < 3; round++) {
      const desired = this.#d.store.list().filter((d) => !this.#errors.has(d.instanceId));
      const actual = new Map<string, { state: RunState; info?: InstanceInfo }>();
      for (const [id, s] of this.#d.runtime.states()) {
        const info = this.#startedWith.get(id);
        actual.set(id, info ? { state: s.state, info } : { state: s.state });
      }
      const steps = planSteps(desired, actual, usedBefore);
      usedBefore = new Set();
      if (!steps.length) return;
      this.#d.logger.info("executing instance plan", {
        stop: steps.filter((s) => s.kind === "stop").length,
        start: steps.filter((s) => s.kind === "start").length,
        release: steps.filter((s) => s.kind === "release").length,
      });
      await this.#execute(steps, new Map(desired.map((d) => [d.instanceId, d])));
    }
  }

  async #execute(steps: Step[], desired: Map<string, DesiredInstance>): Promise<void> {
    await Promise.all(
      steps.filter((s) => s.kind === "stop").map(async (s) => {
        await this.#d.runtime.stop(s.instanceId).catch((err) =>
          this.#d.logger.error("stopping an instance failed", {
            instanceId: s.instanceId,
            error: err,
          })
        );
        this.#startedWith.delete(s.instanceId);
      }),
    );
    for (const s of steps) {
      if (s.kind !== "release") continue;
      await this.#d.images.release(s.itemId, s.version).catch((err) =>
        this.#d.logger.warn("releasing an item failed", { item: s.itemId, error: err })
      );
    }
    const starts = steps.flatMap((s) => (s.kind === "start" ? [desired.get(s.instanceId)!] : []));
    let next = 0;
    const worker = async () => {
      while (next < starts.length) {
        const d = starts[next++]!;
        try {
          await this.#d.images.install(d.info);
          this.#startedWith.set(d.instanceId, d.info);
          const r = await this.#d.runtime.start(d);
          if (r.state === "failed") {
            this.#d.logger.warn("instance failed", { instanceId: d.instanceId, error: r.error });
          }
        } catch (err) {
          const error = toAosError(err);
          this.#d.logger.error("instance could not start", { instanceId: d.instanceId, error });
          this.#startedWith.delete(d.instanceId);
          this.#errors.set(d.instanceId, { info: d.info, error });
        }
      }
    };
    await Promise.all(Array.from({ length: this.#d.concurrency ?? START_CONCURRENCY }, worker));
  }

  /** The wire status of one desired instance. */
  #wireStatus(
    info: InstanceInfo,
    state: string,
    error: AosError | undefined,
  ): WireStatus {
    return {
      instance: info.instance,
      version: info.version,
      runtimeId: this.#d.runtimeId,
      manifestDigest: info.manifestDigest,
      envVars: info.envVars.map((e) => ({
        name: e.name,
        error: { aosCode: 0, exitCode: 0, message: "" },
      })),
      state,
      error: error ? toErrorInfo(error) : { aosCode: 0, exitCode: 0, message: "" },
    };
  }

  /** Full snapshot for `node_instances_status`. */
  statuses(): WireStatus[] {
    const states = this.#d.runtime.states();
    const out: WireStatus[] = [];
    const desired = this.#d.store.list();
    for (const d of desired) {
      const failed = this.#errors.get(d.instanceId);
      if (failed) {
        out.push(this.#wireStatus(d.info, "failed", failed.error));
        continue;
      }
      const s = states.get(d.instanceId);
      out.push(this.#wireStatus(d.info, s?.state ?? "activating", s?.error));
    }
    for (const [id, f] of this.#errors) {
      if (!desired.some((d) => d.instanceId === id)) {
        out.push(this.#wireStatus(f.info, "failed", f.error));
      }
    }
    return out;
  }

  /** The wire status of one instance by ID (for incremental updates), if it is desired. */
  statusOf(instanceId: string, state: RunState, error?: AosError): WireStatus | undefined {
    const d = this.#d.store.list().find((x) => x.instanceId === instanceId);
    return d ? this.#wireStatus(d.info, state, error) : undefined;
  }
}

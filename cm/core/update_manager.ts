/**
 * CM's update manager (cm.md §5): the desired-status state machine
 * `none → downloading → pending → installing → launching → activating → finalizing → none`.
 *
 * Each state is persisted with the desired status before it is acted on, so a CM restart
 * resumes from the stored state. A new desired status while idle starts a run only when
 * {@link isUpdateRequired}; while busy an identical one is ignored and a different one cancels
 * the run in flight (image manager `cancel()`) and restarts from `downloading`. Step errors end
 * the run (`none`, no rollback); per-item and per-instance failures only show in statuses.
 * After every run the "send full unit status" listeners fire.
 * @module
 */
import {
  buildDesiredStatus,
  type DesiredStatus,
  desiredStatusSchema,
  type UnitConfig,
} from "@aos/shared/cloudprotocol";
import { AosError, Mutex, toAosError } from "@aos/shared/core";
import { type Logger, nullLogger } from "@aos/shared/logger";
import type { BlobTrust, DesiredItem, ItemStatus } from "../image/types.ts";
import {
  instanceKey,
  type LauncherInstanceStatus,
  type RunRequest,
  validRunId,
} from "./launcher.ts";
import { systemTimers, type Timers, waitFor } from "./timers.ts";

/** The desired-status body as parsed from the cloud (without `messageType`). */
export type DesiredStatusBody = Omit<DesiredStatus, "messageType">;

/** Pipeline states, in order (stored as these strings, upstream `updateState`). */
export const UPDATE_STATES = [
  "none",
  "downloading",
  "pending",
  "installing",
  "launching",
  "activating",
  "finalizing",
] as const;

/** A pipeline state. */
export type UpdateState = typeof UPDATE_STATES[number];

const NEXT: Record<UpdateState, UpdateState> = {
  none: "none",
  downloading: "pending",
  pending: "installing",
  installing: "launching",
  launching: "activating",
  activating: "finalizing",
  finalizing: "none",
};

/** Slice of the wait for activating instances (cm.md §17); re-checked on every change too. */
export const ACTIVATION_WAIT_SLICE_MS = 10 * 60_000;

/** Where the state and the desired status are persisted (`updatemanager` table). */
export interface UpdateStateStore {
  /** The stored state and desired status JSON; `undefined` when nothing was stored. */
  load():
    | Promise<{ state: string; desiredStatus: string } | undefined>
    | { state: string; desiredStatus: string }
    | undefined;
  /** Replaces both (one transaction). */
  save(state: UpdateState, desiredStatus: string): Promise<void> | void;
}

/** What the update manager needs from the image manager. */
export interface UpdateImagePort {
  /** Download step: desired items to `pending` (or `failed`). */
  downloadItems(items: readonly DesiredItem[], trust: BlobTrust): Promise<ItemStatus[]>;
  /** Finalize step: desired items `installed`, the others `removed`. */
  installItems(items: readonly DesiredItem[]): Promise<ItemStatus[]>;
  /** Stops running downloads. */
  cancel(): void;
  /** Every stored item version's status. */
  statuses(): ItemStatus[];
}

/** What the update manager needs from the launcher. */
export interface UpdateLauncherPort {
  /** Runs the instances of the desired status. */
  runInstances(requests: readonly RunRequest[], signal?: AbortSignal): Promise<unknown>;
  /** Current instance statuses. */
  statuses(): LauncherInstanceStatus[];
  /** Status change events; returns the unsubscribe function. */
  onStatusChange(listener: (changed: LauncherInstanceStatus[]) => void): () => void;
}

/** What the update manager needs from the unit config manager. */
export interface UpdateUnitConfigPort {
  /** Installed unit config version. */
  readonly version: string | undefined;
  /** Check + install; false when the version is installed already; throws on failure. */
  apply(config: UnitConfig): Promise<boolean>;
}

/** IAM node control (main IAM `PauseNode` / `ResumeNode`). */
export interface NodeControlPort {
  pauseNode(nodeId: string): Promise<void>;
  resumeNode(nodeId: string): Promise<void>;
}

/** Dependencies of {@link UpdateManager}. */
export interface UpdateManagerOptions {
  store: UpdateStateStore;
  images: UpdateImagePort;
  launcher: UpdateLauncherPort;
  unitConfig: UpdateUnitConfigPort;
  nodeControl: NodeControlPort;
  timers?: Timers;
  logger?: Logger;
  /** Default {@link ACTIVATION_WAIT_SLICE_MS}. */
  activationWaitSliceMs?: number;
}

/** The desired items as the image manager takes them. */
export function desiredItems(desired: DesiredStatusBody): DesiredItem[] {
  return desired.items.map((i) => ({
    id: i.item.id ?? i.item.codename ?? "",
    type: i.item.type ?? "service",
    version: i.version,
    indexDigest: i.indexDigest,
  }));
}

/**
 * Launch requests of a desired status (cm.md §5.3): version, owner, type and index from the
 * update item with the same id (missing → logged, empty: its instances fail as "not in the
 * desired items"), subject type from `subjects` (missing → bare id). Groups with unusable ids
 * are logged and skipped.
 */
export function buildRunRequests(desired: DesiredStatusBody, logger: Logger = nullLogger) {
  const items = new Map(desired.items.map((i) => [i.item.id ?? i.item.codename ?? "", i]));
  const subjects = new Map(
    desired.subjects.map((s) => [s.identity.id ?? s.identity.codename ?? "", s]),
  );
  const out: RunRequest[] = [];
  for (const g of desired.instances) {
    const itemId = g.item.id ?? g.item.codename ?? "";
    const subjectId = g.subject.id ?? g.subject.codename ?? "";
    if (!validRunId(itemId) || !validRunId(subjectId)) {
      logger.error("desired instances with an unusable item or subject id skipped", {
        itemId: itemId.slice(0, 64),
        subjectId: subjectId.slice(0, 64),
      });
      continue;
    }
    const item = items.get(itemId);
    if (item === undefined) logger.warn("desired instances of an item not in items", { itemId });
    const subject = subjects.get(subjectId);
    const r: RunRequest = {
      itemId,
      type: item?.item.type === "component" ? "component" : "service",
      version: item?.version ?? "",
      ownerId: item?.owner.id ?? item?.owner.codename ?? "",
      indexDigest: item?.indexDigest ?? "",
      subjectId,
      priority: g.priority,
      numInstances: g.numInstances,
      labels: [...g.labels],
    };
    if (subject !== undefined) {
      r.subjectType = subject.type;
      if (subject.isReportedFromUnit) r.isUnitSubject = true;
    }
    out.push(r);
  }
  return out;
}

/** What {@link isUpdateRequired} compares the desired status with. */
export interface CurrentUnitState {
  /** Image manager item statuses. */
  items: readonly ItemStatus[];
  /** Launcher instance statuses. */
  instances: readonly LauncherInstanceStatus[];
  /** Installed unit config version. */
  unitConfigVersion?: string | undefined;
}

/**
 * IsUpdateRequired (cm.md §5.2): node states are listed; a unit config other than the
 * installed one is given (upstream: any unit config, which re-runs the pipeline for every
 * re-sent desired status); the installed items differ from the desired ones; or the instances
 * differ: a desired instance without a status, a service instance beyond `numInstances` or of
 * another version, a component instance of another version or not `active`.
 */
export function isUpdateRequired(desired: DesiredStatusBody, current: CurrentUnitState): boolean {
  if (desired.nodes.length > 0) return true;
  if (
    desired.unitConfig !== undefined && desired.unitConfig.version !== current.unitConfigVersion
  ) {
    return true;
  }
  const installed = current.items.filter((i) => i.state === "installed");
  const key = (id: string, type: string, version: string) => JSON.stringify([id, type, version]);
  const installedKeys = new Set(installed.map((i) => key(i.id, i.type, i.version)));
  const wanted = desiredItems(desired);
  const wantedKeys = new Set(wanted.map((i) => key(i.id, i.type, i.version)));
  if (wanted.some((i) => !installedKeys.has(key(i.id, i.type, i.version)))) return true;
  if (installed.some((i) => !wantedKeys.has(key(i.id, i.type, i.version)))) return true;

  const byKey = new Map<string, LauncherInstanceStatus>();
  for (const s of current.instances) if (!s.preinstalled) byKey.set(instanceKey(s), s);
  const versions = new Map(wanted.map((i) => [i.id, i.version]));
  const groups = new Map<string, number>();
  for (const g of desired.instances) {
    const itemId = g.item.id ?? g.item.codename ?? "";
    const subjectId = g.subject.id ?? g.subject.codename ?? "";
    groups.set(JSON.stringify([itemId, subjectId]), g.numInstances);
    const version = versions.get(itemId) ?? "";
    for (let i = 0; i < g.numInstances; i++) {
      const s = byKey.get(instanceKey({ itemId, subjectId, instance: i }));
      if (s === undefined || s.version !== version) return true;
      if (s.type === "component" && s.state !== "active") return true;
    }
  }
  for (const s of byKey.values()) {
    if (s.type !== "service") continue;
    const num = groups.get(JSON.stringify([s.itemId, s.subjectId]));
    if (num === undefined || s.instance >= num) return true;
  }
  return false;
}

function canonical(d: DesiredStatusBody): string {
  const wire = buildDesiredStatus({ ...d, certificates: [], certificateChains: [] });
  delete wire.correlationId;
  return JSON.stringify(wire);
}

/** True when two desired statuses ask for the same (nodes, unit config, items, instances, subjects). */
export function sameDesiredStatus(a: DesiredStatusBody, b: DesiredStatusBody): boolean {
  return canonical(a) === canonical(b);
}

/** The desired-status pipeline. */
export class UpdateManager implements AsyncDisposable {
  readonly #o: UpdateManagerOptions;
  readonly #log: Logger;
  readonly #timers: Timers;
  /** Serialises accepting desired statuses. */
  readonly #accept = new Mutex();
  /** Serialises writes of (state, desired status). */
  readonly #persist = new Mutex();
  #state: UpdateState = "none";
  #desired: DesiredStatusBody | undefined;
  #worker: Promise<void> | undefined;
  #run: AbortController | undefined;
  #stepState: UpdateState = "none";
  #restart = false;
  #closed = false;
  readonly #nodeErrors = new Map<string, AosError>();
  readonly #stateListeners = new Set<(state: UpdateState) => void>();
  readonly #finishedListeners = new Set<() => void>();

  /** Creates the manager; call {@link init} to resume a stored run. */
  constructor(options: UpdateManagerOptions) {
    this.#o = options;
    this.#log = options.logger ?? nullLogger;
    this.#timers = options.timers ?? systemTimers;
  }

  /** Loads the stored state; a state other than `none` resumes from that state. */
  async init(): Promise<void> {
    const stored = await this.#o.store.load();
    if (stored === undefined || stored.state === "none") return;
    const state = (UPDATE_STATES as readonly string[]).includes(stored.state)
      ? stored.state as UpdateState
      : undefined;
    let desired: DesiredStatusBody | undefined;
    try {
      const parsed = desiredStatusSchema.safeParse(JSON.parse(stored.desiredStatus));
      if (parsed.success) desired = parsed.data;
    } catch {
      desired = undefined;
    }
    if (state === undefined || desired === undefined) {
      this.#log.error("stored update state is unusable; starting idle", {
        state: stored.state.slice(0, 32),
      });
      await this.#o.store.save("none", "{}");
      return;
    }
    this.#desired = desired;
    this.#state = state;
    this.#log.info("resuming update", { state });
    this.#startWorker();
  }

  /** Current pipeline state. */
  get state(): UpdateState {
    return this.#state;
  }

  /** The desired status being processed (or last processed). */
  get desiredStatus(): DesiredStatusBody | undefined {
    return this.#desired;
  }

  /** Last pause/resume error per node (for the unit status' nodes section). */
  nodeErrors(): ReadonlyMap<string, AosError> {
    return this.#nodeErrors;
  }

  /** Calls `listener` on each state change; returns the unsubscribe function. */
  onStateChange(listener: (state: UpdateState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** Calls `listener` after every run ("send the full unit status"). */
  onFinished(listener: () => void): () => void {
    this.#finishedListeners.add(listener);
    return () => this.#finishedListeners.delete(listener);
  }

  /** Resolves when no run is in progress. */
  async idle(): Promise<void> {
    while (this.#worker !== undefined) await this.#worker;
  }

  /**
   * Accepts a desired status (cm.md §5.2). Resolves once it is stored (or ignored), not when
   * the run ends.
   */
  handleDesiredStatus(desired: DesiredStatusBody): Promise<void> {
    return this.#accept.run(async () => {
      if (this.#closed) throw new AosError("wrongState", "Update manager is closed");
      if (this.#worker === undefined) {
        const current = {
          items: this.#o.images.statuses(),
          instances: this.#o.launcher.statuses(),
          unitConfigVersion: this.#o.unitConfig.version,
        };
        if (!isUpdateRequired(desired, current)) {
          this.#log.info("no update is required");
          return;
        }
        this.#desired = desired;
        await this.#save("downloading", desired);
        this.#startWorker();
        return;
      }
      if (this.#desired !== undefined && sameDesiredStatus(desired, this.#desired)) {
        this.#log.info("desired status is being processed already; ignored");
        return;
      }
      this.#log.info("new desired status: canceling the update in progress", {
        state: this.#stepState,
      });
      // Abort first: the worker must not store its next state for the old desired status.
      this.#restart = true;
      this.#desired = desired;
      this.#run?.abort(new AosError("canceled", "Update superseded by a new desired status"));
      if (this.#stepState === "downloading") this.#o.images.cancel();
      await this.#save("downloading", desired);
    });
  }

  /** Cancels waits and downloads and lets the run stop; the stored state resumes next start. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#run?.abort(new AosError("canceled", "CM is stopping"));
    if (this.#stepState === "downloading") this.#o.images.cancel();
    await this.idle();
  }

  // -------------------------------------------------------------------------------------------

  #setState(state: UpdateState): void {
    if (this.#state === state) return;
    this.#state = state;
    for (const l of this.#stateListeners) {
      try {
        l(state);
      } catch (err) {
        this.#log.error("update state listener failed", { error: err });
      }
    }
  }

  #save(state: UpdateState, desired: DesiredStatusBody): Promise<void> {
    return this.#persist.run(async () => {
      await this.#o.store.save(state, JSON.stringify(buildDesiredStatus(desired)));
      this.#setState(state);
    });
  }

  /** Stores the next state unless the run was aborted meanwhile. */
  #advance(signal: AbortSignal, state: UpdateState, desired: DesiredStatusBody): Promise<boolean> {
    return this.#persist.run(async () => {
      if (signal.aborted) return false;
      await this.#o.store.save(state, JSON.stringify(buildDesiredStatus(desired)));
      this.#setState(state);
      return true;
    });
  }

  #startWorker(): void {
    const p = this.#work().catch((err) => this.#log.error("update worker failed", { error: err }))
      .finally(() => {
        if (this.#worker === p) this.#worker = undefined;
      });
    this.#worker = p;
  }

  async #work(): Promise<void> {
    while (!this.#closed) {
      // Wait for a pending write of the state: it is stored before it is acted on.
      await this.#persist.run(() => {});
      this.#restart = false;
      const desired = this.#desired!;
      let state = this.#state;
      const run = new AbortController();
      this.#run = run;
      try {
        while (state !== "none" && !run.signal.aborted) {
          this.#stepState = state;
          this.#log.info("update step", { state });
          await this.#step(state, desired, run.signal);
          if (run.signal.aborted) break;
          const next = NEXT[state];
          if (!(await this.#advance(run.signal, next, desired))) break;
          state = next;
        }
      } catch (err) {
        if (!run.signal.aborted) {
          this.#log.error("update step failed; update ends", { state, error: toAosError(err) });
          await this.#advance(run.signal, "none", desired);
        }
      } finally {
        this.#stepState = "none";
        this.#run = undefined;
      }
      if (this.#closed) break;
      for (const l of this.#finishedListeners) {
        try {
          l();
        } catch (err) {
          this.#log.error("update finished listener failed", { error: err });
        }
      }
      // Decided synchronously with clearing the worker: a desired status accepted after this
      // point finds no worker and starts one.
      if (!this.#restart) break;
    }
    this.#worker = undefined;
  }

  async #step(state: UpdateState, desired: DesiredStatusBody, signal: AbortSignal): Promise<void> {
    switch (state) {
      case "none":
      case "pending":
        return;
      case "downloading":
        await this.#o.images.downloadItems(desiredItems(desired), {
          certificates: desired.certificates,
          chains: desired.certificateChains,
        });
        return;
      case "installing":
        await this.#installNodes(desired);
        if (desired.unitConfig !== undefined) {
          try {
            await this.#o.unitConfig.apply(desired.unitConfig);
          } catch (err) {
            // Reported in the unit config status; instances still run on the current config.
            this.#log.error("unit config not applied", { error: err });
          }
        }
        return;
      case "launching":
        await this.#o.launcher.runInstances(buildRunRequests(desired, this.#log), signal);
        return;
      case "activating":
        await this.#waitActivated(signal);
        return;
      case "finalizing":
        await this.#o.images.installItems(desiredItems(desired));
        return;
    }
  }

  async #installNodes(desired: DesiredStatusBody): Promise<void> {
    for (const n of desired.nodes) {
      const nodeId = n.item.codename ?? n.item.id ?? "";
      if (nodeId === "") continue;
      try {
        if (n.state === "paused") await this.#o.nodeControl.pauseNode(nodeId);
        else await this.#o.nodeControl.resumeNode(nodeId);
        this.#nodeErrors.delete(nodeId);
      } catch (err) {
        const e = toAosError(err);
        this.#nodeErrors.set(nodeId, e);
        this.#log.error("cannot set node state", { nodeId, state: n.state, error: e });
      }
    }
  }

  async #waitActivated(signal: AbortSignal): Promise<void> {
    const slice = this.#o.activationWaitSliceMs ?? ACTIVATION_WAIT_SLICE_MS;
    while (!signal.aborted) {
      const activating = this.#o.launcher.statuses().filter((s) => s.state === "activating");
      if (activating.length === 0) return;
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      const off = this.#o.launcher.onStatusChange(() => ac.abort());
      const fired = await waitFor(this.#timers, slice, ac.signal);
      off();
      signal.removeEventListener("abort", onAbort);
      if (fired) {
        this.#log.info("instances still activating", { count: activating.length });
      }
    }
  }
}

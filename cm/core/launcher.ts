/**
 * CM's launcher run flow (cm.md §7.2, §7.5, §7.6): desired instance groups → placement →
 * UID/GID → per-node `UpdateInstances` → node snapshots → per-instance statuses, with
 * rebalancing when nodes drop or return. All I/O is behind ports: the node info provider
 * ({@link NodeSource}), the image manager's manifests ({@link ManifestSource}), the SM
 * controller ({@link InstanceSender}) and CM's database ({@link LauncherStore}).
 *
 * Every run persists the requests, then the new instance table (placements, UIDs, GIDs) before
 * anything is sent, so a CM restart keeps placements and ids. Runs and rebalances are
 * serialised: one batch per node is in flight at a time, as the SM rejects overlapping ones.
 * @module
 */
import {
  type InstanceIdent as WireIdent,
  ItemType as WireItemType,
} from "@aos/proto/common/v2/common.ts";
import type {
  EnvVarInfo,
  InstanceInfo,
  InstanceStatus as WireStatus,
  UpdateInstances,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { INSTANCE_STATES, type InstanceState } from "@aos/shared/cloudprotocol";
import { AosError, fromErrorInfo, Mutex, toAosError } from "@aos/shared/core";
import { type Logger, nullLogger } from "@aos/shared/logger";
import { IdPool, uidPoolKey } from "./id_pool.ts";
import { placeInstances } from "./placement.ts";
import type {
  CurrentPlacement,
  InstanceIdent,
  InstanceRequest,
  ItemType,
  ManifestCandidate,
  PlacementNode,
  PlacementResult,
} from "./placement_types.ts";
import { systemTimers, type Timers, waitFor } from "./timers.ts";

/** Wait for the nodes' snapshots after `UpdateInstances` (cm.md §17). */
export const NODE_STATUS_TIMEOUT_MS = 10 * 60_000;
/** `launcher.nodesConnectionTimeout` default: wait for provisioned nodes / restored instances. */
export const NODES_CONNECTION_TIMEOUT_MS = 10 * 60_000;
/** Most instance groups one run takes (cm.md §4: 256 instances unit-wide). */
export const MAX_RUN_REQUESTS = 256;

/** One desired instance group, resolved against its update item and subject (cm.md §5.3). */
export interface RunRequest {
  /** Update item id. */
  itemId: string;
  /** Service or component. */
  type: ItemType;
  /** Item version (from the desired item). */
  version: string;
  /** Owner (service provider) id: the SM's network id. */
  ownerId: string;
  /** Digest of the item's OCI index, whose manifests the placement tries. */
  indexDigest: string;
  /** Subject id. */
  subjectId: string;
  /** Subject type when known. */
  subjectType?: "group" | "user";
  /** A unit subject: its instances run only while IAM reports the subject. */
  isUnitSubject?: boolean;
  /** Higher is placed first. */
  priority: number;
  /** Instances wanted (a component with 0: one per matching node runtime). */
  numInstances: number;
  /** Node labels required. */
  labels: string[];
}

/** The image manager's view of an item's index: its manifests, in index order. */
export interface ManifestSource {
  /** Manifests (platform + item config) of an installed or pending item version. */
  manifests(item: { itemId: string; version: string; indexDigest: string }): Promise<
    readonly ManifestCandidate[]
  >;
}

/** The node info provider (IAM node info + SM info + unit config + connectivity). */
export interface NodeSource {
  /** Every known node as the placement sees it now. */
  nodes(): readonly PlacementNode[];
}

/** The SM controller call that runs instances (implemented by `SmController`). */
export interface InstanceSender {
  /** Sends `update_instances`; resolves with the node's next full snapshot. */
  updateInstances(nodeId: string, update: UpdateInstances): Promise<WireStatus[]>;
}

/** Persistence of the launcher's state (`launcher_*` tables in CM's database). */
export interface LauncherStore {
  /** The last saved state (validated on load), `undefined` when none. */
  load(): Promise<unknown> | unknown;
  /** Replaces the saved state. */
  save(state: LauncherState): Promise<void> | void;
}

/** One desired instance as stored: where it runs and with which ids. */
export interface StoredInstance {
  itemId: string;
  subjectId: string;
  instance: number;
  type: ItemType;
  version: string;
  ownerId: string;
  priority: number;
  /** Node it is placed on; `""` while it fits nowhere (it keeps its ids). */
  nodeId: string;
  runtimeId: string;
  manifestDigest: string;
  /** 0 for components. */
  uid: number;
  /** 0 for components. */
  gid: number;
  /** Relative to the SM's storage root; `""` without a storage quota (cm.md §8). */
  storagePath: string;
  /** Relative to the SM's state root; `""` without a state quota. */
  statePath: string;
}

const itemType = z.enum(["service", "component"]);
const id = z.string().check(z.minLength(1), z.maxLength(256));

const runRequestSchema = z.object({
  itemId: id,
  type: itemType,
  version: z.string().check(z.maxLength(256)),
  ownerId: z.string().check(z.maxLength(256)),
  indexDigest: z.string().check(z.maxLength(256)),
  subjectId: id,
  subjectType: z.optional(z.enum(["group", "user"])),
  isUnitSubject: z.optional(z.boolean()),
  priority: z.number().check(z.int(), z.gte(0)),
  numInstances: z.number().check(z.int(), z.gte(0), z.lte(256)),
  labels: z.array(z.string().check(z.maxLength(256))).check(z.maxLength(256)),
});

const storedInstanceSchema = z.object({
  itemId: id,
  subjectId: id,
  instance: z.number().check(z.int(), z.gte(0)),
  type: itemType,
  version: z.string().check(z.maxLength(256)),
  ownerId: z.string().check(z.maxLength(256)),
  priority: z.number().check(z.int(), z.gte(0)),
  nodeId: z.string().check(z.maxLength(256)),
  runtimeId: z.string().check(z.maxLength(256)),
  manifestDigest: z.string().check(z.maxLength(256)),
  uid: z.number().check(z.int(), z.gte(0)),
  gid: z.number().check(z.int(), z.gte(0)),
  storagePath: z.string().check(z.maxLength(1024)),
  statePath: z.string().check(z.maxLength(1024)),
});

const launcherStateSchema = z.object({
  version: z.literal(1),
  requests: z.array(runRequestSchema).check(z.maxLength(MAX_RUN_REQUESTS)),
  instances: z.array(storedInstanceSchema).check(z.maxLength(4096)),
  uids: z.unknown(),
  gids: z.unknown(),
});

/** What the launcher persists. */
export interface LauncherState {
  /** Format version. */
  version: 1;
  /** The last run requests, sorted (priority desc, item id). */
  requests: RunRequest[];
  /** Desired instances with their placement and ids. */
  instances: StoredInstance[];
  /** UID pool ({@link IdPool.toJSON}). */
  uids: unknown;
  /** GID pool. */
  gids: unknown;
}

/** Status of one instance (cm.md §7.1), as the unit status reports it. */
export interface LauncherInstanceStatus {
  itemId: string;
  subjectId: string;
  instance: number;
  type: ItemType;
  /** Reported by an SM as preinstalled (not scheduled by CM). */
  preinstalled: boolean;
  version: string;
  /** `""` when it fits on no node. */
  nodeId: string;
  runtimeId: string;
  manifestDigest?: string;
  state: InstanceState;
  /** Set whenever `state` is `failed`. */
  error?: AosError;
}

/** Dependencies and tuning of {@link Launcher}. */
export interface LauncherOptions {
  nodes: NodeSource;
  manifests: ManifestSource;
  sm: InstanceSender;
  store: LauncherStore;
  /** Whether the system already uses a UID / GID (`/etc/passwd`, `/etc/group`). */
  isUidTaken?: (id: number) => boolean;
  isGidTaken?: (id: number) => boolean;
  /** Unit subjects IAM reports now (`GetSubjects`); without it every subject is enabled. */
  unitSubjects?: () => readonly string[];
  /** Environment variables of an instance (cloud overrides, cm.md §7.5). */
  envVars?: (ident: InstanceIdent) => EnvVarInfo[];
  timers?: Timers;
  logger?: Logger;
  /** Wait for node snapshots after sending (default {@link NODE_STATUS_TIMEOUT_MS}). */
  nodeStatusTimeoutMs?: number;
  /** `launcher.nodesConnectionTimeout` (default {@link NODES_CONNECTION_TIMEOUT_MS}). */
  nodesConnectionTimeoutMs?: number;
}

/** Key of an instance: `[itemId, subjectId, instance]` as JSON (also its UID pool key). */
export function instanceKey(i: { itemId: string; subjectId: string; instance: number }): string {
  return uidPoolKey(i);
}

const SAFE_ID = /^[^\s:/\\]+$/;

/**
 * Whether an item or subject id can name an instance: non-empty, at most 256 characters, no
 * whitespace, `:`, `/` or `\`, not `.`/`..` (it becomes part of storage and state paths).
 */
export function validRunId(value: string): boolean {
  return SAFE_ID.test(value) && value !== "." && value !== ".." && value.length <= 256;
}

function checkId(what: string, value: string): void {
  if (!validRunId(value)) {
    throw new AosError(
      "invalidArgument",
      `Invalid run request: ${what} "${
        value.slice(0, 64)
      }" is empty, too long or has forbidden characters`,
    );
  }
}

function wireType(t: ItemType): WireItemType {
  return t === "component" ? WireItemType.COMPONENT : WireItemType.SERVICE;
}

function wireIdent(i: { itemId: string; subjectId: string; instance: number; type: ItemType }) {
  return {
    itemId: i.itemId,
    subjectId: i.subjectId,
    instance: BigInt(i.instance),
    type: wireType(i.type),
    preinstalled: false,
  } satisfies WireIdent;
}

function fingerprint(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

function parseState(s: string): InstanceState | undefined {
  return (INSTANCE_STATES as readonly string[]).includes(s) ? s as InstanceState : undefined;
}

function sameStatus(a: LauncherInstanceStatus | undefined, b: LauncherInstanceStatus): boolean {
  return a !== undefined && a.state === b.state && a.nodeId === b.nodeId &&
    a.runtimeId === b.runtimeId && a.version === b.version &&
    a.error?.message === b.error?.message;
}

/** Sorts run requests as upstream stores them: priority desc, then item id. */
export function sortRunRequests(requests: readonly RunRequest[]): RunRequest[] {
  return [...requests].sort((a, b) =>
    b.priority - a.priority || (a.itemId < b.itemId ? -1 : a.itemId > b.itemId ? 1 : 0)
  );
}

interface ApplyOptions {
  /** Send to every connected provisioned node (a run) or only to nodes whose list changed. */
  all: boolean;
  signal?: AbortSignal | undefined;
}

/** The CM-side RunInstances flow and the instance statuses it keeps. */
export class Launcher implements AsyncDisposable {
  readonly #o: LauncherOptions;
  readonly #log: Logger;
  readonly #timers: Timers;
  readonly #mutex = new Mutex();
  readonly #stop = new AbortController();
  #requests: RunRequest[] = [];
  #instances = new Map<string, StoredInstance>();
  #uids: IdPool;
  #gids: IdPool;
  readonly #statuses = new Map<string, LauncherInstanceStatus>();
  readonly #preinstalled = new Map<string, LauncherInstanceStatus[]>();
  /** Last full snapshot per node (non-preinstalled instances by key). */
  readonly #reported = new Map<string, Map<string, WireStatus>>();
  /** Fingerprint of the start list each node last confirmed. */
  readonly #lastSent = new Map<string, string>();
  /** Fingerprint of the stop list last sent per node (guards against resend loops). */
  readonly #stopAsked = new Map<string, string>();
  readonly #inFlight = new Set<string>();
  #connected = new Set<string>();
  readonly #manifests = new Map<string, readonly ManifestCandidate[]>();
  readonly #listeners = new Set<(changed: LauncherInstanceStatus[]) => void>();
  readonly #nodeWaiters = new Set<() => void>();
  readonly #background = new Set<Promise<void>>();
  #rebalanceQueued = false;
  #startupTimer: unknown;
  #closed = false;

  /** Creates the launcher; call {@link init} before use. */
  constructor(options: LauncherOptions) {
    this.#o = options;
    this.#log = options.logger ?? nullLogger;
    this.#timers = options.timers ?? systemTimers;
    this.#uids = this.#newPool("UID");
    this.#gids = this.#newPool("GID");
  }

  #newPool(name: "UID" | "GID", state?: unknown): IdPool {
    const isTaken = name === "UID" ? this.#o.isUidTaken : this.#o.isGidTaken;
    const options = { name, ...(isTaken ? { isTaken } : {}) };
    return state === undefined ? new IdPool(options) : IdPool.fromJSON(state, options);
  }

  /**
   * Restores the stored state: placed instances start as `activating` and become `failed`
   * (timeout) if no node reports them within `nodesConnectionTimeout`.
   * @throws AosError `invalidArgument` when the stored state is malformed.
   */
  async init(): Promise<void> {
    const raw = await this.#o.store.load();
    if (raw !== undefined && raw !== null) {
      const parsed = launcherStateSchema.safeParse(raw);
      if (!parsed.success) {
        const i = parsed.error.issues[0];
        throw new AosError(
          "invalidArgument",
          `Cannot restore launcher state: ${i?.message ?? "invalid"} at ${
            i?.path.join(".") ?? "?"
          }`,
          { cause: parsed.error },
        );
      }
      const s = parsed.data;
      this.#requests = s.requests.map((r) => ({ ...r }) as RunRequest);
      this.#uids = this.#newPool("UID", s.uids);
      this.#gids = this.#newPool("GID", s.gids);
      this.#instances = new Map(s.instances.map((i) => [instanceKey(i), i]));
    }
    for (const [key, inst] of this.#instances) {
      this.#statuses.set(key, {
        ...this.#statusBase(inst),
        ...(inst.nodeId === ""
          ? {
            state: "failed" as const,
            error: new AosError("notFound", `Instance ${key} was on no node when CM stopped`),
          }
          : { state: "activating" as const }),
      });
    }
    if ([...this.#statuses.values()].some((s) => s.state === "activating")) {
      this.#startupTimer = this.#timers.setTimeout(() => {
        this.#startupTimer = undefined;
        this.#failActivating(
          undefined,
          `no node reported it within ${
            this.#o.nodesConnectionTimeoutMs ?? NODES_CONNECTION_TIMEOUT_MS
          } ms after CM start`,
        );
      }, this.#o.nodesConnectionTimeoutMs ?? NODES_CONNECTION_TIMEOUT_MS);
    }
    this.#connected = new Set(
      this.#o.nodes.nodes().filter((n) => n.connected).map((n) => n.nodeId),
    );
  }

  /** The stored run requests (sorted). */
  get requests(): readonly RunRequest[] {
    return this.#requests;
  }

  /** The stored desired instances with their placement and ids. */
  instances(): StoredInstance[] {
    return [...this.#instances.values()].map((i) => ({ ...i }));
  }

  /** Statuses of scheduled instances (and failed ones), then preinstalled ones per node. */
  statuses(): LauncherInstanceStatus[] {
    const out = [...this.#statuses.values()].map((s) => ({ ...s }));
    for (const list of this.#preinstalled.values()) out.push(...list.map((s) => ({ ...s })));
    return out;
  }

  /** Calls `listener` with the statuses that changed; returns the unsubscribe function. */
  onStatusChange(listener: (changed: LauncherInstanceStatus[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(changed: LauncherInstanceStatus[]): void {
    if (changed.length === 0) return;
    for (const l of this.#listeners) {
      try {
        l(changed.map((s) => ({ ...s })));
      } catch (err) {
        this.#log.error("instance status listener failed", { error: err });
      }
    }
  }

  /**
   * RunInstances (cm.md §7.2): stores the requests, waits (up to `nodesConnectionTimeout`)
   * until every provisioned node is connected, places the instances, stores placements and ids,
   * sends each connected provisioned node its `UpdateInstances`, and waits (up to the node
   * status timeout) for their snapshots; services still `activating` then fail with `timeout`.
   * Aborting `signal` ends the waits early (statuses stay as they are).
   * @returns the instance statuses after the run.
   * @throws AosError `invalidArgument` for malformed requests.
   */
  runInstances(
    requests: readonly RunRequest[],
    signal?: AbortSignal,
  ): Promise<LauncherInstanceStatus[]> {
    if (this.#closed) {
      return Promise.reject(new AosError("wrongState", "Cannot run instances: launcher closed"));
    }
    const checked = this.#checkRequests(requests);
    return this.#mutex.run(async () => {
      if (this.#closed) throw new AosError("wrongState", "Cannot run instances: launcher closed");
      this.#requests = checked;
      await this.#save();
      const waitSignal = signal ? AbortSignal.any([signal, this.#stop.signal]) : this.#stop.signal;
      await this.#waitNodesReady(waitSignal);
      // Superseded or stopping while waiting: the next run (or start-up) places them.
      if (waitSignal.aborted) return this.statuses();
      await this.#apply({ all: true, signal: waitSignal });
      return this.statuses();
    });
  }

  #checkRequests(requests: readonly RunRequest[]): RunRequest[] {
    if (requests.length > MAX_RUN_REQUESTS) {
      throw new AosError(
        "outOfRange",
        `Cannot run instances: ${requests.length} groups, at most ${MAX_RUN_REQUESTS}`,
      );
    }
    const seen = new Set<string>();
    const out: RunRequest[] = [];
    for (const r of requests) {
      const parsed = runRequestSchema.safeParse(r);
      if (!parsed.success) {
        const i = parsed.error.issues[0];
        throw new AosError(
          "invalidArgument",
          `Invalid run request for item "${String(r.itemId).slice(0, 64)}": ${
            i?.path.join(".") ?? "?"
          } ${i?.message ?? ""}`,
        );
      }
      checkId("item id", r.itemId);
      checkId("subject id", r.subjectId);
      const key = JSON.stringify([r.itemId, r.subjectId]);
      if (seen.has(key)) {
        this.#log.warn("duplicate instance group ignored", {
          itemId: r.itemId,
          subject: r.subjectId,
        });
        continue;
      }
      seen.add(key);
      out.push({ ...r, labels: [...r.labels] });
    }
    return sortRunRequests(out);
  }

  /**
   * Node info changed (a node connected, dropped, changed state or runtimes): re-plans with the
   * stored requests and re-sends to the nodes whose list changed or that reconnected. Deferred
   * while a run is in progress.
   */
  nodesChanged(): void {
    if (this.#closed) return;
    this.#noteConnections(this.#o.nodes.nodes());
    for (const wake of this.#nodeWaiters) wake();
    this.#nodeWaiters.clear();
    this.#scheduleRebalance();
  }

  /** A node's full snapshot (`node_instances_status`) arrived. */
  nodeInstancesStatus(nodeId: string, instances: readonly WireStatus[]): void {
    this.#merge(nodeId, instances, true);
  }

  /** A node's incremental statuses (`update_instances_status`) arrived. */
  updateInstancesStatus(nodeId: string, instances: readonly WireStatus[]): void {
    this.#merge(nodeId, instances, false);
  }

  /** Resolves when no background rebalance or resend is pending. */
  async idle(): Promise<void> {
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
  }

  /** Stops timers and waits, and lets background work finish. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#startupTimer !== undefined) this.#timers.clearTimeout(this.#startupTimer);
    this.#stop.abort();
    for (const wake of this.#nodeWaiters) wake();
    this.#nodeWaiters.clear();
    await this.idle();
    await this.#mutex.run(() => {});
  }

  // -------------------------------------------------------------------------------------------

  #noteConnections(nodes: readonly PlacementNode[]): void {
    const now = new Set(nodes.filter((n) => n.connected).map((n) => n.nodeId));
    for (const n of now) {
      // A node that (re)connected may have lost what it ran: it gets its list again.
      if (!this.#connected.has(n)) this.#lastSent.delete(n);
    }
    for (const n of this.#connected) {
      if (!now.has(n)) {
        this.#lastSent.delete(n);
        this.#stopAsked.delete(n);
      }
    }
    this.#connected = now;
  }

  #scheduleRebalance(): void {
    if (this.#rebalanceQueued || this.#closed) return;
    this.#rebalanceQueued = true;
    const p: Promise<void> = this.#mutex.run(async () => {
      this.#rebalanceQueued = false;
      if (this.#closed) return;
      await this.#apply({ all: false, signal: this.#stop.signal });
    }).catch((err) => this.#log.error("rebalance failed", { error: err }))
      .finally(() => this.#background.delete(p));
    this.#background.add(p);
  }

  async #waitNodesReady(signal: AbortSignal): Promise<void> {
    const ms = this.#o.nodesConnectionTimeoutMs ?? NODES_CONNECTION_TIMEOUT_MS;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let timedOut = false;
    const deadline = waitFor(this.#timers, ms, ac.signal).then((fired) => {
      timedOut = fired;
    });
    try {
      while (!ac.signal.aborted) {
        const waiting = this.#o.nodes.nodes()
          .filter((n) => n.state === "provisioned" && !n.connected)
          .map((n) => n.nodeId);
        if (waiting.length === 0) return;
        this.#log.info("waiting for provisioned nodes to connect", { nodes: waiting });
        await Promise.race([deadline, new Promise<void>((r) => this.#nodeWaiters.add(r))]);
        if (timedOut) {
          this.#log.warn("provisioned nodes did not connect in time; placing without them", {
            nodes: waiting,
          });
          return;
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      ac.abort();
      await deadline;
    }
  }

  async #manifestsOf(r: RunRequest): Promise<readonly ManifestCandidate[]> {
    const key = JSON.stringify([r.itemId, r.version, r.indexDigest]);
    const cached = this.#manifests.get(key);
    if (cached !== undefined) return cached;
    if (r.indexDigest === "") {
      throw new AosError(
        "notFound",
        `Item ${r.itemId} is not in the desired items: no index to run it from`,
      );
    }
    const list = await this.#o.manifests.manifests({
      itemId: r.itemId,
      version: r.version,
      indexDigest: r.indexDigest,
    });
    this.#manifests.set(key, list);
    return list;
  }

  #statusBase(i: StoredInstance): Omit<LauncherInstanceStatus, "state"> {
    return {
      itemId: i.itemId,
      subjectId: i.subjectId,
      instance: i.instance,
      type: i.type,
      preinstalled: false,
      version: i.version,
      nodeId: i.nodeId,
      runtimeId: i.runtimeId,
      ...(i.manifestDigest ? { manifestDigest: i.manifestDigest } : {}),
    };
  }

  #instanceInfo(i: StoredInstance): InstanceInfo {
    const ident = { itemId: i.itemId, subjectId: i.subjectId, instance: i.instance, type: i.type };
    return {
      instance: wireIdent(i),
      version: i.version,
      manifestDigest: i.manifestDigest,
      ownerId: i.ownerId,
      runtimeId: i.runtimeId,
      uid: i.uid,
      gid: i.gid,
      priority: BigInt(i.priority),
      storagePath: i.storagePath,
      statePath: i.statePath,
      envVars: this.#o.envVars?.(ident) ?? [],
      monitoringParameters: undefined,
    };
  }

  async #save(): Promise<void> {
    await this.#o.store.save({
      version: 1,
      requests: this.#requests.map((r) => ({ ...r, labels: [...r.labels] })),
      instances: [...this.#instances.values()].map((i) => ({ ...i })),
      uids: this.#uids.toJSON(),
      gids: this.#gids.toJSON(),
    });
  }

  /** Plans, persists, updates statuses, sends and waits: one pass of the launcher. */
  async #apply(options: ApplyOptions): Promise<void> {
    const nodes = this.#o.nodes.nodes();
    this.#noteConnections(nodes);
    const enabled = this.#o.unitSubjects ? new Set(this.#o.unitSubjects()) : undefined;

    // Only the indexes of the current requests stay cached.
    const wantedIndexes = new Set(
      this.#requests.map((r) => JSON.stringify([r.itemId, r.version, r.indexDigest])),
    );
    for (const key of [...this.#manifests.keys()]) {
      if (!wantedIndexes.has(key)) this.#manifests.delete(key);
    }

    // 1. Manifests of each group; a group whose index cannot be read fails as a whole.
    const placeable: InstanceRequest[] = [];
    const byGroup = new Map<string, { request: RunRequest; manifests: ManifestCandidate[] }>();
    const failures = new Map<string, { request: RunRequest; instance: number; error: AosError }>();
    const disabled = new Set<string>();
    for (const r of this.#requests) {
      const group = JSON.stringify([r.itemId, r.subjectId]);
      if (r.isUnitSubject && enabled !== undefined && !enabled.has(r.subjectId)) {
        disabled.add(group);
        continue;
      }
      let manifests: readonly ManifestCandidate[];
      try {
        manifests = await this.#manifestsOf(r);
      } catch (err) {
        const error = toAosError(err);
        for (let i = 0; i < r.numInstances; i++) {
          failures.set(instanceKey({ ...r, instance: i }), { request: r, instance: i, error });
        }
        continue;
      }
      byGroup.set(group, { request: r, manifests: [...manifests] });
      placeable.push({
        itemId: r.itemId,
        subjectId: r.subjectId,
        type: r.type,
        priority: r.priority,
        numInstances: r.numInstances,
        labels: r.labels,
        manifests,
      });
    }

    // 2. Placement, stable against where instances run now.
    const current: CurrentPlacement[] = [];
    for (const i of this.#instances.values()) {
      if (i.nodeId === "") continue;
      current.push({
        ident: { itemId: i.itemId, subjectId: i.subjectId, instance: i.instance, type: i.type },
        nodeId: i.nodeId,
        runtimeId: i.runtimeId,
        manifestDigest: i.manifestDigest,
      });
    }
    let result: PlacementResult;
    try {
      result = placeInstances({ nodes, requests: placeable, current, mode: "stable" });
    } catch (err) {
      const error = toAosError(err);
      this.#log.error("placement failed", { error });
      result = { placements: [], failures: [] };
      for (const g of byGroup.values()) {
        for (let i = 0; i < g.request.numInstances; i++) {
          failures.set(instanceKey({ ...g.request, instance: i }), {
            request: g.request,
            instance: i,
            error,
          });
        }
      }
    }

    // 3. The next instance table: ids kept for every instance still desired.
    const next = new Map<string, StoredInstance>();
    const previous = this.#instances;
    for (const p of result.placements) {
      const key = instanceKey(p.ident);
      const g = byGroup.get(JSON.stringify([p.ident.itemId, p.ident.subjectId]))!;
      const r = g.request;
      const manifest = g.manifests.find((m) => m.digest === p.manifestDigest);
      const quotas = manifest?.itemConfig.quotas;
      const prev = previous.get(key);
      let uid = 0;
      let gid = 0;
      if (p.ident.type === "service") {
        try {
          uid = prev?.uid || this.#uids.acquire(key);
          gid = prev?.gid || this.#gids.acquire(p.ident.itemId);
        } catch (err) {
          if (!prev?.uid && uid !== 0) this.#uids.releaseAll(key);
          failures.set(key, { request: r, instance: p.ident.instance, error: toAosError(err) });
          continue;
        }
      }
      const rel = `${p.ident.itemId}/${p.ident.subjectId}/${p.ident.instance}`;
      next.set(key, {
        itemId: p.ident.itemId,
        subjectId: p.ident.subjectId,
        instance: p.ident.instance,
        type: p.ident.type,
        version: r.version,
        ownerId: r.ownerId,
        priority: r.priority,
        nodeId: p.nodeId,
        runtimeId: p.runtimeId,
        manifestDigest: p.manifestDigest,
        uid,
        gid,
        storagePath: (quotas?.storageLimit ?? 0) > 0 ? rel : "",
        statePath: (quotas?.stateLimit ?? 0) > 0 ? `${rel}/state.dat` : "",
      });
    }
    for (const f of result.failures) {
      const g = byGroup.get(JSON.stringify([f.ident.itemId, f.ident.subjectId]))!;
      failures.set(instanceKey(f.ident), {
        request: g.request,
        instance: f.ident.instance,
        error: f.error,
      });
    }
    // Desired instances that run nowhere now keep their ids (and so their storage owner).
    for (const [key, prev] of previous) {
      if (next.has(key)) continue;
      const group = JSON.stringify([prev.itemId, prev.subjectId]);
      const r = this.#requests.find((x) =>
        x.itemId === prev.itemId && x.subjectId === prev.subjectId
      );
      const stillDesired = r !== undefined && r.type === prev.type &&
        (failures.has(key) || disabled.has(group));
      if (stillDesired) {
        next.set(key, {
          ...prev,
          version: r.version,
          ownerId: r.ownerId,
          priority: r.priority,
          nodeId: "",
          runtimeId: "",
        });
      } else if (prev.type === "service") {
        if (prev.uid) this.#uids.releaseAll(key);
        if (prev.gid) this.#gids.release(prev.itemId);
      }
    }

    // 4. Per-node updates.
    const placedOn = new Map<string, StoredInstance[]>();
    for (const i of next.values()) {
      if (i.nodeId === "") continue;
      let list = placedOn.get(i.nodeId);
      if (!list) placedOn.set(i.nodeId, list = []);
      list.push(i);
    }
    const updates: { nodeId: string; update: UpdateInstances; fp: string; stopFp: string }[] = [];
    for (const n of nodes) {
      if (!n.connected || n.state !== "provisioned") continue;
      const here = placedOn.get(n.nodeId) ?? [];
      const hereKeys = new Set(here.map(instanceKey));
      const stop = new Map<string, WireIdent>();
      for (const [key, prev] of previous) {
        if (prev.nodeId === n.nodeId && !hereKeys.has(key)) stop.set(key, wireIdent(prev));
      }
      for (const [key, s] of this.#reported.get(n.nodeId) ?? []) {
        if (hereKeys.has(key) || stop.has(key) || !s.instance) continue;
        if (s.state === "active" || s.state === "activating") stop.set(key, s.instance);
      }
      const start = here.map((i) => this.#instanceInfo(i));
      const fp = fingerprint(start);
      const stopFp = fingerprint([...stop.keys()].sort());
      if (!options.all && stop.size === 0 && this.#lastSent.get(n.nodeId) === fp) continue;
      updates.push({
        nodeId: n.nodeId,
        update: { startInstances: start, stopInstances: [...stop.values()] },
        fp,
        stopFp,
      });
    }

    // 5. Persist before acting.
    this.#instances = next;
    await this.#save();

    // 6. Statuses: changed or new instances start `activating`; failures carry their error.
    const changed: LauncherInstanceStatus[] = [];
    const keep = new Set<string>();
    for (const [key, inst] of next) {
      if (inst.nodeId === "") continue;
      keep.add(key);
      const prevInst = previous.get(key);
      const prevStatus = this.#statuses.get(key);
      const same = prevInst !== undefined && prevStatus !== undefined &&
        fingerprint(this.#instanceInfo(prevInst)) === fingerprint(this.#instanceInfo(inst)) &&
        prevInst.nodeId === inst.nodeId;
      const status: LauncherInstanceStatus = same
        ? prevStatus
        : { ...this.#statusBase(inst), state: "activating" };
      if (!sameStatus(prevStatus, status)) changed.push(status);
      this.#statuses.set(key, status);
    }
    for (const [key, f] of failures) {
      keep.add(key);
      const status: LauncherInstanceStatus = {
        itemId: f.request.itemId,
        subjectId: f.request.subjectId,
        instance: f.instance,
        type: f.request.type,
        preinstalled: false,
        version: f.request.version,
        nodeId: "",
        runtimeId: "",
        state: "failed",
        error: f.error,
      };
      if (!sameStatus(this.#statuses.get(key), status)) changed.push(status);
      this.#statuses.set(key, status);
    }
    for (const key of [...this.#statuses.keys()]) {
      if (!keep.has(key)) this.#statuses.delete(key);
    }
    this.#emit(changed);

    if (updates.length === 0) return;

    // 7. Send and wait for the snapshots.
    const sent = new Set<string>();
    const replies = updates.map(({ nodeId, update, fp, stopFp }) => {
      sent.add(nodeId);
      this.#inFlight.add(nodeId);
      this.#stopAsked.set(nodeId, stopFp);
      this.#log.info("sending instances to node", {
        nodeId,
        start: update.startInstances.length,
        stop: update.stopInstances.length,
      });
      return this.#o.sm.updateInstances(nodeId, update).then(
        (snapshot) => {
          this.#lastSent.set(nodeId, fp);
          this.#inFlight.delete(nodeId);
          this.#merge(nodeId, snapshot, true);
        },
        (err) => {
          this.#inFlight.delete(nodeId);
          this.#log.error("update instances failed", { nodeId, error: err });
        },
      );
    });
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const ms = this.#o.nodeStatusTimeoutMs ?? NODE_STATUS_TIMEOUT_MS;
    const timer = waitFor(this.#timers, ms, ac.signal);
    await Promise.race([Promise.all(replies), timer]);
    const aborted = options.signal?.aborted ?? false;
    options.signal?.removeEventListener("abort", onAbort);
    ac.abort();
    await timer;
    if (aborted) return;

    // 8. Services the nodes never confirmed fail with a timeout.
    this.#failActivating(sent, `its node did not report it within ${ms} ms`);
  }

  #failActivating(nodes: ReadonlySet<string> | undefined, why: string): void {
    const changed: LauncherInstanceStatus[] = [];
    for (const [key, s] of this.#statuses) {
      if (s.state !== "activating" || s.type !== "service") continue;
      if (nodes !== undefined && !nodes.has(s.nodeId)) continue;
      const failed: LauncherInstanceStatus = {
        ...s,
        state: "failed",
        error: new AosError("timeout", `Instance ${key} on node ${s.nodeId} is not active: ${why}`),
      };
      this.#statuses.set(key, failed);
      changed.push(failed);
    }
    this.#emit(changed);
  }

  #merge(nodeId: string, list: readonly WireStatus[], full: boolean): void {
    const changed: LauncherInstanceStatus[] = [];
    const reported = full ? new Map<string, WireStatus>() : this.#reported.get(nodeId) ?? new Map();
    const preinstalled: LauncherInstanceStatus[] = [];
    for (const s of list) {
      const ident = s.instance;
      if (!ident || ident.instance < 0n || ident.instance > 1_000_000n) continue;
      const type: ItemType = ident.type === WireItemType.COMPONENT ? "component" : "service";
      const state = parseState(s.state);
      const reportedError = fromErrorInfo(s.error);
      const error = state === undefined
        ? new AosError("failed", `Node ${nodeId} reports unknown state "${s.state.slice(0, 32)}"`)
        : state === "failed"
        ? reportedError ?? new AosError("failed", `Instance failed on node ${nodeId}`)
        : undefined;
      const status = {
        itemId: ident.itemId,
        subjectId: ident.subjectId,
        instance: Number(ident.instance),
        type,
        preinstalled: ident.preinstalled,
        version: s.version,
        nodeId,
        runtimeId: s.runtimeId,
        ...(s.manifestDigest ? { manifestDigest: s.manifestDigest } : {}),
        state: state ?? "failed",
        ...(error ? { error } : {}),
      } satisfies LauncherInstanceStatus;
      if (ident.preinstalled) {
        preinstalled.push(status);
        continue;
      }
      const key = instanceKey(status);
      reported.set(key, s);
      const inst = this.#instances.get(key);
      const prev = this.#statuses.get(key);
      if (inst === undefined || prev === undefined || inst.nodeId !== nodeId) continue;
      // A status of the version it ran before the update says nothing about the new one.
      if (s.version !== "" && s.version !== inst.version) continue;
      const merged: LauncherInstanceStatus = { ...this.#statusBase(inst), state: status.state };
      if (error) merged.error = error;
      if (!sameStatus(prev, merged)) {
        this.#statuses.set(key, merged);
        changed.push(merged);
      }
    }
    this.#reported.set(nodeId, reported);
    if (full) {
      const before = fingerprint(this.#preinstalled.get(nodeId) ?? []);
      if (preinstalled.length > 0) this.#preinstalled.set(nodeId, preinstalled);
      else this.#preinstalled.delete(nodeId);
      if (fingerprint(preinstalled) !== before) changed.push(...preinstalled);
    } else if (preinstalled.length > 0) {
      const byKey = new Map(
        (this.#preinstalled.get(nodeId) ?? []).map((p) => [instanceKey(p), p]),
      );
      for (const p of preinstalled) byKey.set(instanceKey(p), p);
      this.#preinstalled.set(nodeId, [...byKey.values()]);
      changed.push(...preinstalled);
    }
    this.#emit(changed);

    // Instances a node runs that are not placed there are stopped by a resend (cm.md §7.4).
    if (!full || this.#inFlight.has(nodeId) || this.#closed) return;
    const stale = [...reported].filter(([key, s]) =>
      (s.state === "active" || s.state === "activating") &&
      this.#instances.get(key)?.nodeId !== nodeId
    ).map(([key]) => key).sort();
    if (stale.length > 0 && this.#stopAsked.get(nodeId) !== fingerprint(stale)) {
      this.#log.info("node runs instances placed elsewhere; resending its list", {
        nodeId,
        stale: stale.length,
      });
      this.#scheduleRebalance();
    }
  }
}

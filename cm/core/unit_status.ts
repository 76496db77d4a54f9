/**
 * CM's unit status (cm.md §15): composes `unitStatus` from its providers (unit config, nodes,
 * items, instances grouped per item/subject/version, subjects) and decides when it goes out:
 * a full status on every cloud connect and after every update run; between them, changes are
 * merged into one delta that is sent `unitStatusSendTimeout` (10 s) after the last change.
 * While the cloud is disconnected changes are dropped (the next connect sends a full status),
 * and a full status clears any pending delta.
 * @module
 */
import {
  type Body,
  buildUnitStatus,
  type FlatInstanceStatus,
  groupInstances,
  type Identity,
  itemIdentity,
  type ItemStatus as CloudItemStatus,
  type NodeInfo,
  type UnitConfigStatus,
  type UnitStatus,
  type WireData,
  wireIdentity,
} from "@aos/shared/cloudprotocol";
import { AosError, toCloudErrorInfo } from "@aos/shared/core";
import { type Logger, nullLogger } from "@aos/shared/logger";
import type { ItemStatus as ImageItemStatus } from "../image/types.ts";
import type { LauncherInstanceStatus } from "./launcher.ts";
import { systemTimers, type TimerHandle, type Timers } from "./timers.ts";

/** `unitStatusSendTimeout` default (cm.md §2, §15.2). */
export const UNIT_STATUS_SEND_TIMEOUT_MS = 10_000;

/** Where each section of the unit status comes from. */
export interface UnitStatusProviders {
  /** Unit config statuses ({@link UnitConfigManager.status}). */
  unitConfig(): UnitConfigStatus[];
  /** Nodes from the node info provider (with pause/resume errors folded in). */
  nodes(): NodeInfo[];
  /** Item statuses (see {@link itemStatusToCloud}); `removed` ones are left out of full status. */
  items(): CloudItemStatus[];
  /** Instance statuses (see {@link instanceStatusToCloud}). */
  instances(): FlatInstanceStatus[];
  /** Unit subjects (IAM `GetSubjects`) as `{codename}` identities. */
  subjects(): Identity[];
}

/** Dependencies of {@link UnitStatusHandler}. */
export interface UnitStatusHandlerOptions {
  providers: UnitStatusProviders;
  /** Sends a `unitStatus` body through the cloud link (expect-ack message). */
  send: (message: WireData) => void | Promise<void>;
  /** Delta debounce; default {@link UNIT_STATUS_SEND_TIMEOUT_MS}. */
  sendTimeoutMs?: number;
  timers?: Timers;
  logger?: Logger;
}

function failure(error: AosError | undefined, fallback: string) {
  return toCloudErrorInfo(error ?? new AosError("failed", fallback));
}

/** An image manager item status in the cloud's form (`errorInfo` on every failure). */
export function itemStatusToCloud(s: ImageItemStatus): CloudItemStatus {
  const out: CloudItemStatus = {
    item: itemIdentity(s.id, { type: s.type }),
    version: s.version,
    state: s.state,
  };
  if (s.state === "failed") out.errorInfo = failure(s.error, `Item ${s.id} ${s.version} failed`);
  return out;
}

/**
 * A launcher instance status in the cloud's form (`errorInfo` on every failure); preinstalled
 * instances are named by `codename`, as AosCore does.
 */
export function instanceStatusToCloud(s: LauncherInstanceStatus): FlatInstanceStatus {
  const pre = { preinstalled: s.preinstalled };
  const out: FlatInstanceStatus = {
    item: itemIdentity(s.itemId, pre),
    subject: itemIdentity(s.subjectId, pre),
    version: s.version,
    node: { codename: s.nodeId },
    runtime: { codename: s.runtimeId },
    instance: s.instance,
    state: s.state,
  };
  if (s.state === "failed") {
    out.errorInfo = failure(
      s.error,
      `Instance ${s.itemId}/${s.subjectId}/${s.instance} failed`,
    );
  }
  return out;
}

function idKey(i: Identity): string {
  return JSON.stringify(wireIdentity({
    ...(i.id !== undefined ? { id: i.id } : {}),
    ...(i.codename !== undefined ? { codename: i.codename } : {}),
  }));
}

function instanceKey(i: FlatInstanceStatus): string {
  return JSON.stringify([idKey(i.item), idKey(i.subject), i.instance]);
}

interface PendingDelta {
  unitConfig: boolean;
  subjects: boolean;
  nodes: Map<string, NodeInfo>;
  items: Map<string, CloudItemStatus>;
  instances: Map<string, FlatInstanceStatus>;
}

function emptyDelta(): PendingDelta {
  return {
    unitConfig: false,
    subjects: false,
    nodes: new Map(),
    items: new Map(),
    instances: new Map(),
  };
}

/** Composes and sends the unit status (full and delta). */
export class UnitStatusHandler implements Disposable {
  readonly #o: UnitStatusHandlerOptions;
  readonly #log: Logger;
  readonly #timers: Timers;
  #connected = false;
  #pending = emptyDelta();
  #timer: TimerHandle | undefined;

  /** Creates the handler (disconnected). */
  constructor(options: UnitStatusHandlerOptions) {
    this.#o = options;
    this.#log = options.logger ?? nullLogger;
    this.#timers = options.timers ?? systemTimers;
  }

  /** Whether the cloud is connected. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Cloud link up (sends the full status) or down (drops pending changes). */
  setCloudConnected(connected: boolean): void {
    this.#connected = connected;
    if (connected) this.sendFullStatus();
    else this.#clear();
  }

  /** The full status as a model: every section present, `removed` items left out. */
  fullStatus(): Body<UnitStatus> {
    const p = this.#o.providers;
    const items = p.items().filter((i) => i.state !== "removed");
    const instances = p.instances();
    // Every preinstalled instance gets an item entry (cm.md §15.1).
    const known = new Set(items.map((i) => idKey(i.item)));
    for (const i of instances) {
      if (i.item.codename === undefined || known.has(idKey(i.item))) continue;
      known.add(idKey(i.item));
      items.push({
        item: { ...i.item, type: "component" },
        version: i.version,
        state: "installed",
      });
    }
    return {
      isDeltaInfo: false,
      unitConfig: p.unitConfig(),
      nodes: p.nodes(),
      items,
      instances: groupInstances(instances),
      subjects: p.subjects(),
    };
  }

  /** Sends the full status now (when connected) and clears any pending delta. */
  sendFullStatus(): void {
    if (!this.#connected) return;
    this.#clear();
    this.#send(this.fullStatus());
  }

  /** The unit config status changed. */
  unitConfigChanged(): void {
    this.#change((d) => (d.unitConfig = true));
  }

  /** The unit subjects changed. */
  subjectsChanged(): void {
    this.#change((d) => (d.subjects = true));
  }

  /** Nodes changed (the changed nodes' current info). */
  nodesChanged(nodes: readonly NodeInfo[]): void {
    this.#change((d) => {
      for (const n of nodes) d.nodes.set(idKey(n.identity), n);
    });
  }

  /** Item statuses changed. */
  itemsChanged(items: readonly CloudItemStatus[]): void {
    this.#change((d) => {
      for (const i of items) d.items.set(JSON.stringify([idKey(i.item), i.version]), i);
    });
  }

  /** Instance statuses changed. */
  instancesChanged(instances: readonly FlatInstanceStatus[]): void {
    this.#change((d) => {
      for (const i of instances) d.instances.set(instanceKey(i), i);
    });
  }

  /** Sends the pending delta now, if any (e.g. before shutdown). */
  flush(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    const d = this.#pending;
    this.#pending = emptyDelta();
    if (!this.#connected) return;
    const delta: Body<UnitStatus> = { isDeltaInfo: true };
    if (d.unitConfig) delta.unitConfig = this.#o.providers.unitConfig();
    if (d.nodes.size > 0) delta.nodes = [...d.nodes.values()];
    if (d.items.size > 0) delta.items = [...d.items.values()];
    if (d.instances.size > 0) delta.instances = groupInstances([...d.instances.values()]);
    if (d.subjects) delta.subjects = this.#o.providers.subjects();
    if (Object.keys(delta).length === 1) return;
    this.#send(delta);
  }

  /** Stops the debounce timer (a pending delta is dropped). */
  [Symbol.dispose](): void {
    this.#clear();
  }

  #change(apply: (d: PendingDelta) => void): void {
    // Offline changes are dropped: the full status on the next connect covers them.
    if (!this.#connected) return;
    apply(this.#pending);
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.#o.sendTimeoutMs ?? UNIT_STATUS_SEND_TIMEOUT_MS);
  }

  #clear(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending = emptyDelta();
  }

  #send(status: Body<UnitStatus>): void {
    let message: WireData;
    try {
      message = buildUnitStatus(status);
    } catch (err) {
      this.#log.error("cannot build unit status", { error: err });
      return;
    }
    try {
      Promise.resolve(this.#o.send(message)).catch((err) =>
        this.#log.error("cannot send unit status", { error: err })
      );
    } catch (err) {
      this.#log.error("cannot send unit status", { error: err });
    }
  }
}

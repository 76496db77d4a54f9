/**
 * In-memory fakes of the CM core ports for unit tests: timers driven by the test, an SM
 * controller that records `UpdateInstances` and answers with snapshots (or never), stores.
 * @module
 */
import { ItemType as WireItemType } from "@aos/proto/common/v2/common.ts";
import type {
  InstanceStatus as WireStatus,
  UpdateInstances,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import type { ManifestCandidate, PlacementNode } from "./placement_types.ts";
import type { TimerHandle, Timers } from "./timers.ts";

/** Timers that fire only when the test advances time. */
export class FakeTimers implements Timers {
  now = 0;
  #next = 1;
  readonly #due = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#due.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#due.delete(handle as number);
  }

  /** Number of scheduled callbacks. */
  get pending(): number {
    return this.#due.size;
  }

  /** Moves time forward, running due callbacks in order (and letting promises settle). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await settle();
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#due) if (e[1].at <= end && (!first || e[1].at < first[1].at)) first = e;
      if (!first) break;
      this.#due.delete(first[0]);
      this.now = first[1].at;
      first[1].fn();
    }
    this.now = end;
    await settle();
  }
}

/** Lets pending promise chains run (a macrotask turn, several times). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setTimeout(r, 0));
}

/** How the fake SM answers `UpdateInstances` on a node. */
export type SmMode = "active" | "silent" | "fail";

/** An SM controller fake: records batches, answers with a snapshot of what it now runs. */
export class FakeSm {
  readonly calls: { nodeId: string; update: UpdateInstances }[] = [];
  readonly mode = new Map<string, SmMode>();
  /** What each node runs now. */
  readonly running = new Map<string, Map<string, WireStatus>>();

  updateInstances(nodeId: string, update: UpdateInstances): Promise<WireStatus[]> {
    this.calls.push({ nodeId, update });
    const mode = this.mode.get(nodeId) ?? "active";
    if (mode === "silent") return new Promise(() => {});
    if (mode === "fail") return Promise.reject(new Error(`SM of ${nodeId} is gone`));
    let runs = this.running.get(nodeId);
    if (!runs) this.running.set(nodeId, runs = new Map());
    for (const s of update.stopInstances) runs.delete(`${s.itemId}/${s.subjectId}/${s.instance}`);
    for (const i of update.startInstances) {
      const id = i.instance!;
      runs.set(`${id.itemId}/${id.subjectId}/${id.instance}`, {
        instance: id,
        version: i.version,
        runtimeId: i.runtimeId,
        manifestDigest: i.manifestDigest,
        envVars: [],
        state: "active",
        error: undefined,
      });
    }
    return Promise.resolve([...runs.values()]);
  }

  /** Calls to one node. */
  callsTo(nodeId: string): UpdateInstances[] {
    return this.calls.filter((c) => c.nodeId === nodeId).map((c) => c.update);
  }
}

/** A wire status for tests. */
export function wireStatus(
  itemId: string,
  subjectId: string,
  instance: number,
  state: string,
  extra: Partial<WireStatus> = {},
): WireStatus {
  return {
    instance: {
      itemId,
      subjectId,
      instance: BigInt(instance),
      type: WireItemType.SERVICE,
      preinstalled: false,
    },
    version: "1.0.0",
    runtimeId: "runc",
    manifestDigest: "",
    envVars: [],
    state,
    error: undefined,
    ...extra,
  };
}

/** A connected, provisioned node with one runc runtime. */
export function testNode(nodeId: string, extra: Partial<PlacementNode> = {}): PlacementNode {
  return {
    nodeId,
    state: "provisioned",
    connected: true,
    maxDmips: 10_000,
    totalRam: 1024 * 1024 * 1024,
    runtimes: [{
      runtimeId: `${nodeId}-runc`,
      type: "runc",
      archInfo: { architecture: "amd64" },
      osInfo: { os: "linux" },
    }],
    resources: [],
    ...extra,
  };
}

/** A manifest for amd64 with the given quotas. */
export function testManifest(
  quotas: NonNullable<ManifestCandidate["itemConfig"]["quotas"]> = {},
  digest = "sha256:" + "b".repeat(64),
): ManifestCandidate {
  return {
    digest,
    platform: { architecture: "amd64", os: "linux" },
    itemConfig: { quotas },
  };
}

/** A store keeping one JSON value (deep-copied on both ends, as a database would). */
export class MemoryStore<T> {
  value: T | undefined;
  saves = 0;

  constructor(value?: T) {
    this.value = value;
  }

  load(): unknown {
    return this.value === undefined ? undefined : structuredClone(this.value);
  }

  save(value: T): void {
    this.saves++;
    this.value = structuredClone(value);
  }
}

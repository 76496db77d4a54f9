import assert from "node:assert/strict";
import { buildDesiredStatus, type UnitConfig } from "@aos/shared/cloudprotocol";
import { AosError } from "@aos/shared/errors";
import type { BlobTrust, DesiredItem, ItemStatus } from "../image/types.ts";
import { FakeSm, FakeTimers, MemoryStore, testManifest, testNode } from "./_test_fakes.ts";
import { Launcher, type LauncherInstanceStatus, type LauncherState } from "./launcher.ts";
import {
  buildRunRequests,
  type DesiredStatusBody,
  isUpdateRequired,
  UPDATE_STATES,
  UpdateManager,
  type UpdateState,
} from "./update_manager.ts";

const DIGEST = "sha256:" + "c".repeat(64);

function desired(
  items: [string, string][],
  instances: [string, number][],
  extra: Partial<DesiredStatusBody> = {},
): DesiredStatusBody {
  return {
    nodes: [],
    items: items.map(([id, version]) => ({
      item: { id, type: "service" },
      version,
      owner: { id: "owner" },
      indexDigest: DIGEST,
    })),
    instances: instances.map(([id, numInstances]) => ({
      item: { id },
      subject: { id: "subj" },
      priority: 0,
      numInstances,
      labels: [],
    })),
    subjects: [],
    certificates: [],
    certificateChains: [],
    ...extra,
  };
}

/** Image manager fake: item rows, optional held downloads, cancel. */
class FakeImages {
  readonly rows = new Map<string, ItemStatus>();
  readonly downloads: DesiredItem[][] = [];
  readonly installs: DesiredItem[][] = [];
  readonly seen: string[] = [];
  cancels = 0;
  hold = false;
  failInstall = false;
  #release: (() => void) | undefined;
  constructor(readonly stateOf: () => string | undefined = () => undefined) {}

  async downloadItems(items: readonly DesiredItem[], _trust: BlobTrust): Promise<ItemStatus[]> {
    this.seen.push(`download@${this.stateOf()}`);
    this.downloads.push([...items]);
    for (const i of items) {
      const key = JSON.stringify([i.id, i.version]);
      if (this.rows.get(key)?.state !== "installed") {
        this.rows.set(key, { ...i, state: "downloading" });
      }
    }
    let canceled = false;
    if (this.hold) {
      await new Promise<void>((resolve) => (this.#release = resolve));
      canceled = this.cancels > 0 && this.hold;
    }
    return items.map((i) => {
      const key = JSON.stringify([i.id, i.version]);
      const row = this.rows.get(key)!;
      if (row.state === "downloading") {
        row.state = canceled ? "failed" : "pending";
        if (canceled) row.error = new AosError("canceled", "canceled");
      }
      return { ...row };
    });
  }

  release(): void {
    this.hold = false;
    this.#release?.();
  }

  cancel(): void {
    this.cancels++;
    this.#release?.();
  }

  installItems(items: readonly DesiredItem[]): Promise<ItemStatus[]> {
    this.seen.push(`install@${this.stateOf()}`);
    this.installs.push([...items]);
    if (this.failInstall) return Promise.reject(new AosError("failed", "disk gone"));
    const wanted = new Set(items.map((i) => JSON.stringify([i.id, i.version])));
    for (const [key, row] of this.rows) {
      if (wanted.has(key)) row.state = "installed";
      else if (row.state === "installed") row.state = "removed";
      else this.rows.delete(key);
    }
    return Promise.resolve(
      items.map((i) => ({ ...this.rows.get(JSON.stringify([i.id, i.version]))! })),
    );
  }

  statuses(): ItemStatus[] {
    return [...this.rows.values()].map((r) => ({ ...r }));
  }
}

class StateStore {
  value: { state: string; desiredStatus: string } | undefined;
  saves: string[] = [];
  load() {
    return this.value;
  }
  save(state: UpdateState, desiredStatus: string) {
    this.saves.push(state);
    this.value = { state, desiredStatus };
  }
}

async function harness(options: { launcher?: FakeLauncher; store?: StateStore } = {}) {
  const store = options.store ?? new StateStore();
  const images = new FakeImages(() => store.value?.state);
  const sm = new FakeSm();
  const timers = new FakeTimers();
  const nodeCalls: string[] = [];
  const unitConfigs: string[] = [];
  const launcher = options.launcher ?? new Launcher({
    nodes: { nodes: () => [testNode("main")] },
    manifests: { manifests: () => Promise.resolve([testManifest()]) },
    sm,
    store: new MemoryStore<LauncherState>(),
    timers,
  });
  if (launcher instanceof Launcher) await launcher.init();
  let version: string | undefined;
  const manager = new UpdateManager({
    store,
    images,
    launcher,
    unitConfig: {
      get version() {
        return version;
      },
      apply: (cfg: UnitConfig) => {
        unitConfigs.push(`${cfg.version}@${store.value?.state}`);
        version = cfg.version;
        return Promise.resolve(true);
      },
    },
    nodeControl: {
      pauseNode: (id) => (nodeCalls.push(`pause ${id}@${store.value?.state}`), Promise.resolve()),
      resumeNode: (id) => {
        nodeCalls.push(`resume ${id}`);
        return Promise.reject(new AosError("notFound", `node ${id} unknown`));
      },
    },
    timers,
  });
  const states: UpdateState[] = [];
  manager.onStateChange((s) => states.push(s));
  let finished = 0;
  manager.onFinished(() => finished++);
  await manager.init();
  return {
    store,
    images,
    sm,
    timers,
    launcher,
    manager,
    states,
    nodeCalls,
    unitConfigs,
    finished: () => finished,
    async close() {
      await manager[Symbol.asyncDispose]();
      if (launcher instanceof Launcher) await launcher[Symbol.asyncDispose]();
    },
  };
}

const PIPELINE: UpdateState[] = [
  "downloading",
  "pending",
  "installing",
  "launching",
  "activating",
  "finalizing",
  "none",
];

Deno.test({
  name: "update manager: a full run stores each state before acting on it",
  permissions: "none",
  async fn() {
    const h = await harness();
    const cfg: UnitConfig = { version: "1.0.0", formatVersion: "1", nodes: [] };
    await h.manager.handleDesiredStatus(
      desired([["svc", "1.0.0"]], [["svc", 2]], {
        nodes: [
          { item: { codename: "main" }, state: "paused" },
          { item: { codename: "gone" }, state: "provisioned" },
        ],
        unitConfig: cfg,
      }),
    );
    await h.manager.idle();
    assert.deepEqual(h.states, PIPELINE);
    assert.deepEqual(h.store.saves, PIPELINE);
    assert.deepEqual(h.images.seen, ["download@downloading", "install@finalizing"]);
    assert.deepEqual(h.nodeCalls, ["pause main@installing", "resume gone"]);
    assert.equal(h.manager.nodeErrors().get("gone")?.code, "notFound");
    assert.deepEqual(h.unitConfigs, ["1.0.0@installing"]);
    assert.equal(h.sm.calls.length, 1);
    assert.equal(h.sm.calls[0]?.update.startInstances.length, 2);
    assert.equal(h.images.statuses()[0]?.state, "installed");
    assert.equal(h.finished(), 1);
    await h.close();
  },
});

Deno.test({
  name:
    "update manager: idle + nothing to do is ignored; busy + identical ignored; different cancels",
  permissions: "none",
  async fn() {
    const h = await harness();
    // Nothing installed, nothing desired: no update.
    await h.manager.handleDesiredStatus(desired([], []));
    assert.deepEqual(h.store.saves, []);

    const d1 = desired([["svc", "1.0.0"]], [["svc", 1]]);
    await h.manager.handleDesiredStatus(d1);
    await h.manager.idle();
    assert.equal(h.finished(), 1);
    // Installed and running as desired now: the same status again is not an update.
    await h.manager.handleDesiredStatus(structuredClone(d1));
    assert.equal(h.images.downloads.length, 1);
    assert.equal(h.finished(), 1);

    h.images.hold = true;
    const d2 = desired([["svc", "2.0.0"]], [["svc", 1]]);
    await h.manager.handleDesiredStatus(d2);
    assert.equal(h.manager.state, "downloading");
    await h.manager.handleDesiredStatus(structuredClone(d2));
    assert.equal(h.images.cancels, 0);

    const d3 = desired([["svc", "3.0.0"]], [["svc", 1]]);
    await h.manager.handleDesiredStatus(d3);
    assert.equal(h.images.cancels, 1);
    assert.equal(h.store.value?.state, "downloading");
    assert.equal(
      JSON.parse(h.store.value!.desiredStatus).items[0].version,
      "3.0.0",
    );
    h.images.release();
    await h.manager.idle();
    // The canceled run ends (full status), the new one restarts from downloading.
    assert.deepEqual(h.images.downloads.map((d) => d[0]?.version), ["1.0.0", "2.0.0", "3.0.0"]);
    assert.deepEqual(h.images.installs.map((d) => d[0]?.version), ["1.0.0", "3.0.0"]);
    assert.equal(h.finished(), 3);
    assert.equal(h.manager.state, "none");
    const last = h.sm.calls.at(-1)!.update.startInstances[0];
    assert.equal(last?.version, "3.0.0");
    await h.close();
  },
});

Deno.test({
  name: "update manager: a removed service is stopped and its item becomes removed",
  permissions: "none",
  async fn() {
    const h = await harness();
    await h.manager.handleDesiredStatus(
      desired([["keep", "1.0.0"], ["old", "1.0.0"]], [["keep", 1], ["old", 2]]),
    );
    await h.manager.idle();
    await h.manager.handleDesiredStatus(desired([["keep", "1.0.0"]], [["keep", 1]]));
    await h.manager.idle();
    const last = h.sm.calls.at(-1)!.update;
    assert.deepEqual(last.stopInstances.map((i) => `${i.itemId}/${i.instance}`).sort(), [
      "old/0",
      "old/1",
    ]);
    const states = Object.fromEntries(h.images.statuses().map((s) => [s.id, s.state]));
    assert.deepEqual(states, { keep: "installed", old: "removed" });
    assert.deepEqual(
      (h.launcher as Launcher).statuses().map((s) => `${s.itemId}:${s.state}`),
      ["keep:active"],
    );
    await h.close();
  },
});

/** Launcher fake recording runs; instances stay activating until the test says otherwise. */
class FakeLauncher {
  runs = 0;
  list: LauncherInstanceStatus[] = [];
  readonly listeners = new Set<(c: LauncherInstanceStatus[]) => void>();
  runInstances(): Promise<unknown> {
    this.runs++;
    return Promise.resolve([]);
  }
  statuses() {
    return this.list.map((s) => ({ ...s }));
  }
  onStatusChange(l: (c: LauncherInstanceStatus[]) => void) {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  set(state: LauncherInstanceStatus["state"]) {
    this.list = [{
      itemId: "svc",
      subjectId: "subj",
      instance: 0,
      type: "service",
      preinstalled: false,
      version: "1.0.0",
      nodeId: "main",
      runtimeId: "main-runc",
      state,
    }];
    for (const l of this.listeners) l(this.statuses());
  }
}

Deno.test({
  name: "update manager: resumes from every stored state after a restart",
  permissions: "none",
  async fn() {
    const d = desired([["svc", "1.0.0"]], [["svc", 1]], {
      nodes: [{ item: { codename: "main" }, state: "paused" }],
    });
    const text = JSON.stringify(buildDesiredStatus(d));
    for (const state of UPDATE_STATES.filter((s) => s !== "none")) {
      const store = new StateStore();
      store.value = { state, desiredStatus: text };
      const launcher = new FakeLauncher();
      launcher.set("active");
      const h = await harness({ store, launcher });
      await h.manager.idle();
      const from = PIPELINE.indexOf(state);
      const expect = (s: UpdateState) => PIPELINE.indexOf(s) >= from;
      assert.deepEqual(h.store.saves, PIPELINE.slice(from + 1), state);
      assert.equal(h.images.downloads.length, expect("downloading") ? 1 : 0, state);
      assert.equal(h.nodeCalls.length, expect("installing") ? 1 : 0, state);
      assert.equal(launcher.runs, expect("launching") ? 1 : 0, state);
      assert.equal(h.images.installs.length, 1, state);
      assert.equal(h.manager.state, "none");
      assert.equal(h.finished(), 1);
      await h.close();
    }

    // An unusable stored state starts idle.
    const store = new StateStore();
    store.value = { state: "launching", desiredStatus: "{broken" };
    const h = await harness({ store, launcher: new FakeLauncher() });
    assert.equal(h.manager.state, "none");
    assert.deepEqual(store.saves, ["none"]);
    await h.close();
  },
});

Deno.test({
  name: "update manager: activating waits for instances; a step error ends the run in none",
  permissions: "none",
  async fn() {
    const launcher = new FakeLauncher();
    launcher.set("activating");
    const h = await harness({ launcher });
    await h.manager.handleDesiredStatus(desired([["svc", "1.0.0"]], [["svc", 1]]));
    await h.timers.advance(0);
    assert.equal(h.manager.state, "activating");
    // A full wait slice passes: still waiting, nothing lost.
    await h.timers.advance(10 * 60_000);
    assert.equal(h.manager.state, "activating");
    h.images.failInstall = true;
    launcher.set("active");
    await h.manager.idle();
    assert.deepEqual(h.states.slice(-3), ["activating", "finalizing", "none"]);
    assert.equal(h.finished(), 1);
    assert.equal(h.timers.pending, 0);
    await h.close();
  },
});

Deno.test({
  name: "update manager: IsUpdateRequired and launch requests follow cm.md §5.2/§5.3",
  permissions: "none",
  fn() {
    const d = desired([["svc", "1.0.0"]], [["svc", 2], ["missing", 1]], {
      subjects: [{ identity: { id: "subj" }, type: "user", isReportedFromUnit: true }],
    });
    const requests = buildRunRequests(d);
    assert.deepEqual(requests[0], {
      itemId: "svc",
      type: "service",
      version: "1.0.0",
      ownerId: "owner",
      indexDigest: DIGEST,
      subjectId: "subj",
      priority: 0,
      numInstances: 2,
      labels: [],
      subjectType: "user",
      isUnitSubject: true,
    });
    assert.equal(requests[1]?.version, "");
    assert.equal(requests[1]?.indexDigest, "");

    const item = { id: "svc", type: "service", version: "1.0.0", state: "installed" } as const;
    const inst = (instance: number, extra: Partial<LauncherInstanceStatus> = {}) => ({
      itemId: "svc",
      subjectId: "subj",
      instance,
      type: "service" as const,
      preinstalled: false,
      version: "1.0.0",
      nodeId: "main",
      runtimeId: "r",
      state: "active" as const,
      ...extra,
    });
    const one = desired([["svc", "1.0.0"]], [["svc", 2]]);
    const current = { items: [item], instances: [inst(0), inst(1)] };
    assert.equal(isUpdateRequired(one, current), false);
    assert.equal(isUpdateRequired(one, { ...current, instances: [inst(0)] }), true);
    assert.equal(
      isUpdateRequired(one, { ...current, instances: [inst(0), inst(1), inst(2)] }),
      true,
    );
    assert.equal(isUpdateRequired(one, { ...current, items: [] }), true);
    assert.equal(
      isUpdateRequired(one, { ...current, items: [item, { ...item, id: "other" }] }),
      true,
    );
    assert.equal(
      isUpdateRequired(one, { ...current, items: [{ ...item, state: "failed" }] }),
      true,
    );
    // A failed instance still has a status: no update (upstream rule).
    assert.equal(
      isUpdateRequired(one, { ...current, instances: [inst(0), inst(1, { state: "failed" })] }),
      false,
    );
    const withNodes = { ...one, nodes: [{ item: { codename: "n" }, state: "paused" as const }] };
    assert.equal(isUpdateRequired(withNodes, current), true);
    const cfg = { version: "2.0.0", formatVersion: "1", nodes: [] };
    assert.equal(isUpdateRequired({ ...one, unitConfig: cfg }, current), true);
    assert.equal(
      isUpdateRequired({ ...one, unitConfig: cfg }, { ...current, unitConfigVersion: "2.0.0" }),
      false,
    );
  },
});

import assert from "node:assert/strict";
import { ItemType as WireItemType } from "@aos/proto/common/v2/common.ts";
import type { AosError } from "@aos/shared/errors";
import {
  FakeSm,
  FakeTimers,
  MemoryStore,
  settle,
  testManifest,
  testNode,
  wireStatus,
} from "./_test_fakes.ts";
import {
  Launcher,
  type LauncherOptions,
  type LauncherState,
  NODE_STATUS_TIMEOUT_MS,
  NODES_CONNECTION_TIMEOUT_MS,
  type RunRequest,
} from "./launcher.ts";
import type { ManifestCandidate, PlacementNode } from "./placement_types.ts";

const DIGEST_A = "sha256:" + "a".repeat(64);

function request(itemId: string, numInstances: number, extra: Partial<RunRequest> = {}) {
  return {
    itemId,
    type: "service",
    version: "1.0.0",
    ownerId: "owner-1",
    indexDigest: DIGEST_A,
    subjectId: "subj",
    priority: 10,
    numInstances,
    labels: [],
    ...extra,
  } satisfies RunRequest;
}

interface Harness {
  launcher: Launcher;
  sm: FakeSm;
  timers: FakeTimers;
  store: MemoryStore<LauncherState>;
  nodes: PlacementNode[];
  manifests: Map<string, ManifestCandidate[]>;
}

async function harness(
  nodes: PlacementNode[],
  extra: Partial<LauncherOptions> & { store?: MemoryStore<LauncherState>; sm?: FakeSm } = {},
): Promise<Harness> {
  const sm = extra.sm ?? new FakeSm();
  const timers = new FakeTimers();
  const store = extra.store ?? new MemoryStore<LauncherState>();
  const manifests = new Map<string, ManifestCandidate[]>();
  const launcher = new Launcher({
    nodes: { nodes: () => nodes },
    manifests: {
      manifests: ({ itemId }) => {
        const m = manifests.get(itemId);
        return m ? Promise.resolve(m) : Promise.reject(new Error(`no index for ${itemId}`));
      },
    },
    sm,
    store,
    timers,
    ...extra,
  });
  await launcher.init();
  return { launcher, sm, timers, store, nodes, manifests };
}

function statusOf(launcher: Launcher, itemId: string, instance: number) {
  return launcher.statuses().find((s) => s.itemId === itemId && s.instance === instance);
}

Deno.test({
  name: "launcher: a 2-instance service is placed and sent as UpdateInstances with its ids",
  permissions: "none",
  async fn() {
    const h = await harness([testNode("main")], { isUidTaken: (id) => id === 5000 });
    h.manifests.set("svc", [testManifest({ storageLimit: 1024, stateLimit: 512 })]);
    h.manifests.set("plain", [testManifest()]);
    const statuses = await h.launcher.runInstances([
      request("svc", 2),
      request("plain", 1, { priority: 1, ownerId: "owner-2" }),
    ]);

    assert.equal(h.sm.calls.length, 1);
    const [call] = h.sm.calls;
    assert.equal(call?.nodeId, "main");
    assert.deepEqual(call?.update.stopInstances, []);
    const start = call!.update.startInstances;
    assert.equal(start.length, 3);
    assert.deepEqual(start[0], {
      instance: {
        itemId: "svc",
        subjectId: "subj",
        instance: 0n,
        type: WireItemType.SERVICE,
        preinstalled: false,
      },
      version: "1.0.0",
      manifestDigest: "sha256:" + "b".repeat(64),
      ownerId: "owner-1",
      runtimeId: "main-runc",
      uid: 5001, // 5000 is the system's
      gid: 5000,
      priority: 10n,
      storagePath: "svc/subj/0",
      statePath: "svc/subj/0/state.dat",
      envVars: [],
      monitoringParameters: undefined,
    });
    assert.equal(start[1]?.uid, 5002);
    assert.equal(start[1]?.gid, 5000);
    assert.equal(start[1]?.storagePath, "svc/subj/1");
    // No quota: no storage, no state (cm.md §8); own GID per item.
    assert.equal(start[2]?.uid, 5003);
    assert.equal(start[2]?.gid, 5001);
    assert.equal(start[2]?.storagePath, "");
    assert.equal(start[2]?.statePath, "");
    assert.equal(start[2]?.ownerId, "owner-2");

    assert.deepEqual(statuses.map((s) => [s.itemId, s.instance, s.nodeId, s.state]), [
      ["svc", 0, "main", "active"],
      ["svc", 1, "main", "active"],
      ["plain", 0, "main", "active"],
    ]);
    // Persisted: requests, placements, pools.
    const saved = h.store.value!;
    assert.equal(saved.requests.length, 2);
    assert.deepEqual(saved.instances.map((i) => [i.itemId, i.instance, i.nodeId, i.uid]), [
      ["svc", 0, "main", 5001],
      ["svc", 1, "main", 5002],
      ["plain", 0, "main", 5003],
    ]);
    await h.launcher[Symbol.asyncDispose]();
  },
});

Deno.test({
  name: "launcher: a node that never answers leaves services activating, then failed (timeout)",
  permissions: "none",
  async fn() {
    const h = await harness([testNode("main")]);
    h.sm.mode.set("main", "silent");
    h.manifests.set("svc", [testManifest()]);
    const changes: string[] = [];
    h.launcher.onStatusChange((c) => changes.push(...c.map((s) => s.state)));
    const run = h.launcher.runInstances([request("svc", 1)]);
    await settle();
    assert.equal(statusOf(h.launcher, "svc", 0)?.state, "activating");
    await h.timers.advance(NODE_STATUS_TIMEOUT_MS - 1);
    assert.equal(statusOf(h.launcher, "svc", 0)?.state, "activating");
    await h.timers.advance(1);
    const [s] = await run;
    assert.equal(s?.state, "failed");
    assert.equal((s?.error as AosError).code, "timeout");
    assert.match(s!.error!.message, /node main/);
    assert.deepEqual(changes, ["activating", "failed"]);
    assert.equal(h.timers.pending, 0);
    await h.launcher[Symbol.asyncDispose]();
  },
});

Deno.test({
  name: "launcher: a service left out of the next run is stopped and its ids are released",
  permissions: "none",
  async fn() {
    const h = await harness([testNode("main")]);
    h.manifests.set("keep", [testManifest()]);
    h.manifests.set("drop", [testManifest()]);
    await h.launcher.runInstances([request("keep", 1), request("drop", 2)]);
    const dropUids = h.launcher.instances().filter((i) => i.itemId === "drop").map((i) => i.uid);
    assert.deepEqual(dropUids, [5000, 5001]);

    await h.launcher.runInstances([request("keep", 1)]);
    const last = h.sm.calls.at(-1)!.update;
    assert.deepEqual(
      last.stopInstances.map((i) => `${i.itemId}/${i.instance}`).sort(),
      ["drop/0", "drop/1"],
    );
    assert.deepEqual(last.startInstances.map((i) => i.instance?.itemId), ["keep"]);
    assert.deepEqual(h.launcher.statuses().map((s) => s.itemId), ["keep"]);
    assert.equal(h.sm.running.get("main")?.size, 1);
    const saved = h.store.value!;
    assert.deepEqual(saved.instances.map((i) => i.itemId), ["keep"]);
    const uids = saved.uids as { entries: { id: number }[] };
    const gids = saved.gids as { entries: { key: string }[] };
    assert.deepEqual(uids.entries.map((e) => e.id), [5002]);
    assert.deepEqual(gids.entries.map((e) => e.key), ["keep"]);
    await h.launcher[Symbol.asyncDispose]();
  },
});

Deno.test({
  name: "launcher: placements and ids survive a restart; restored instances time out unreported",
  permissions: "none",
  async fn() {
    const store = new MemoryStore<LauncherState>();
    const first = await harness([testNode("main")], { store });
    first.manifests.set("svc", [testManifest()]);
    await first.launcher.runInstances([request("svc", 2)]);
    const before = first.launcher.instances();
    await first.launcher[Symbol.asyncDispose]();

    const second = await harness([testNode("main")], { store });
    assert.deepEqual(second.launcher.instances(), before);
    assert.deepEqual(second.launcher.statuses().map((s) => s.state), ["activating", "activating"]);
    // One node reports instance 0; instance 1 never shows up.
    second.launcher.nodeInstancesStatus("main", [wireStatus("svc", "subj", 0, "active")]);
    assert.equal(statusOf(second.launcher, "svc", 0)?.state, "active");
    await second.timers.advance(NODES_CONNECTION_TIMEOUT_MS);
    const lost = statusOf(second.launcher, "svc", 1);
    assert.equal(lost?.state, "failed");
    assert.equal(lost?.error?.code, "timeout");

    // Running the same requests again keeps node and ids.
    second.manifests.set("svc", [testManifest()]);
    await second.launcher.runInstances([request("svc", 2)]);
    assert.deepEqual(
      second.launcher.instances().map((i) => [i.nodeId, i.uid, i.gid]),
      before.map((i) => [i.nodeId, i.uid, i.gid]),
    );
    await second.launcher[Symbol.asyncDispose]();
  },
});

Deno.test({
  name: "launcher: a dropped node's instances move to the other node; on return it stops them",
  permissions: "none",
  async fn() {
    const nodes = [testNode("a"), testNode("b")];
    const h = await harness(nodes);
    h.manifests.set("svc", [testManifest()]);
    await h.launcher.runInstances([request("svc", 1)]);
    assert.equal(statusOf(h.launcher, "svc", 0)?.nodeId, "a");
    const uid = h.launcher.instances()[0]?.uid;
    const callsBefore = h.sm.calls.length;

    // Node a drops: the instance is re-placed on b and sent there.
    nodes[0] = { ...nodes[0]!, connected: false };
    h.launcher.nodesChanged();
    await h.launcher.idle();
    const moved = h.sm.calls.slice(callsBefore);
    assert.deepEqual(moved.map((c) => c.nodeId), ["b"]);
    assert.deepEqual(moved[0]?.update.startInstances.map((i) => [i.instance?.itemId, i.uid]), [
      ["svc", uid],
    ]);
    const s = statusOf(h.launcher, "svc", 0);
    assert.deepEqual([s?.nodeId, s?.runtimeId, s?.state], ["b", "b-runc", "active"]);
    assert.equal(h.store.value?.instances[0]?.nodeId, "b");

    // Node a returns, still running its old copy: it gets a stop for it, b keeps it.
    const toB = h.sm.callsTo("b").length;
    nodes[0] = { ...nodes[0]!, connected: true };
    h.launcher.nodesChanged();
    h.launcher.nodeInstancesStatus("a", [wireStatus("svc", "subj", 0, "active")]);
    await h.launcher.idle();
    const toA = h.sm.callsTo("a").at(-1)!;
    assert.deepEqual(toA.startInstances, []);
    assert.deepEqual(toA.stopInstances.map((i) => i.itemId), ["svc"]);
    assert.equal(statusOf(h.launcher, "svc", 0)?.nodeId, "b");
    assert.equal(h.sm.callsTo("b").length, toB);
    await h.launcher[Symbol.asyncDispose]();
  },
});

Deno.test({
  name: "launcher: waits for provisioned nodes to connect; deltas and unplaceable instances",
  permissions: "none",
  async fn() {
    const nodes = [testNode("a"), testNode("b", { connected: false })];
    const h = await harness(nodes);
    h.manifests.set("svc", [testManifest()]);
    h.manifests.set("labelled", [testManifest()]);
    const run = h.launcher.runInstances([
      request("svc", 1),
      request("ghost", 1),
      request("labelled", 1, { labels: ["gpu"] }),
    ]);
    await settle();
    assert.equal(h.sm.calls.length, 0);
    nodes[1] = { ...nodes[1]!, connected: true };
    h.launcher.nodesChanged();
    const statuses = await run;
    // Every connected provisioned node gets its list, even an empty one.
    assert.deepEqual(h.sm.calls.map((c) => c.nodeId).sort(), ["a", "b"]);
    const ghost = statuses.find((s) => s.itemId === "ghost");
    assert.equal(ghost?.state, "failed");
    assert.match(ghost?.error?.message ?? "", /no index for ghost/);
    const labelled = statuses.find((s) => s.itemId === "labelled");
    assert.equal(labelled?.state, "failed");
    assert.equal(labelled?.error?.code, "notFound");

    // An incremental failure from the node carries the node's error.
    h.launcher.updateInstancesStatus("a", [
      wireStatus("svc", "subj", 0, "failed", {
        runtimeId: "a-runc",
        error: { aosCode: 2, exitCode: 137, message: "killed" },
      }),
    ]);
    const failed = statusOf(h.launcher, "svc", 0);
    assert.equal(failed?.state, "failed");
    assert.equal(failed?.error?.message, "killed");
    assert.equal(failed?.error?.exitCode, 137);
    await h.launcher[Symbol.asyncDispose]();
  },
});

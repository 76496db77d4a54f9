import assert from "node:assert/strict";
import type { InstanceIdent } from "@aos/proto/common/v2/common.ts";
import { InstanceInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { AosError } from "@aos/shared/core";
import { nullLogger } from "@aos/shared/logger";
import {
  type DesiredChange,
  type DesiredInstance,
  identKey,
  type ImagePort,
  type InstanceStore,
  Launcher,
  planSteps,
  type RunState,
  type RuntimePort,
} from "./launcher.ts";

const digest = "sha256:" + "d".repeat(64);

function ident(item: string, n = 0n): InstanceIdent {
  return { itemId: item, subjectId: "subj", instance: n, type: 0, preinstalled: false };
}

function info(item: string, n = 0n, version = "1.0.0"): InstanceInfo {
  return InstanceInfo.fromPartial({
    instance: ident(item, n),
    version,
    manifestDigest: digest,
    uid: 5000,
    gid: 5000,
  });
}

class MemoryStore implements InstanceStore {
  rows = new Map<string, DesiredInstance>();
  list() {
    return [...this.rows.values()];
  }
  put(d: DesiredInstance) {
    this.rows.set(d.instanceId, d);
  }
  apply(change: DesiredChange) {
    for (const id of change.remove ?? []) this.rows.delete(id);
    for (const d of change.put ?? []) this.put(d);
  }
}

/** A runtime double: records calls; what it runs is a map of states. */
class FakeRuntime implements RuntimePort {
  running = new Map<string, { state: RunState; error?: AosError }>();
  log: string[] = [];
  failItems = new Set<string>();
  start(d: DesiredInstance) {
    this.log.push(`start ${d.info.instance!.itemId}/${d.info.instance!.instance}`);
    const s = this.failItems.has(d.info.instance!.itemId)
      ? { state: "failed" as const, error: new AosError("failed", "exit 1", { exitCode: 1 }) }
      : { state: "active" as const };
    this.running.set(d.instanceId, s);
    return Promise.resolve(s);
  }
  stop(id: string) {
    this.log.push(`stop ${id}`);
    this.running.set(id, { state: "inactive" });
    return Promise.resolve();
  }
  states() {
    return new Map(this.running);
  }
}

class FakeImages implements ImagePort {
  log: string[] = [];
  broken = new Set<string>();
  install(i: InstanceInfo) {
    if (this.broken.has(i.instance!.itemId)) {
      return Promise.reject(
        new AosError("invalidChecksum", `Cannot install ${i.instance!.itemId}: digest mismatch`),
      );
    }
    return Promise.resolve();
  }
  release(itemId: string, version: string) {
    this.log.push(`release ${itemId}@${version}`);
    return Promise.resolve();
  }
}

function setup() {
  const store = new MemoryStore();
  const runtime = new FakeRuntime();
  const images = new FakeImages();
  const launcher = new Launcher({
    store,
    runtime,
    images,
    instanceIdOf: (i) => identKey(i),
    runtimeId: "rt-1",
    logger: nullLogger,
  });
  return { store, runtime, images, launcher };
}

const pure = { permissions: "none" } as const;

Deno.test({
  name: "plan: stop unwanted, start missing, restart changed, keep failed, release unused items",
  ...pure,
  fn() {
    const a = { instanceId: "a", info: info("svc", 0n) };
    const b = { instanceId: "b", info: info("svc", 1n) };
    const actual = new Map<string, { state: RunState; info?: InstanceInfo }>([
      ["a", { state: "active", info: info("svc", 0n) }],
      ["x", { state: "active", info: info("old", 0n) }],
      ["b", { state: "failed", info: info("svc", 1n) }],
    ]);
    assert.deepEqual(planSteps([a, b], actual, new Set(["old\u00001.0.0"])), [
      { kind: "stop", instanceId: "x" },
      { kind: "release", itemId: "old", version: "1.0.0" },
    ]);
    const changed = { instanceId: "a", info: info("svc", 0n, "2.0.0") };
    assert.deepEqual(
      planSteps([changed], new Map([["a", { state: "active", info: info("svc", 0n) }]]), new Set()),
      [
        { kind: "stop", instanceId: "a" },
        { kind: "start", instanceId: "a" },
      ],
    );
  },
});

Deno.test({
  name: "update: 3 starts, then stop one; statuses and releases follow",
  ...pure,
  async fn() {
    const { store, runtime, images, launcher } = setup();
    await launcher.update({
      startInstances: [info("svc", 0n), info("svc", 1n), info("svc", 2n)],
      stopInstances: [],
    });
    assert.equal(store.rows.size, 3);
    assert.deepEqual(launcher.statuses().map((s) => s.state), ["active", "active", "active"]);
    assert.equal(launcher.statuses()[0]!.runtimeId, "rt-1");

    await launcher.update({ startInstances: [], stopInstances: [ident("svc", 1n)] });
    assert.equal(store.rows.size, 2);
    assert.ok(runtime.log.includes(`stop ${identKey(ident("svc", 1n))}`));
    assert.deepEqual(images.log, []);

    await launcher.update({
      startInstances: [],
      stopInstances: [ident("svc", 0n), ident("svc", 2n)],
    });
    assert.deepEqual(images.log, ["release svc@1.0.0"]);
    assert.deepEqual(launcher.statuses(), []);
  },
});

Deno.test({
  name: "update: bad info, install failure and a crashing service are reported failed with errors",
  ...pure,
  async fn() {
    const { runtime, images, launcher } = setup();
    images.broken.add("broken");
    runtime.failItems.add("crash");
    const bad = InstanceInfo.fromPartial({
      instance: ident("evil/../x"),
      version: "1",
      manifestDigest: digest,
    });
    const noDigest = InstanceInfo.fromPartial({
      instance: ident("nodigest"),
      version: "1",
      manifestDigest: "md5:x",
    });
    await launcher.update({
      startInstances: [info("broken"), info("crash"), info("ok"), bad, noDigest],
      stopInstances: [],
    });
    const byItem = new Map(launcher.statuses().map((s) => [s.instance!.itemId, s]));
    assert.equal(byItem.get("ok")!.state, "active");
    assert.equal(byItem.get("broken")!.state, "failed");
    assert.match(byItem.get("broken")!.error!.message, /digest mismatch/);
    assert.equal(byItem.get("broken")!.error!.aosCode, 10);
    assert.equal(byItem.get("crash")!.state, "failed");
    assert.equal(byItem.get("crash")!.error!.exitCode, 1);
    assert.match(byItem.get("evil/../x")!.error!.message, /forbidden characters/);
    assert.equal(byItem.get("nodigest")!.state, "failed");
  },
});

Deno.test({
  name: "restore starts every stored instance; a changed InstanceInfo restarts it",
  ...pure,
  async fn() {
    const { store, runtime, launcher } = setup();
    store.put({ instanceId: identKey(ident("svc")), info: info("svc") });
    await launcher.restore();
    assert.deepEqual(runtime.log, ["start svc/0"]);
    await launcher.update({ startInstances: [info("svc", 0n, "2.0.0")], stopInstances: [] });
    assert.deepEqual(runtime.log, ["start svc/0", `stop ${identKey(ident("svc"))}`, "start svc/0"]);
    assert.equal(launcher.statuses()[0]!.version, "2.0.0");
  },
});

Deno.test({
  name:
    "update: a stop of an unknown instance comes back inactive with notFound, nothing else moves",
  ...pure,
  async fn() {
    const { store, runtime, launcher } = setup();
    await launcher.update({ startInstances: [info("svc")], stopInstances: [] });
    const rejected = await launcher.update({
      startInstances: [],
      stopInstances: [ident("ghost", 7n)],
    });
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.state, "inactive");
    assert.equal(rejected[0]!.instance?.itemId, "ghost");
    assert.equal(rejected[0]!.error!.aosCode, 5);
    assert.match(rejected[0]!.error!.message, /Cannot stop instance ghost:subj:7: it is not/);
    assert.equal(store.rows.size, 1);
    assert.deepEqual(runtime.log, ["start svc/0"]);
    assert.deepEqual(launcher.statuses().map((s) => s.instance?.itemId), ["svc"]);
  },
});

Deno.test({
  name: "an update arriving during the restore (CM reconnects) waits for it and is applied",
  ...pure,
  async fn() {
    const { store, runtime, launcher } = setup();
    store.put({ instanceId: identKey(ident("svc")), info: info("svc") });
    store.put({ instanceId: identKey(ident("svc", 1n)), info: info("svc", 1n) });
    // The restore's starts hang until released, as a real container start takes a while.
    const gate = Promise.withResolvers<void>();
    const start = runtime.start.bind(runtime);
    runtime.start = async (d) => {
      await gate.promise;
      return await start(d);
    };
    const restoring = launcher.restore();
    const updating = launcher.update({ startInstances: [], stopInstances: [ident("svc", 1n)] });
    gate.resolve();
    await restoring;
    assert.deepEqual(await updating, []);
    assert.deepEqual([...store.rows.keys()], [identKey(ident("svc"))]);
    assert.deepEqual(runtime.log, [
      "start svc/0",
      "start svc/1",
      `stop ${identKey(ident("svc", 1n))}`,
    ]);
    assert.deepEqual(launcher.statuses().map((s) => s.instance?.instance), [0n]);
  },
});

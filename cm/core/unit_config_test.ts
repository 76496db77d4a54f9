import assert from "node:assert/strict";
import type { UnitConfig } from "@aos/shared/cloudprotocol";
import { AosError } from "@aos/shared/errors";
import { parseNodeConfig } from "../../sm/core/node_config.ts";
import {
  type ConfigTarget,
  type NodeConfigStatusReply,
  nodeConfigToJson,
  parseUnitConfig,
  selectNodeConfig,
  UnitConfigManager,
  unitConfigToJson,
} from "./unit_config.ts";

class FakeNodeConfigs {
  readonly status = new Map<string, NodeConfigStatusReply>();
  readonly texts = new Map<string, string>();
  readonly reject = new Map<string, AosError>();
  readonly calls: string[] = [];

  getNodeConfigStatus(nodeId: string): Promise<NodeConfigStatusReply> {
    return Promise.resolve(this.status.get(nodeId) ?? { state: "absent", version: "" });
  }

  checkNodeConfig(nodeId: string, text: string, version: string): Promise<void> {
    this.calls.push(`check ${nodeId} ${version}`);
    parseNodeConfig(text);
    const err = this.reject.get(nodeId);
    return err ? Promise.reject(err) : Promise.resolve();
  }

  setNodeConfig(nodeId: string, text: string, version: string): Promise<void> {
    this.calls.push(`set ${nodeId} ${version}`);
    this.texts.set(nodeId, text);
    this.status.set(nodeId, { state: "installed", version, error: undefined });
    return Promise.resolve();
  }
}

class TextStore {
  text: string | undefined;
  constructor(readonly log: string[] = [], text?: string) {
    this.text = text;
  }
  load() {
    return this.text;
  }
  save(text: string) {
    this.log.push("save");
    this.text = text;
  }
}

function config(version: string, nodes: UnitConfig["nodes"] = []): UnitConfig {
  return { version, formatVersion: "1", nodes };
}

function entry(nodeType: string, priority: number, nodeId?: string): UnitConfig["nodes"][number] {
  return {
    nodeGroupSubject: { codename: nodeType },
    ...(nodeId ? { node: { codename: nodeId } } : {}),
    priority,
    labels: [`p${priority}`],
  };
}

async function setup(nodes: ConfigTarget[], stored?: string) {
  const sm = new FakeNodeConfigs();
  const log: string[] = [];
  const store = new TextStore(log, stored);
  const origCheck = sm.checkNodeConfig.bind(sm);
  const origSet = sm.setNodeConfig.bind(sm);
  sm.checkNodeConfig = (n, t, v) => (log.push(`check ${n}`), origCheck(n, t, v));
  sm.setNodeConfig = (n, t, v) => (log.push(`set ${n}`), origSet(n, t, v));
  const manager = new UnitConfigManager({ store, sm, connectedNodes: () => nodes });
  await manager.init();
  return { sm, store, log, manager };
}

const MAIN: ConfigTarget = { nodeId: "main", nodeType: "main-type" };
const SEC: ConfigTarget = { nodeId: "sec", nodeType: "sec-type" };

Deno.test({
  name: "unit config: version must be semver and strictly newer than the installed one",
  permissions: "none",
  async fn() {
    const { manager } = await setup([MAIN]);
    assert.deepEqual(manager.status(), [{ state: "absent" }]);
    manager.checkVersion(config("0.0.1"));
    await manager.updateUnitConfig(config("1.0.0"));
    assert.deepEqual(manager.status(), [{ state: "installed", version: "1.0.0" }]);
    assert.throws(
      () => manager.checkVersion(config("1.0.0")),
      (e: AosError) => e.code === "alreadyExist",
    );
    assert.throws(
      () => manager.checkVersion(config("0.9.9")),
      (e: AosError) =>
        e.code === "wrongState" && /older than the installed 1\.0\.0/.test(e.message),
    );
    assert.throws(
      () => manager.checkVersion(config("latest")),
      (e: AosError) => e.code === "invalidArgument",
    );
    manager.checkVersion(config("1.0.1"));
    manager.checkVersion(config("2.0.0-rc.1"));
  },
});

Deno.test({
  name: "unit config: node config by node id, else node type, else empty; version overwritten",
  permissions: "none",
  fn() {
    const cfg = config("3.1.0", [
      entry("main-type", 1),
      entry("main-type", 7, "other"),
      entry("main-type", 5, "main"),
      entry("gpu-type", 9, "gpu1"),
    ]);
    const byNode = selectNodeConfig(cfg, MAIN);
    assert.equal(byNode.priority, 5);
    assert.equal(byNode.version, "3.1.0");
    assert.deepEqual(byNode.node, { codename: "main" });
    const byType = selectNodeConfig(cfg, { nodeId: "m2", nodeType: "main-type" });
    assert.equal(byType.priority, 1);
    assert.deepEqual(byType.node, { codename: "m2" });
    // gpu1's own entry is not its group's: gpu2 gets the empty config.
    const empty = selectNodeConfig(cfg, { nodeId: "gpu2", nodeType: "gpu-type" });
    assert.deepEqual(empty, {
      nodeGroupSubject: { codename: "gpu-type" },
      node: { codename: "gpu2" },
      priority: 0,
      labels: [],
      version: "3.1.0",
    });
    // The SM's own parser reads what we send, alert rules included.
    const withRules = selectNodeConfig(
      config("3.1.0", [{
        ...entry("main-type", 2),
        alertRules: {
          cpu: { minThreshold: 50, maxThreshold: 90, minTimeout: 15_000 },
          partitions: [{ name: "storages", minThreshold: 1, maxThreshold: 2, minTimeout: 0 }],
        },
        resourceRatios: { cpu: 40 },
      }]),
      MAIN,
    );
    const parsed = parseNodeConfig(nodeConfigToJson(withRules));
    assert.equal(parsed.alertRules?.cpu?.minTimeout, "PT15S");
    assert.equal(parsed.version, "3.1.0");
    assert.equal(parsed.resourceRatios?.cpu, 40);
  },
});

Deno.test({
  name: "unit config: checked on every connected node, then persisted, then set per node",
  permissions: "none",
  async fn() {
    const { sm, store, log, manager } = await setup([MAIN, SEC]);
    const cfg = config("1.0.0", [entry("main-type", 3), entry("sec-type", 4)]);
    assert.equal(await manager.apply(cfg), true);
    assert.deepEqual(log, ["check main", "check sec", "save", "set main", "set sec"]);
    assert.equal(JSON.parse(sm.texts.get("sec")!).priority, 4);
    assert.deepEqual(parseUnitConfig(store.text!), cfg);
    assert.equal(manager.placementConfig(SEC).priority, 4);

    // The same version again is a no-op, not a failure.
    log.length = 0;
    assert.equal(await manager.apply(cfg), false);
    assert.deepEqual(log, []);
    assert.deepEqual(manager.status(), [{ state: "installed", version: "1.0.0" }]);

    // A node that rejects: nothing persisted, the failed version is reported with its error.
    sm.reject.set("sec", new AosError("invalidArgument", "bad labels"));
    await assert.rejects(
      manager.apply(config("1.1.0")),
      (e: AosError) => e.code === "invalidArgument" && /Node sec rejects/.test(e.message),
    );
    assert.deepEqual(log, ["check main", "check sec"]);
    assert.equal(parseUnitConfig(store.text!).version, "1.0.0");
    const status = manager.status();
    assert.equal(status.length, 2);
    assert.deepEqual(status[0], { state: "installed", version: "1.0.0" });
    assert.equal(status[1]?.state, "failed");
    assert.equal(status[1]?.version, "1.1.0");
    assert.equal(status[1]?.errorInfo?.aosCode, 6);
    assert.match(status[1]?.errorInfo?.message ?? "", /bad labels/);

    // An older version is refused before any node is asked.
    log.length = 0;
    await assert.rejects(manager.apply(config("0.1.0")), (e: AosError) => e.code === "wrongState");
    assert.deepEqual(log, []);
  },
});

Deno.test({
  name: "unit config: a reconnecting node gets its node config only when it differs or failed",
  permissions: "none",
  async fn() {
    const stored = unitConfigToJson(config("2.0.0", [entry("sec-type", 4)]));
    const { sm, log, manager } = await setup([], stored);
    assert.deepEqual(manager.status(), [{ state: "installed", version: "2.0.0" }]);

    sm.status.set("sec", { state: "installed", version: "2.0.0", error: undefined });
    await manager.nodeConnected(SEC);
    assert.deepEqual(log, []);

    sm.status.set("sec", { state: "installed", version: "1.0.0", error: undefined });
    await manager.nodeConnected(SEC);
    assert.deepEqual(log, ["set sec"]);
    assert.equal(JSON.parse(sm.texts.get("sec")!).version, "2.0.0");

    sm.status.set("sec", {
      state: "failed",
      version: "2.0.0",
      error: { aosCode: 1, exitCode: 0, message: "disk" },
    });
    await manager.nodeConnected(SEC);
    assert.deepEqual(log, ["set sec", "set sec"]);
  },
});

Deno.test({
  name: "unit config: an unreadable stored config is reported failed with its error",
  permissions: "none",
  async fn() {
    const { manager } = await setup([MAIN], "{not json");
    const [status] = manager.status();
    assert.equal(status?.state, "failed");
    assert.ok(status?.errorInfo && status.errorInfo.aosCode > 0);
    assert.match(status.errorInfo.message, /not JSON/);
    // Without an installed version any valid one is accepted.
    await manager.apply(config("0.0.1"));
    assert.deepEqual(manager.status(), [{ state: "installed", version: "0.0.1" }]);
  },
});

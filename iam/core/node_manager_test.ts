import assert from "node:assert/strict";
import { nullLogger } from "@aos/shared/logger";
import { IamDatabase } from "../adapters/iam_db.ts";
import {
  type NodeEntry,
  nodeInfoFromJson,
  nodeInfoToJson,
  NodeManager,
  type NodeStore,
} from "./node_manager.ts";
import type { NodeInfo } from "./types.ts";

function sampleNode(nodeId: string, state = "provisioned"): NodeInfo {
  return {
    nodeId,
    nodeType: "secondary",
    title: `Node ${nodeId}`,
    maxDmips: 10_000n,
    totalRam: 8n * 1024n * 1024n * 1024n,
    physicalRam: 0n,
    osInfo: { os: "linux", version: "6.1", features: ["a"] },
    cpus: [{
      modelName: "cpu",
      numCores: 4n,
      numThreads: 8n,
      archInfo: { architecture: "x86_64", variant: "" },
      maxDmips: 0n,
    }],
    partitions: [{ name: "var", types: ["storages"], totalSize: 1000n, path: "/var" }],
    attrs: [{ name: "AosComponents", value: "sm" }],
    state,
    error: undefined,
  };
}

class MemoryStore implements NodeStore {
  rows = new Map<string, string>();
  loadNodes() {
    return new Map(this.rows);
  }
  saveNode(id: string, info: string) {
    this.rows.set(id, info);
  }
  removeNode(id: string) {
    this.rows.delete(id);
  }
}

Deno.test({
  name: "node info JSON: cloud-protocol shape, round trip, never stores isConnected=true",
  permissions: "none",
  fn() {
    const info = sampleNode("n1");
    const json = JSON.parse(nodeInfoToJson(info));
    assert.deepEqual(json.identity, { codename: "n1", title: "Node n1" });
    assert.deepEqual(json.nodeGroupSubject, { codename: "secondary" });
    assert.equal(json.totalRam, 8 * 1024 ** 3);
    assert.equal(json.cpus[0].totalNumCores, 4);
    assert.deepEqual(json.attrs, { AosComponents: "sm" });
    assert.equal(json.isConnected, false);
    assert.equal(json.state, "provisioned");
    assert.deepEqual(nodeInfoFromJson(nodeInfoToJson(info)), info);
    assert.throws(() => nodeInfoFromJson("{}"), /Bad stored node info/);
    assert.throws(() => nodeInfoFromJson("not json"), /Bad stored node info/);
  },
});

Deno.test({
  name: "node manager: persist before notify, unprovisioned rows removed, connected in memory",
  permissions: "none",
  fn() {
    const store = new MemoryStore();
    const nodes = new NodeManager(store, nullLogger);
    nodes.init();
    const seen: NodeEntry[] = [];
    const unsubscribe = nodes.subscribe((e) => {
      // The row is already written when listeners hear about a change.
      if (e.info.state !== "unprovisioned") assert.ok(store.rows.has(e.info.nodeId));
      seen.push(e);
    });

    nodes.setNodeInfo(sampleNode("main"), true);
    nodes.setNodeInfo(sampleNode("sec", "unprovisioned"), true);
    assert.deepEqual([...store.rows.keys()], ["main"]);
    assert.deepEqual(nodes.getAllNodeIds().sort(), ["main", "sec"]);
    assert.equal(seen.length, 2);

    // Same info and flag: no notification.
    nodes.setNodeInfo(sampleNode("main"), true);
    assert.equal(seen.length, 2);

    nodes.setNodeState("sec", "provisioned");
    assert.equal(JSON.parse(store.rows.get("sec")!).state, "provisioned");
    assert.equal(nodes.getNodeInfo("sec").state, "provisioned");
    assert.ok(nodes.isConnected("sec"));

    nodes.setConnected("sec", false);
    assert.equal(nodes.isConnected("sec"), false);
    assert.equal(JSON.parse(store.rows.get("sec")!).isConnected, false);
    assert.equal(seen.at(-1)!.connected, false);

    nodes.setNodeState("sec", "unprovisioned");
    assert.ok(!store.rows.has("sec"));
    assert.equal(nodes.getNodeInfo("sec").state, "unprovisioned");

    assert.throws(() => nodes.getNodeInfo("nope"), /Unknown node "nope"/);
    assert.throws(() => nodes.setNodeState("nope", "paused"), /Unknown node/);
    nodes.setConnected("nope", true); // ignored
    unsubscribe();
    const count = seen.length;
    nodes.setConnected("main", false);
    assert.equal(seen.length, count);
  },
});

Deno.test("node manager: survives a restart through iamanager.db; bad rows are skipped", async () => {
  const dir = await Deno.makeTempDir();
  try {
    {
      using db = IamDatabase.open(`${dir}/iamanager.db`);
      const nodes = new NodeManager(db, nullLogger);
      nodes.init();
      nodes.setNodeInfo(sampleNode("main"), true);
      nodes.setNodeInfo(sampleNode("sec", "paused"), true);
      nodes.setNodeInfo(sampleNode("new", "unprovisioned"), true);
      db.saveNode("broken", "{not json");
    }
    using db = IamDatabase.open(`${dir}/iamanager.db`);
    const nodes = new NodeManager(db, nullLogger);
    nodes.init();
    assert.deepEqual(nodes.getAllNodeIds().sort(), ["main", "sec"]);
    assert.equal(nodes.getNodeInfo("sec").state, "paused");
    assert.equal(nodes.isConnected("sec"), false);
    assert.deepEqual(nodes.getNodeInfo("main"), sampleNode("main"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import type { NodeInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import type { SMInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { FakeTimers } from "../core/_test_fakes.ts";
import { NodeInfoProvider } from "./node_info.ts";

function iamNode(nodeId: string, over: Partial<NodeInfo> = {}): NodeInfo {
  return {
    nodeId,
    nodeType: `${nodeId}-type`,
    title: nodeId,
    maxDmips: 1000n,
    totalRam: 1024n,
    physicalRam: 2048n,
    osInfo: { os: "linux", version: "6.1", features: [] },
    cpus: [{
      modelName: "cpu",
      numCores: 2n,
      numThreads: 4n,
      archInfo: { architecture: "x86_64", variant: "" },
      maxDmips: 0n,
    }],
    partitions: [{ name: "storages", types: ["storages"], totalSize: 100n, path: "/var" }],
    attrs: [{ name: "AosComponents", value: "iam,sm" }],
    state: "provisioned",
    error: undefined,
    ...over,
  };
}

const SM_INFO: SMInfo = {
  nodeId: "main",
  runtimes: [{
    runtimeId: "runc-main",
    type: "runc",
    maxDmips: 1000n,
    allowedDmips: 0n,
    totalRam: 1024n,
    allowedRam: 0n,
    maxInstances: 0n,
    osInfo: { os: "linux", version: "", features: [] },
    archInfo: { architecture: "x86_64", variant: "" },
  }],
  resources: [{ name: "gpu", sharedCount: 1n }],
};

class FakeIam {
  readonly nodes = new Map<string, NodeInfo>();
  listener: ((n: NodeInfo) => void) | undefined;
  getAllNodeIds() {
    return Promise.resolve([...this.nodes.keys()]);
  }
  getNodeInfo(id: string) {
    return Promise.resolve(this.nodes.get(id)!);
  }
  subscribeNodeChanged(l: (n: NodeInfo) => void) {
    this.listener = l;
    return () => (this.listener = undefined);
  }
}

Deno.test({
  name: "node info: connectivity rules, SM info merge, SM connection timeout → error",
  permissions: "none",
  async fn() {
    const iam = new FakeIam();
    iam.nodes.set("main", iamNode("main"));
    iam.nodes.set("nosm", iamNode("nosm", { attrs: [{ name: "AosComponents", value: "iam" }] }));
    iam.nodes.set("new", iamNode("new", { state: "unprovisioned" }));
    const timers = new FakeTimers();
    using p = new NodeInfoProvider({ iam, smConnectionTimeoutMs: 60_000, timers });
    const changes: string[][] = [];
    p.onChange((ids) => changes.push(ids));
    await p.init();
    const byId = () => new Map(p.placementNodes().map((n) => [n.nodeId, n]));
    // No sm in AosComponents or unprovisioned: connected; main waits for its SM.
    assert.deepEqual(
      [...byId()].map(([id, n]) => [id, n.connected]),
      [["main", false], ["nosm", true], ["new", true]],
    );

    p.smChanged("main", SM_INFO);
    const main = byId().get("main")!;
    assert.equal(main.connected, true);
    assert.deepEqual(main.runtimes.map((r) => [r.runtimeId, r.archInfo?.architecture]), [
      ["runc-main", "x86_64"],
    ]);
    assert.deepEqual(main.resources, [{ name: "gpu", sharedCount: 1 }]);
    assert.deepEqual(p.configTargets(), [{ nodeId: "main", nodeType: "main-type" }]);
    const cloud = p.cloudNodes(["main"])[0]!;
    assert.equal(cloud.isConnected, true);
    assert.equal(cloud.state, "provisioned");
    assert.equal(cloud.runtimes[0]?.runtimeType, "runc");
    assert.equal(cloud.cpus[0]?.totalNumCores, 2);

    // The SM goes away: after the timeout the node is in error with the reason.
    changes.length = 0;
    p.smChanged("main", undefined);
    assert.deepEqual(changes, [["main"]]);
    await timers.advance(59_000);
    assert.equal(p.cloudNodes(["main"])[0]?.state, "provisioned");
    await timers.advance(1_000);
    assert.deepEqual(changes, [["main"], ["main"]]);
    const failed = p.cloudNodes(["main"])[0]!;
    assert.equal(failed.state, "error");
    assert.equal(failed.isConnected, false);
    assert.match(failed.errorInfo?.message ?? "", /SM connection timeout/);
    assert.equal(byId().get("main")?.state, "error");

    // It returns: connected and provisioned again; IAM updates are merged.
    p.smChanged("main", SM_INFO);
    assert.equal(p.cloudNodes(["main"])[0]?.state, "provisioned");
    iam.listener!(iamNode("main", { state: "paused" }));
    assert.equal(byId().get("main")?.state, "paused");
    assert.equal(timers.pending, 0);
  },
});

Deno.test({
  name: "node info: an SM that connects before IAM reports its node is kept",
  permissions: "none",
  async fn() {
    const iam = new FakeIam();
    const timers = new FakeTimers();
    using p = new NodeInfoProvider({ iam, timers });
    await p.init();
    p.smChanged("main", SM_INFO);
    assert.deepEqual(p.placementNodes(), []);
    iam.listener!(iamNode("main"));
    assert.equal(p.placementNodes()[0]?.connected, true);
  },
});

import assert from "node:assert/strict";
import {
  type IAMIncomingMessages,
  type IAMOutgoingMessages,
  IAMPublicNodesServiceClient,
  IAMPublicNodesServiceService,
  type NodeInfo,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import type * as grpc from "@grpc/grpc-js";
import { createGrpcClient, createGrpcServer, type GrpcServer } from "@aos/shared/grpc";
import { nullLogger } from "@aos/shared/logger";
import { NodeManager, type NodeStore } from "../core/node_manager.ts";
import { NodeController, NodeUnreachableError } from "./node_controller.ts";

class MemoryStore implements NodeStore {
  rows = new Map<string, string>();
  loadNodes = () => new Map(this.rows);
  saveNode = (id: string, info: string) => void this.rows.set(id, info);
  removeNode = (id: string) => void this.rows.delete(id);
}

function nodeInfo(nodeId: string, state: string, title = nodeId): NodeInfo {
  return {
    nodeId,
    nodeType: "secondary",
    title,
    maxDmips: 0n,
    totalRam: 0n,
    physicalRam: 0n,
    osInfo: undefined,
    cpus: [],
    partitions: [],
    attrs: [],
    state,
    error: undefined,
  };
}

async function until(what: string, cond: () => boolean, limitMs = 5_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

type Stream = grpc.ClientDuplexStream<IAMOutgoingMessages, IAMIncomingMessages>;

/** A fake secondary: sends node info, answers cert-type requests unless told not to. */
function secondary(client: InstanceType<typeof IAMPublicNodesServiceClient>, info: NodeInfo) {
  const stream: Stream = client.registerNode();
  const received: IAMIncomingMessages[] = [];
  let status: grpc.StatusObject | undefined;
  let answer = true;
  stream.on("data", (m: IAMIncomingMessages) => {
    received.push(m);
    const r = m.IAMIncomingMessage;
    if (answer && r?.$case === "getCertTypesRequest") {
      // An unrequested response first: it must be ignored.
      stream.write({
        IAMOutgoingMessage: { $case: "pauseNodeResponse", pauseNodeResponse: { error: undefined } },
      });
      stream.write({
        IAMOutgoingMessage: { $case: "certTypesResponse", certTypesResponse: { types: ["iam"] } },
      });
    }
  });
  stream.on("status", (s: grpc.StatusObject) => status = s);
  stream.on("error", () => {});
  stream.write({ IAMOutgoingMessage: { $case: "nodeInfo", nodeInfo: info } });
  return {
    stream,
    received,
    get status() {
      return status;
    },
    silence() {
      answer = false;
    },
  };
}

Deno.test("node controller: admission, forwarding, timeouts, disconnects and replacement", async (t) => {
  const nodes = new NodeManager(new MemoryStore(), nullLogger);
  nodes.init();
  nodes.setNodeInfo(nodeInfo("main", "provisioned"), true);
  const controller = new NodeController({
    ownNodeId: "main",
    nodes,
    logger: nullLogger,
    timeouts: { shortMs: 300, longMs: 300, connectWaitMs: 200 },
  });
  const serve = (kind: "public" | "protected"): Promise<GrpcServer> =>
    createGrpcServer({
      address: "127.0.0.1:0",
      security: { mode: "insecure" },
      services: [{
        definition: IAMPublicNodesServiceService,
        implementation: { registerNode: controller.handler(kind) },
      }],
    });
  await using pub = await serve("public");
  await using prot = await serve("protected");
  const pubClient = await createGrpcClient(IAMPublicNodesServiceClient, `127.0.0.1:${pub.port}`, {
    security: { mode: "insecure" },
  });
  const protClient = await createGrpcClient(
    IAMPublicNodesServiceClient,
    `127.0.0.1:${prot.port}`,
    { security: { mode: "insecure" } },
  );
  try {
    await t.step("a provisioned node may not register on the public server", async () => {
      const s = secondary(pubClient, nodeInfo("sec", "provisioned"));
      await until("refusal", () => s.status !== undefined);
      assert.match(s.status!.details, /must register on the protected server/);
      assert.throws(() => nodes.getNodeInfo("sec"), /Unknown node/);
    });

    await t.step("a node may not use the main node's ID, nor send garbage", async () => {
      const s = secondary(protClient, nodeInfo("main", "provisioned"));
      await until("refusal", () => s.status !== undefined);
      assert.match(s.status!.details, /main node's own ID/);
      const bad = secondary(protClient, nodeInfo("../x", "provisioned"));
      await until("refusal", () => bad.status !== undefined);
      assert.match(bad.status!.details, /nodeId may hold only/);
      const state = secondary(protClient, nodeInfo("ok1", "sleeping"));
      await until("refusal", () => state.status !== undefined);
      assert.match(state.status!.details, /state must be one of/);
    });

    const first = secondary(pubClient, nodeInfo("sec", "unprovisioned"));
    await t.step("an unprovisioned node registers on the public server and answers", async () => {
      await until("registration", () => controller.isLinked("sec"));
      assert.ok(nodes.isConnected("sec"));
      assert.equal(nodes.getNodeInfo("sec").state, "unprovisioned");
      const res = await controller.forward("sec", "getCertTypesRequest", { nodeId: "sec" });
      assert.deepEqual(res.types, ["iam"]);
      assert.equal(first.received.at(-1)?.IAMIncomingMessage?.$case, "getCertTypesRequest");
    });

    await t.step("no answer: the request times out", async () => {
      first.silence();
      await assert.rejects(
        controller.forward("sec", "getCertTypesRequest", { nodeId: "sec" }),
        (e) => e instanceof NodeUnreachableError && e.code === "timeout",
      );
    });

    await t.step("a newer stream for the same node takes over", async () => {
      const second = secondary(protClient, nodeInfo("sec", "unprovisioned"));
      // State unprovisioned on the protected server: refused, the first link stays.
      await until("refusal", () => second.status !== undefined);
      assert.ok(controller.isLinked("sec"));
      const third = secondary(pubClient, nodeInfo("sec", "unprovisioned", "third"));
      await until("third registered", () => nodes.getNodeInfo("sec").title === "third");
      const res = await controller.forward("sec", "getCertTypesRequest", { nodeId: "sec" });
      assert.deepEqual(res.types, ["iam"]);
      assert.equal(third.received.length, 1, "the newest stream got the request");
      // The old stream closing does not disconnect the node.
      first.stream.cancel();
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(nodes.isConnected("sec"));
      third.stream.end();
      await until("disconnect", () => !nodes.isConnected("sec"));
      assert.equal(controller.isLinked("sec"), false);
    });

    await t.step("an unknown or disconnected node is reported after the connect wait", async () => {
      await assert.rejects(
        controller.forward("ghost", "pauseNodeRequest", { nodeId: "ghost" }),
        (e) => e instanceof NodeUnreachableError && /Node ghost is not connected/.test(e.message),
      );
    });

    await t.step("a request waits for a node that reconnects in time", async () => {
      const pending = controller.forward("sec", "getCertTypesRequest", { nodeId: "sec" });
      const again = secondary(pubClient, nodeInfo("sec", "unprovisioned"));
      assert.deepEqual((await pending).types, ["iam"]);
      assert.equal(again.received.length, 1);
      // A request in flight fails when the stream drops.
      again.silence();
      const lost = controller.forward("sec", "getCertTypesRequest", { nodeId: "sec" });
      await until("request sent", () => again.received.length === 2);
      again.stream.cancel();
      await assert.rejects(lost, (e) => e instanceof NodeUnreachableError);
    });

    await t.step("closeAll ends every stream", async () => {
      const s = secondary(protClient, nodeInfo("sec2", "provisioned"));
      await until("registration", () => controller.isLinked("sec2"));
      controller.closeAll();
      await until("stream end", () => s.status !== undefined);
      assert.equal(s.status!.code, 0);
      assert.equal(nodes.isConnected("sec2"), false);
    });
  } finally {
    pubClient.close();
    protClient.close();
  }
});

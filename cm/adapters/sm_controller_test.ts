import assert from "node:assert/strict";
import {
  type InstanceStatus,
  type SMIncomingMessages,
  type SMOutgoingMessages,
  SMServiceClient,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { Channel } from "@aos/shared/core";
import { createGrpcClient, createGrpcServer } from "@aos/shared/grpc";
import { nullLogger } from "@aos/shared/logger";
import { SmController } from "./sm_controller.ts";

function active(itemId: string): InstanceStatus {
  return {
    instance: { itemId, subjectId: "s", instance: 0n, type: 0, preinstalled: false },
    version: "1.0.0",
    runtimeId: "rt",
    manifestDigest: `sha256:${"c".repeat(64)}`,
    envVars: [],
    state: "active",
    error: undefined,
  };
}

/** A controller on a real gRPC server and a raw SM stream the test drives message by message. */
async function setup(updateTimeoutMs?: number) {
  const connected = new Channel<string>();
  const controller = new SmController({
    ...(updateTimeoutMs ? { updateTimeoutMs } : {}),
    blobBaseUrl: "http://localhost:8094/blobs",
    hasBlob: () => Promise.resolve(false),
    listener: { smInfo: (id, info) => info && connected.trySend(id) },
    logger: nullLogger,
  });
  const server = await createGrpcServer({
    address: "127.0.0.1:0",
    security: { mode: "insecure" },
    services: [controller.service],
    shutdownTimeoutMs: 200,
  });
  const client = await createGrpcClient(SMServiceClient, `127.0.0.1:${server.port}`, {
    security: { mode: "insecure" },
  });
  const stream = client.registerSm();
  const received = new Channel<SMIncomingMessages>();
  stream.on("data", (m: SMIncomingMessages) => received.trySend(m));
  stream.on("error", () => {});
  const send = (m: SMOutgoingMessages["SMOutgoingMessage"]) =>
    stream.write({ SMOutgoingMessage: m });
  const next = async (kind: string) => {
    for (;;) {
      const m = await received.receive();
      if (m?.SMIncomingMessage?.$case === kind) return m.SMIncomingMessage;
    }
  };
  return {
    client,
    controller,
    connected,
    send,
    next,
    stream,
    async [Symbol.asyncDispose]() {
      stream.cancel();
      client.close();
      controller.close();
      await server.shutdown();
      received.close();
      connected.close();
    },
  };
}

Deno.test("SM controller: an update pushed before the SM's connect snapshot ends with the batch's snapshot", async () => {
  await using t = await setup();
  t.send({ $case: "smInfo", smInfo: { nodeId: "node0", runtimes: [], resources: [] } });
  assert.equal(await t.connected.receive(), "node0");
  // The launcher pushes at once; the SM's connect snapshot (what it ran before) is on its way.
  const done = t.controller.updateInstances("node0", {
    startInstances: [],
    stopInstances: [],
  });
  t.send({ $case: "nodeInstancesStatus", nodeInstancesStatus: { instances: [] } });
  // The update reaches the SM only after its connect snapshot; the batch's snapshot ends it.
  await t.next("updateInstances");
  t.send({ $case: "nodeInstancesStatus", nodeInstancesStatus: { instances: [active("svc")] } });
  assert.deepEqual((await done).map((s) => s.state), ["active"]);

  // Later updates go out at once and end with the next snapshot.
  const again = t.controller.updateInstances("node0", { startInstances: [], stopInstances: [] });
  await t.next("updateInstances");
  t.send({ $case: "nodeInstancesStatus", nodeInstancesStatus: { instances: [] } });
  assert.deepEqual(await again, []);
});

Deno.test("SM controller: an update held for the connect snapshot fails when the SM goes away", async () => {
  await using t = await setup();
  t.send({ $case: "smInfo", smInfo: { nodeId: "node1", runtimes: [], resources: [] } });
  assert.equal(await t.connected.receive(), "node1");
  const done = t.controller.updateInstances("node1", { startInstances: [], stopInstances: [] });
  t.stream.end();
  await assert.rejects(done, /disconnected/);
});

Deno.test("SM controller: an update held on a stream the SM replaced fails at once", async () => {
  // Before the fix only the update's own timeout ended it: a short one makes that a clear failure.
  await using t = await setup(5_000);
  t.send({ $case: "smInfo", smInfo: { nodeId: "node2", runtimes: [], resources: [] } });
  assert.equal(await t.connected.receive(), "node2");
  const held = t.controller.updateInstances("node2", { startInstances: [], stopInstances: [] });
  // The SM reconnects on a new stream before its connect snapshot.
  const second = t.client.registerSm();
  second.on("error", () => {});
  second.on("data", () => {});
  second.write({
    SMOutgoingMessage: {
      $case: "smInfo",
      smInfo: { nodeId: "node2", runtimes: [], resources: [] },
    },
  });
  await assert.rejects(held, /reconnected on a new stream/);
  second.cancel();
});

Deno.test("SM controller: an update that timed out while held is never sent late", async () => {
  await using t = await setup(150);
  t.send({ $case: "smInfo", smInfo: { nodeId: "node3", runtimes: [], resources: [] } });
  assert.equal(await t.connected.receive(), "node3");
  const ident = (itemId: string) => ({
    itemId,
    subjectId: "s",
    instance: 0n,
    type: 0,
    preinstalled: false,
  });
  const stale = t.controller.updateInstances("node3", {
    startInstances: [],
    stopInstances: [ident("stale")],
  });
  await assert.rejects(stale, /no reply within 150 ms/);
  // A newer update is held too; the connect snapshot releases only that one.
  const fresh = t.controller.updateInstances("node3", {
    startInstances: [],
    stopInstances: [ident("fresh")],
  });
  t.send({ $case: "nodeInstancesStatus", nodeInstancesStatus: { instances: [] } });
  const sent = await t.next("updateInstances");
  assert.ok(sent.$case === "updateInstances");
  assert.deepEqual(sent.updateInstances.stopInstances.map((i) => i.itemId), ["fresh"]);
  t.send({ $case: "nodeInstancesStatus", nodeInstancesStatus: { instances: [active("svc")] } });
  assert.deepEqual((await fresh).map((s) => s.state), ["active"]);
});

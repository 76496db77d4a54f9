import assert from "node:assert/strict";
import type * as grpc from "@grpc/grpc-js";
import {
  type SMIncomingMessages,
  type SMOutgoingMessages,
  SMServiceService,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { Channel } from "@aos/shared/core";
import { createGrpcServer, type GrpcServer } from "@aos/shared/grpc";
import { nullLogger } from "@aos/shared/logger";
import { CmSession, type CmSessionHandlers } from "./cm_session.ts";

/** A test CM: records what SMs send, lets the test push requests. */
async function testCm(port = 0) {
  const received = new Channel<SMOutgoingMessages>();
  let current: grpc.ServerDuplexStream<SMOutgoingMessages, SMIncomingMessages> | undefined;
  const server: GrpcServer = await createGrpcServer({
    address: `127.0.0.1:${port}`,
    security: { mode: "insecure" },
    services: [{
      definition: SMServiceService,
      implementation: {
        registerSm(call: grpc.ServerDuplexStream<SMOutgoingMessages, SMIncomingMessages>) {
          current = call;
          call.on("data", (m: SMOutgoingMessages) => received.trySend(m));
          call.on("end", () => call.end());
          call.on("error", () => {});
        },
        getBlobsInfos(
          call: grpc.ServerUnaryCall<{ digests: string[] }, { urls: string[] }>,
          cb: grpc.sendUnaryData<{ urls: string[] }>,
        ) {
          cb(null, {
            urls: call.request.digests.map((d) =>
              `http://127.0.0.1:1/blobs/${d.replace(":", "/")}`
            ),
          });
        },
      },
    }],
    shutdownTimeoutMs: 200,
  });
  return {
    server,
    received,
    send: (m: SMIncomingMessages) => current!.write(m),
    next: async (kind: string) => {
      for (;;) {
        const m = await received.receive();
        if (m?.SMOutgoingMessage?.$case === kind) return m.SMOutgoingMessage;
      }
    },
  };
}

function handlers(log: string[]): CmSessionHandlers {
  return {
    smInfo: () => ({ nodeId: "node0", runtimes: [], resources: [] }),
    instancesStatus: () => [],
    updateInstances: async (u) => {
      log.push(`update start=${u.startInstances.length} stop=${u.stopInstances.length}`);
      await Promise.resolve();
    },
    nodeConfigStatus: () => ({ state: "absent", version: "", error: undefined }),
    checkNodeConfig: (_c, v) => {
      if (v === "0.0.1") throw new Error("wrong version");
      return { state: "installed", version: v, error: undefined };
    },
    setNodeConfig: (_c, v) => Promise.resolve({ state: "installed", version: v, error: undefined }),
    connectionStatus: (c) => log.push(`cloud ${c}`),
  };
}

Deno.test("SM session: sm_info first, snapshot, requests answered, reconnect after CM restart", async () => {
  const cm = await testCm();
  const port = cm.server.port;
  const log: string[] = [];
  const session = new CmSession({
    address: `127.0.0.1:${port}`,
    security: () => ({ mode: "insecure" }),
    handlers: handlers(log),
    logger: nullLogger,
    reconnectMs: 100,
  });
  session.start();
  try {
    const first = await cm.received.receive();
    assert.equal(first?.SMOutgoingMessage?.$case, "smInfo");
    await cm.next("nodeInstancesStatus");

    cm.send({
      SMIncomingMessage: {
        $case: "checkNodeConfig",
        checkNodeConfig: { nodeConfig: "{}", version: "0.0.1" },
      },
    });
    const bad = await cm.next("nodeConfigStatus");
    assert.equal(bad.$case === "nodeConfigStatus" && bad.nodeConfigStatus.state, "failed");
    assert.match(
      bad.$case === "nodeConfigStatus" ? bad.nodeConfigStatus.error!.message : "",
      /wrong version/,
    );

    cm.send({
      SMIncomingMessage: {
        $case: "updateInstances",
        updateInstances: { startInstances: [], stopInstances: [] },
      },
    });
    await cm.next("nodeInstancesStatus");
    assert.deepEqual(log, ["update start=0 stop=0"]);
    cm.send({
      SMIncomingMessage: { $case: "connectionStatus", connectionStatus: { cloudStatus: 1 } },
    });

    assert.deepEqual(await session.getBlobsInfos(["sha256:" + "a".repeat(64)]), [
      `http://127.0.0.1:1/blobs/sha256/${"a".repeat(64)}`,
    ]);

    // The CM goes away and comes back on the same port: the SM reconnects and resends sm_info.
    await cm.server.shutdown();
    cm.received.close();
    const cm2 = await testCm(port);
    try {
      const again = await cm2.received.receive();
      assert.equal(again?.SMOutgoingMessage?.$case, "smInfo");
      assert.ok(log.includes("cloud true"));
    } finally {
      await session[Symbol.asyncDispose]();
      await cm2.server.shutdown();
    }
  } finally {
    await session[Symbol.asyncDispose]();
    await cm.server.shutdown();
  }
});

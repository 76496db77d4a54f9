/**
 * Our SM session against our CM's SM controller over real gRPC: node binding by sm_info,
 * update_instances completed by node_instances_status, node config replies with errors,
 * GetBlobsInfos URLs, disconnect and timeouts.
 */
import assert from "node:assert/strict";
import type { InstanceStatus } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { createGrpcServer } from "@aos/shared/grpc";
import { nullLogger } from "@aos/shared/logger";
import { toErrorInfo } from "@aos/shared/errors";
import { SmController } from "../cm/adapters/sm_controller.ts";
import { CmSession } from "../sm/adapters/cm_session.ts";

const digest = "sha256:" + "b".repeat(64);

function status(item: string, state: string): InstanceStatus {
  return {
    instance: { itemId: item, subjectId: "s", instance: 0n, type: 0, preinstalled: false },
    version: "1.0.0",
    runtimeId: "rt",
    manifestDigest: digest,
    envVars: [],
    state,
    error: undefined,
  };
}

Deno.test("SM controller and SM session over gRPC", async () => {
  const events: string[] = [];
  let nodeStatus: InstanceStatus[] = [];
  const controller = new SmController({
    blobBaseUrl: "http://localhost:8094/blobs",
    hasBlob: (d) => Promise.resolve(d === digest),
    listener: {
      smInfo: (id, info) => events.push(info ? `connected ${id}` : `disconnected ${id}`),
      nodeInstancesStatus: (id, list) => events.push(`snapshot ${id} ${list.length}`),
      updateInstancesStatus: (id, list) => events.push(`delta ${id} ${list[0]?.state}`),
    },
    logger: nullLogger,
    syncTimeoutMs: 300,
  });
  const server = await createGrpcServer({
    address: "127.0.0.1:0",
    security: { mode: "insecure" },
    services: [controller.service],
    shutdownTimeoutMs: 200,
  });
  let stall = false;
  const session = new CmSession({
    address: `127.0.0.1:${server.port}`,
    security: () => ({ mode: "insecure" }),
    logger: nullLogger,
    reconnectMs: 100,
    handlers: {
      smInfo: () => ({
        nodeId: "node1",
        runtimes: [],
        resources: [{ name: "camera", sharedCount: 1n }],
      }),
      instancesStatus: () => nodeStatus,
      updateInstances: async (u) => {
        nodeStatus = u.startInstances.map((i) => status(i.instance!.itemId, "active"));
        session.sendUpdateInstancesStatus([status("svc", "activating")]);
        await Promise.resolve();
      },
      nodeConfigStatus: () => ({ state: "installed", version: "1.0.0", error: undefined }),
      checkNodeConfig: (_c, v) => {
        if (v !== "2.0.0") throw new Error(`wrong version ${v}`);
        return { state: "installed", version: v, error: undefined };
      },
      setNodeConfig: (_c, v) =>
        stall ? new Promise<never>(() => {}) : Promise.resolve({
          state: "failed",
          version: v,
          error: toErrorInfo(new Error("disk full")),
        }),
    },
  });
  session.start();
  try {
    while (!controller.connectedNodes.includes("node1")) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(controller.smInfo("node1")?.resources[0]?.name, "camera");

    const done = await controller.updateInstances("node1", {
      startInstances: [{
        instance: { itemId: "svc", subjectId: "s", instance: 0n, type: 0, preinstalled: false },
        version: "1.0.0",
        manifestDigest: digest,
        ownerId: "o",
        runtimeId: "rt",
        uid: 5000,
        gid: 5000,
        priority: 0n,
        storagePath: "",
        statePath: "",
        envVars: [],
        monitoringParameters: undefined,
      }],
      stopInstances: [],
    });
    assert.equal(done[0]?.state, "active");
    assert.ok(events.includes("delta node1 activating"));

    assert.equal((await controller.getNodeConfigStatus("node1")).version, "1.0.0");
    await controller.checkNodeConfig("node1", "{}", "2.0.0");
    await assert.rejects(
      () => controller.checkNodeConfig("node1", "{}", "0.1.0"),
      /wrong version 0\.1\.0/,
    );
    await assert.rejects(() => controller.setNodeConfig("node1", "{}", "2.0.0"), /disk full/);
    await assert.rejects(
      () => controller.getNodeConfigStatus("node9"),
      /SM of node "node9" is not connected/,
    );

    assert.deepEqual(await session.getBlobsInfos([digest]), [
      `http://localhost:8094/blobs/sha256/${"b".repeat(64)}`,
    ]);
    await assert.rejects(
      () => session.getBlobsInfos(["sha256:" + "c".repeat(64)]),
      /is not available/,
    );
    await assert.rejects(() => session.getBlobsInfos(["../../etc/passwd"]), /invalid|digest/i);

    stall = true;
    await assert.rejects(
      () => controller.setNodeConfig("node1", "{}", "3.0.0"),
      /no reply within 300 ms/,
    );
  } finally {
    await session[Symbol.asyncDispose]();
  }
  while (controller.connectedNodes.length) await new Promise((r) => setTimeout(r, 20));
  assert.ok(events.includes("disconnected node1"));
  controller.close();
  await server.shutdown();
});

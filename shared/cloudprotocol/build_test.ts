import assert from "node:assert/strict";
import { AosError, toCloudErrorInfo } from "../core/errors.ts";
import * as b from "./build.ts";
import { itemIdentity, nodeIdentity } from "./common.ts";
import { sampleAlerts, sampleUnitStatus, small } from "./_test_samples.ts";

const { T0, T1, ITEM, SUBJECT, MAIN, CORR } = small;
const test = (name: string, fn: () => void) => Deno.test({ name, permissions: "none", fn });

/** Same keys, same order, same values. */
function assertExactJson(actual: unknown, expected: unknown): void {
  assert.equal(JSON.stringify(actual), JSON.stringify(expected));
}

test("build: envelope header is {version 7, systemId, createdAt µs UTC, txn}, binary UTF-8", () => {
  const env = b.buildEnvelope(
    { systemId: "unit-1", txn: "t-1", createdAt: new Date("2026-03-02T10:00:00.25+01:00") },
    b.buildAck(),
  );
  assertExactJson(env, {
    header: {
      version: 7,
      systemId: "unit-1",
      createdAt: "2026-03-02T09:00:00.250000Z",
      txn: "t-1",
    },
    data: { messageType: "ack" },
  });
  const bytes = b.encodeEnvelope(env);
  assert.ok(bytes instanceof Uint8Array);
  assert.equal(new TextDecoder().decode(bytes), JSON.stringify(env));
});

test("build: ack/nack; correlationId omitted when empty", () => {
  assertExactJson(b.buildAck({ correlationId: "" }), { messageType: "ack" });
  assertExactJson(b.buildAck({ correlationId: CORR }), { messageType: "ack", correlationId: CORR });
  assertExactJson(b.buildNack({ retryAfter: 500 }), { messageType: "nack", retryAfter: 500 });
});

test("build: unitStatus in the exact C++ form (order, omissions, errorInfo)", () => {
  const data = b.buildUnitStatus(sampleUnitStatus);
  const nodes = data.nodes as b.JsonObject[];
  // Keys of a full node in C++ order; runtimes/resources come after errorInfo.
  assert.deepEqual(Object.keys(nodes[0]!), [
    "identity",
    "nodeGroupSubject",
    "maxDmips",
    "physicalRam",
    "totalRam",
    "osInfo",
    "cpus",
    "attrs",
    "partitions",
    "state",
    "isConnected",
    "runtimes",
    "resources",
  ]);
  assertExactJson(nodes[0]!.identity, { codename: "main", title: "Main node" });
  assertExactJson((nodes[0]!.partitions as b.JsonObject[])[0], {
    name: "storages",
    path: "/var/aos/storages",
    types: ["storages"],
    totalSize: 1,
  });
  // A bare node: empty lists, attrs and absent optionals are not written.
  assertExactJson(nodes[1], {
    identity: { codename: "secondary-1" },
    nodeGroupSubject: { codename: "secondary-node" },
    maxDmips: 40000,
    totalRam: 2147483648,
    osInfo: { os: "linux" },
    state: "error",
    isConnected: false,
    errorInfo: { aosCode: 7, exitCode: 110, message: "timeout" },
  });
  assertExactJson(data.unitConfig, [
    { version: "2", state: "installed" },
    { version: "3", state: "failed", errorInfo: { aosCode: 7, exitCode: 110, message: "timeout" } },
  ]);
  assertExactJson((data.items as b.JsonObject[])[1], {
    item: { codename: "aos-sm", type: "component" },
    version: "9.1.1",
    state: "installed",
  });
  assertExactJson(data.instances, [{
    item: { id: ITEM.id, type: "service" },
    subject: SUBJECT,
    version: "1.1.0",
    instances: [
      {
        node: MAIN,
        runtime: { codename: "runc" },
        instance: 0,
        stateChecksum: small.CHECKSUM,
        state: "active",
      },
      {
        node: MAIN,
        runtime: { codename: "runc" },
        instance: 1,
        state: "failed",
        errorInfo: { aosCode: 7, exitCode: 110, message: "timeout" },
      },
    ],
  }]);
  assertExactJson(data.subjects, [{ codename: "local-subject" }]);
  assert.deepEqual(Object.keys(data), [
    "messageType",
    "isDeltaInfo",
    "unitConfig",
    "nodes",
    "items",
    "instances",
    "subjects",
  ]);
});

test("build: a delta unitStatus carries only its sections; an all-zero errorInfo is no error", () => {
  assertExactJson(
    b.buildUnitStatus({
      isDeltaInfo: true,
      unitConfig: [{ state: "absent", errorInfo: { aosCode: 0, exitCode: 0, message: "" } }],
    }),
    { messageType: "unitStatus", isDeltaInfo: true, unitConfig: [{ state: "absent" }] },
  );
});

test("build: groupInstances groups per (item, subject, version) in first-seen order", () => {
  const inst = (item: typeof ITEM, version: string, instance: number) => ({
    item,
    subject: SUBJECT,
    version,
    node: MAIN,
    runtime: { codename: "runc" },
    instance,
    state: "active" as const,
  });
  const other = { id: "other" };
  const groups = b.groupInstances([
    inst(ITEM, "1", 0),
    inst(other, "1", 0),
    inst(ITEM, "1", 1),
    inst(ITEM, "2", 2),
  ]);
  assert.deepEqual(
    groups.map((g) => [g.item.id, g.version, g.instances.map((i) => i.instance)]),
    [[ITEM.id, "1", [0, 1]], ["other", "1", [0]], [ITEM.id, "2", [2]]],
  );
  assert.ok(!("item" in groups[0]!.instances[0]!));
});

test("build: alerts in the C++ form, one per kind", () => {
  const items = b.buildAlerts(sampleAlerts).items as b.JsonObject[];
  const t0 = "2026-03-02T10:00:00.123000Z";
  assertExactJson(items[0], {
    timestamp: t0,
    tag: "systemAlert",
    node: MAIN,
    message: "kernel: eth0 link down",
  });
  assertExactJson(items[1], {
    timestamp: t0,
    tag: "coreAlert",
    node: MAIN,
    coreComponent: "SM",
    message: "restarted",
  });
  assertExactJson(items[2], {
    timestamp: t0,
    tag: "systemQuotaAlert",
    node: MAIN,
    parameter: "cpu",
    value: 93,
  });
  assertExactJson(items[3], {
    timestamp: t0,
    tag: "instanceQuotaAlert",
    item: ITEM,
    subject: SUBJECT,
    instance: 0,
    parameter: "ram",
    value: 268435456,
  });
  assertExactJson(items[4], {
    timestamp: t0,
    tag: "resourceAllocateAlert",
    item: ITEM,
    subject: SUBJECT,
    instance: 0,
    node: MAIN,
    deviceId: "camera0",
    message: "device busy",
  });
  assertExactJson(items[5], {
    timestamp: t0,
    tag: "updateItemInstanceAlert",
    item: ITEM,
    subject: SUBJECT,
    instance: 1,
    version: "1.2.0",
    message: "exit code 1",
  });
  assertExactJson(items[6], {
    timestamp: "2026-03-02T10:00:01.000000Z",
    tag: "downloadProgressAlert",
    digest: small.DIGEST,
    url: "https://files.example/blobs/572f",
    downloadedBytes: 524288,
    totalBytes: 1048576,
    state: "interrupted",
    reason: "connection reset",
    errorInfo: { aosCode: 7, exitCode: 110, message: "timeout" },
  });
  // url is always written (empty when unknown), reason only when given.
  const started = b.wireAlert({
    tag: "downloadProgressAlert",
    timestamp: T1,
    digest: "d",
    url: "",
    downloadedBytes: 0,
    totalBytes: 10,
    state: "started",
  });
  assert.deepEqual(Object.keys(started), [
    "timestamp",
    "tag",
    "digest",
    "url",
    "downloadedBytes",
    "totalBytes",
    "state",
  ]);
});

test("build: monitoring writes download/upload always, partitions and nodeStates when present", () => {
  const data = b.buildMonitoringData({
    nodes: [{
      node: MAIN,
      nodeStates: [],
      items: [{ timestamp: T0, ram: 1, cpu: 2, download: 0, upload: 0, partitions: [] }],
    }],
    instances: [],
  });
  assertExactJson(data, {
    messageType: "monitoringData",
    nodes: [{
      node: MAIN,
      items: [{
        timestamp: "2026-03-02T10:00:00.123000Z",
        ram: 1,
        cpu: 2,
        download: 0,
        upload: 0,
      }],
    }],
  });
  const withState = b.buildMonitoringData({
    nodes: [{
      node: MAIN,
      nodeStates: [{ timestamp: T0, isConnected: false, state: "paused" }],
      items: [],
    }],
    instances: [],
  });
  assertExactJson((withState.nodes as b.JsonObject[])[0]!.nodeStates, [{
    timestamp: "2026-03-02T10:00:00.123000Z",
    state: "paused",
    isConnected: false,
    connected: false,
  }]);
});

test("build: pushLog, state and provisioning messages in the C++ form", () => {
  assertExactJson(
    b.buildPushLog({
      correlationId: CORR,
      node: MAIN,
      part: 1,
      partsCount: 1,
      content: "aGk=",
      status: "ok",
    }),
    {
      messageType: "pushLog",
      correlationId: CORR,
      node: MAIN,
      part: 1,
      partsCount: 1,
      content: "aGk=",
      status: "ok",
    },
  );
  assertExactJson(
    b.buildNewState({ item: ITEM, subject: SUBJECT, instance: 2, stateChecksum: "ab", state: "" }),
    {
      messageType: "newState",
      item: ITEM,
      subject: SUBJECT,
      instance: 2,
      stateChecksum: "ab",
      state: "",
    },
  );
  assertExactJson(
    b.buildStartProvisioningResponse({
      correlationId: CORR,
      node: MAIN,
      errorInfo: toCloudErrorInfo(new AosError("wrongState", "already provisioned")),
      csrs: [],
    }),
    {
      messageType: "startProvisioningResponse",
      correlationId: CORR,
      node: MAIN,
      errorInfo: { aosCode: 9, exitCode: 0, message: "already provisioned" },
      csrs: [],
    },
  );
  assertExactJson(
    b.buildInstallUnitCertificatesConfirmation({
      certificates: [{ type: "iam", node: MAIN, serial: "0a" }],
    }),
    {
      messageType: "installUnitCertificatesConfirmation",
      certificates: [{ type: "iam", node: MAIN, serial: "0a" }],
    },
  );
});

test("build: identity helpers follow AosCore conventions", () => {
  assert.deepEqual(nodeIdentity("main"), { codename: "main" });
  assert.deepEqual(nodeIdentity("main", ""), { codename: "main", title: "" });
  assert.deepEqual(itemIdentity("u-1", { type: "service" }), { id: "u-1", type: "service" });
  assert.deepEqual(itemIdentity("aos-sm", { preinstalled: true }), { codename: "aos-sm" });
  assertExactJson(
    b.wireIdentity({ urn: "u", title: "t", type: "service", codename: "c", id: "i" }),
    { id: "i", codename: "c", type: "service", title: "t", urn: "u" },
  );
});

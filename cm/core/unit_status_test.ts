import assert from "node:assert/strict";
import {
  buildEnvelope,
  encodeEnvelope,
  type FlatInstanceStatus,
  type ItemStatus,
  parseCloudMessage,
  type UnitStatus,
  type WireData,
} from "@aos/shared/cloudprotocol";
import { AosError } from "@aos/shared/errors";
import { HAVE_SPEC, loadValidator, sampleNode } from "../../shared/cloudprotocol/_test_samples.ts";
import { FakeTimers } from "./_test_fakes.ts";
import type { LauncherInstanceStatus } from "./launcher.ts";
import {
  instanceStatusToCloud,
  itemStatusToCloud,
  UNIT_STATUS_SEND_TIMEOUT_MS,
  UnitStatusHandler,
} from "./unit_status.ts";

const SVC = "6513270e-269e-4d37-b2a7-4de452e6b438";
const OLD = "7b0d549b-6f03-475a-9600-a35a099950d8";
const SUBJ = "36f675cc-81e7-4ef5-a8e2-5d940ed90475";
const HEADER = {
  systemId: "2f1c0f6e4b8a4d2e9c3a7b5d1e0f9a8c",
  txn: "6b0d549b-6f03-475a-9600-a35a099950d8",
  createdAt: new Date("2026-03-02T10:00:00Z"),
};

function inst(
  instance: number,
  state: LauncherInstanceStatus["state"],
  extra: Partial<LauncherInstanceStatus> = {},
): LauncherInstanceStatus {
  return {
    itemId: SVC,
    subjectId: SUBJ,
    instance,
    type: "service",
    preinstalled: false,
    version: "1.0.0",
    nodeId: "main",
    runtimeId: "runc",
    state,
    ...extra,
  };
}

function setup() {
  const sent: WireData[] = [];
  const timers = new FakeTimers();
  const data = {
    items: [
      itemStatusToCloud({ id: SVC, type: "service", version: "1.0.0", state: "installed" }),
      itemStatusToCloud({ id: OLD, type: "service", version: "0.9.0", state: "removed" }),
      itemStatusToCloud({ id: OLD, type: "service", version: "2.0.0", state: "failed" }),
    ] as ItemStatus[],
    instances: [
      inst(0, "active"),
      inst(1, "failed", { error: new AosError("timeout", "not active in time") }),
      inst(2, "failed"),
      inst(0, "active", {
        itemId: "rootfs",
        subjectId: "node",
        type: "component",
        preinstalled: true,
        version: "5.0",
      }),
    ].map(instanceStatusToCloud) as FlatInstanceStatus[],
    unitConfig: [{ state: "installed" as const, version: "1.0.0" }],
    subjects: [{ codename: "unit-subject" }],
  };
  const handler = new UnitStatusHandler({
    providers: {
      unitConfig: () => data.unitConfig,
      nodes: () => [sampleNode],
      items: () => data.items,
      instances: () => data.instances,
      subjects: () => data.subjects,
    },
    send: (m) => {
      sent.push(m);
    },
    timers,
  });
  return { sent, timers, handler, data };
}

let validator: ReturnType<typeof loadValidator> | undefined;

/** Parses what we built as the cloud would, and checks it against the v7 schema. */
async function check(message: WireData): Promise<UnitStatus> {
  const bytes = encodeEnvelope(buildEnvelope(HEADER, message));
  const parsed = parseCloudMessage(bytes).message;
  assert.equal(parsed.messageType, "unitStatus");
  if (HAVE_SPEC) {
    const validate = await (validator ??= loadValidator());
    assert.deepEqual(validate(JSON.parse(new TextDecoder().decode(bytes))), []);
  }
  return parsed as UnitStatus;
}

Deno.test({
  name: "unit status: the full status on connect has every section, grouped, with errors",
  permissions: { read: true },
  async fn() {
    const { sent, handler } = setup();
    handler.sendFullStatus();
    assert.equal(sent.length, 0, "nothing is sent while disconnected");
    handler.setCloudConnected(true);
    assert.equal(sent.length, 1);
    const status = await check(sent[0]!);
    assert.equal(status.isDeltaInfo, false);
    assert.deepEqual(status.unitConfig, [{ state: "installed", version: "1.0.0" }]);
    assert.equal(status.nodes?.length, 1);
    assert.deepEqual(status.subjects, [{ codename: "unit-subject" }]);
    // Removed items are left out; a failed one carries an error; the preinstalled component
    // gets a synthetic installed item.
    assert.deepEqual(
      status.items?.map((i) => [i.item.id ?? i.item.codename, i.version, i.state]),
      [[SVC, "1.0.0", "installed"], [OLD, "2.0.0", "failed"], ["rootfs", "5.0", "installed"]],
    );
    assert.equal(status.items?.[1]?.errorInfo?.aosCode, 1);
    const [group, pre] = status.instances ?? [];
    assert.deepEqual(group?.item, { id: SVC });
    assert.deepEqual(group?.instances.map((i) => [i.instance, i.state]), [
      [0, "active"],
      [1, "failed"],
      [2, "failed"],
    ]);
    assert.equal(group?.instances[0]?.errorInfo, undefined);
    assert.equal(group?.instances[1]?.errorInfo?.aosCode, 7);
    assert.match(group?.instances[1]?.errorInfo?.message ?? "", /not active in time/);
    assert.ok((group?.instances[2]?.errorInfo?.aosCode ?? 0) > 0);
    assert.deepEqual(pre?.item, { codename: "rootfs" });
    handler[Symbol.dispose]();
  },
});

Deno.test({
  name: "unit status: deltas are merged and sent one debounce after the last change",
  permissions: { read: true },
  async fn() {
    const { sent, timers, handler } = setup();
    handler.setCloudConnected(true);
    sent.length = 0;
    const item = (state: "downloading" | "pending") =>
      itemStatusToCloud({ id: SVC, type: "service", version: "2.0.0", state });
    handler.itemsChanged([item("downloading")]);
    await timers.advance(5_000);
    handler.itemsChanged([item("pending")]);
    handler.instancesChanged([instanceStatusToCloud(inst(0, "activating"))]);
    handler.instancesChanged([instanceStatusToCloud(inst(1, "activating"))]);
    handler.instancesChanged([instanceStatusToCloud(inst(0, "active"))]);
    await timers.advance(UNIT_STATUS_SEND_TIMEOUT_MS - 1);
    assert.equal(sent.length, 0);
    await timers.advance(1);
    assert.equal(sent.length, 1);
    const delta = await check(sent[0]!);
    assert.equal(delta.isDeltaInfo, true);
    assert.deepEqual(delta.items?.map((i) => i.state), ["pending"]);
    assert.deepEqual(delta.instances?.[0]?.instances.map((i) => [i.instance, i.state]), [
      [0, "active"],
      [1, "activating"],
    ]);
    assert.equal(delta.nodes, undefined);
    assert.equal(delta.subjects, undefined);
    assert.equal(delta.unitConfig, undefined);
    assert.deepEqual(Object.keys(sent[0]!).sort(), [
      "instances",
      "isDeltaInfo",
      "items",
      "messageType",
    ]);

    // Whole-list sections: unit config and subjects.
    handler.unitConfigChanged();
    handler.subjectsChanged();
    handler.nodesChanged([sampleNode]);
    await timers.advance(UNIT_STATUS_SEND_TIMEOUT_MS);
    const second = await check(sent[1]!);
    assert.deepEqual(second.unitConfig, [{ state: "installed", version: "1.0.0" }]);
    assert.deepEqual(second.subjects, [{ codename: "unit-subject" }]);
    assert.equal(second.nodes?.length, 1);
    assert.equal(second.items, undefined);
    assert.equal(timers.pending, 0);
    handler[Symbol.dispose]();
  },
});

Deno.test({
  name: "unit status: changes are dropped while disconnected and cleared by a full status",
  permissions: "none",
  async fn() {
    const { sent, timers, handler } = setup();
    handler.itemsChanged([
      itemStatusToCloud({ id: SVC, type: "service", version: "1.0.0", state: "pending" }),
    ]);
    await timers.advance(UNIT_STATUS_SEND_TIMEOUT_MS * 2);
    assert.equal(sent.length, 0);
    assert.equal(timers.pending, 0);

    handler.setCloudConnected(true);
    handler.instancesChanged([instanceStatusToCloud(inst(0, "failed"))]);
    assert.equal(timers.pending, 1);
    handler.sendFullStatus();
    assert.equal(timers.pending, 0);
    await timers.advance(UNIT_STATUS_SEND_TIMEOUT_MS * 2);
    assert.deepEqual(sent.map((m) => m.isDeltaInfo), [false, false]);

    // A disconnect drops a pending delta.
    handler.instancesChanged([instanceStatusToCloud(inst(0, "active"))]);
    handler.setCloudConnected(false);
    await timers.advance(UNIT_STATUS_SEND_TIMEOUT_MS * 2);
    assert.equal(sent.length, 2);
    handler[Symbol.dispose]();
  },
});

Deno.test({
  name: "unit status: a failing send is logged, not thrown",
  permissions: "none",
  async fn() {
    const handler = new UnitStatusHandler({
      providers: {
        unitConfig: () => [],
        nodes: () => [],
        items: () => [],
        instances: () => [],
        subjects: () => [],
      },
      send: () => Promise.reject(new Error("link down")),
      timers: new FakeTimers(),
    });
    handler.setCloudConnected(true);
    await new Promise((r) => setTimeout(r, 0));
    handler[Symbol.dispose]();
  },
});

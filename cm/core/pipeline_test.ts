/**
 * The four core modules wired as the composition root wires them (fakes only at the ports):
 * a desired status runs through the pipeline and the cloud sees deltas, then a full status.
 */
import assert from "node:assert/strict";
import {
  buildEnvelope,
  encodeEnvelope,
  parseCloudMessage,
  type UnitStatus,
  type WireData,
} from "@aos/shared/cloudprotocol";
import { sampleNode } from "../../shared/cloudprotocol/_test_samples.ts";
import type { BlobTrust, DesiredItem, ItemStatus } from "../image/types.ts";
import {
  FakeSm,
  FakeTimers,
  MemoryStore,
  testManifest,
  testNode,
  wireStatus,
} from "./_test_fakes.ts";
import { Launcher, type LauncherState } from "./launcher.ts";
import { UnitConfigManager } from "./unit_config.ts";
import {
  instanceStatusToCloud,
  itemStatusToCloud,
  UNIT_STATUS_SEND_TIMEOUT_MS,
  UnitStatusHandler,
} from "./unit_status.ts";
import { type DesiredStatusBody, UpdateManager } from "./update_manager.ts";

const SVC = "6513270e-269e-4d37-b2a7-4de452e6b438";
const SUBJ = "36f675cc-81e7-4ef5-a8e2-5d940ed90475";

class Images {
  readonly rows = new Map<string, ItemStatus>();
  readonly listeners = new Set<(s: ItemStatus) => void>();
  #set(s: ItemStatus) {
    this.rows.set(JSON.stringify([s.id, s.version]), s);
    for (const l of this.listeners) l({ ...s });
  }
  downloadItems(items: readonly DesiredItem[], _t: BlobTrust): Promise<ItemStatus[]> {
    for (const i of items) this.#set({ ...i, state: "downloading" });
    for (const i of items) this.#set({ ...i, state: "pending" });
    return Promise.resolve(this.statuses());
  }
  installItems(items: readonly DesiredItem[]): Promise<ItemStatus[]> {
    for (const i of items) this.#set({ ...i, state: "installed" });
    return Promise.resolve(this.statuses());
  }
  cancel() {}
  statuses() {
    return [...this.rows.values()].map((r) => ({ ...r }));
  }
}

Deno.test({
  name: "pipeline: desired status → download, unit config, launch, finalize; deltas then full",
  permissions: { read: true },
  async fn() {
    const timers = new FakeTimers();
    const sm = new FakeSm();
    const sent: WireData[] = [];
    const images = new Images();
    const nodes = [testNode("main", { nodeType: "main-type" })];
    const nodeConfigs = new Map<string, string>();
    const unitConfig = new UnitConfigManager({
      store: { load: () => undefined, save: () => {} },
      sm: {
        getNodeConfigStatus: (n) =>
          Promise.resolve({ state: "installed", version: nodeConfigs.get(n) ?? "0.0.0" }),
        checkNodeConfig: () => Promise.resolve(),
        setNodeConfig: (n, _t, v) => (nodeConfigs.set(n, v), Promise.resolve()),
      },
      connectedNodes: () => nodes.map((n) => ({ nodeId: n.nodeId, nodeType: n.nodeType! })),
    });
    await unitConfig.init();
    const launcher = new Launcher({
      nodes: {
        nodes: () =>
          nodes.map((n) => ({
            ...n,
            config: unitConfig.placementConfig({ nodeId: n.nodeId, nodeType: n.nodeType! }),
          })),
      },
      manifests: { manifests: () => Promise.resolve([testManifest({ stateLimit: 1 })]) },
      sm,
      store: new MemoryStore<LauncherState>(),
      timers,
    });
    await launcher.init();
    using status = new UnitStatusHandler({
      providers: {
        unitConfig: () => unitConfig.status(),
        nodes: () => [sampleNode],
        items: () => images.statuses().map(itemStatusToCloud),
        instances: () => launcher.statuses().map(instanceStatusToCloud),
        subjects: () => [],
      },
      send: (m) => {
        sent.push(m);
      },
      timers,
    });
    images.listeners.add((s) => status.itemsChanged([itemStatusToCloud(s)]));
    launcher.onStatusChange((c) => status.instancesChanged(c.map(instanceStatusToCloud)));
    unitConfig.onStatusChange(() => status.unitConfigChanged());
    const manager = new UpdateManager({
      store: { load: () => undefined, save: () => {} },
      images,
      launcher,
      unitConfig,
      nodeControl: { pauseNode: () => Promise.resolve(), resumeNode: () => Promise.resolve() },
      timers,
    });
    manager.onFinished(() => status.sendFullStatus());
    await manager.init();
    status.setCloudConnected(true);

    const desired: DesiredStatusBody = {
      nodes: [],
      unitConfig: {
        version: "1.0.0",
        formatVersion: "1",
        nodes: [{ nodeGroupSubject: { codename: "main-type" }, priority: 1, labels: ["fast"] }],
      },
      items: [{
        item: { id: SVC, type: "service" },
        version: "1.0.0",
        owner: { id: "owner" },
        indexDigest: "sha256:" + "d".repeat(64),
      }],
      instances: [{
        item: { id: SVC },
        subject: { id: SUBJ },
        priority: 5,
        numInstances: 1,
        labels: ["fast"],
      }],
      subjects: [],
      certificates: [],
      certificateChains: [],
    };
    await manager.handleDesiredStatus(desired);
    await manager.idle();
    assert.equal(nodeConfigs.get("main"), "1.0.0");
    assert.equal(sm.calls[0]?.update.startInstances[0]?.statePath, `${SVC}/${SUBJ}/0/state.dat`);

    const parse = (m: WireData) =>
      parseCloudMessage(
        encodeEnvelope(buildEnvelope({ systemId: "s", txn: "t", createdAt: new Date(0) }, m)),
      ).message as UnitStatus;
    // Connect → full; the run's end → full (it cleared the pending delta).
    assert.deepEqual(sent.map((m) => m.isDeltaInfo), [false, false]);
    const full = parse(sent[1]!);
    assert.deepEqual(full.unitConfig, [{ state: "installed", version: "1.0.0" }]);
    assert.deepEqual(full.items?.map((i) => i.state), ["installed"]);
    assert.deepEqual(full.instances?.[0]?.instances.map((i) => [i.node.codename, i.state]), [
      ["main", "active"],
    ]);
    await timers.advance(UNIT_STATUS_SEND_TIMEOUT_MS);
    assert.equal(sent.length, 2);

    // A later change on the node goes out as one delta.
    launcher.updateInstancesStatus("main", [
      wireStatus(SVC, SUBJ, 0, "failed", {
        runtimeId: "main-runc",
        error: { aosCode: 2, exitCode: 1, message: "crashed" },
      }),
    ]);
    await timers.advance(UNIT_STATUS_SEND_TIMEOUT_MS);
    assert.equal(sent.length, 3);
    const delta = parse(sent[2]!);
    assert.equal(delta.isDeltaInfo, true);
    assert.deepEqual(delta.instances?.[0]?.instances[0]?.errorInfo, {
      aosCode: 2,
      exitCode: 1,
      message: "crashed",
    });

    await manager[Symbol.asyncDispose]();
    await launcher[Symbol.asyncDispose]();
  },
});

import assert from "node:assert/strict";
import type { ItemStatus, NodeInfo } from "@aos/shared/cloudprotocol";
import { emptyUnitStatus, mergeUnitStatus, serviceProgress } from "./unit_state.ts";

const node = (codename: string, state: NodeInfo["state"]): NodeInfo => ({
  identity: { codename },
  nodeGroupSubject: { codename: "main" },
  maxDmips: 1,
  totalRam: 1,
  osInfo: { os: "linux", features: [] },
  cpus: [],
  attrs: {},
  partitions: [],
  runtimes: [],
  resources: [],
  state,
  isConnected: true,
});
const item = (version: string, state: ItemStatus["state"]): ItemStatus => ({
  item: { id: "svc", type: "service" },
  version,
  state,
});
const group = (version: string, states: ("active" | "failed" | "activating")[]) => ({
  item: { id: "svc" },
  subject: { id: "subj" },
  version,
  instances: states.map((state, instance) => ({
    node: { codename: "n1" },
    runtime: { codename: "runc" },
    instance,
    state,
    ...(state === "failed" ? { errorInfo: { aosCode: 1, exitCode: 0, message: "boom" } } : {}),
  })),
});

Deno.test({
  name: "unit status: full replaces, deltas merge by key, progress per service",
  permissions: "none",
  fn() {
    let s = mergeUnitStatus(emptyUnitStatus(), {
      isDeltaInfo: false,
      nodes: [node("n1", "provisioned"), node("n2", "provisioned")],
      items: [item("1.0", "downloading")],
      instances: [],
      subjects: [{ codename: "local" }],
    });
    assert.equal(serviceProgress(s, "svc", "1.0", 2).itemState, "downloading");

    s = mergeUnitStatus(s, {
      isDeltaInfo: true,
      nodes: [node("n2", "paused")],
      items: [item("1.0", "installed")],
      instances: [group("1.0", ["active", "activating"])],
    });
    assert.deepEqual(s.nodes.map((n) => n.state), ["provisioned", "paused"]);
    assert.deepEqual(s.subjects, [{ codename: "local" }], "absent section unchanged");
    let p = serviceProgress(s, "svc", "1.0", 2);
    assert.deepEqual(p.instances, { active: 1, activating: 1 });
    assert.equal(p.done, false);

    s = mergeUnitStatus(s, { isDeltaInfo: true, instances: [group("1.0", ["active", "active"])] });
    p = serviceProgress(s, "svc", "1.0", 2);
    assert.equal(p.done, true);
    assert.equal(p.failed, false);

    s = mergeUnitStatus(s, { isDeltaInfo: true, instances: [group("1.0", ["active", "failed"])] });
    p = serviceProgress(s, "svc", "1.0", 2);
    assert.equal(p.failed, true);
    assert.deepEqual(p.instanceErrors, ["boom"]);

    s = mergeUnitStatus(s, { isDeltaInfo: true, items: [item("1.0", "removed")] });
    assert.equal(serviceProgress(s, "svc", "1.0", 2).itemState, "absent");

    s = mergeUnitStatus(s, { isDeltaInfo: false });
    assert.deepEqual(s, emptyUnitStatus());
  },
});

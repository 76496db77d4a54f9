import assert from "node:assert/strict";
import type { Alert } from "@aos/shared/cloudprotocol";
import type { DevcloudStatus } from "./cloud.ts";
import { safeJson } from "./dashboard.ts";
import { buildDashboardState, describeAlert, MonitoringHistory } from "./dashboard_state.ts";
import { emptyUnitStatus } from "./unit_state.ts";

const sample = (t: number, cpu = 1) => ({
  timestamp: new Date(t),
  ram: 100,
  cpu,
  download: 0,
  upload: 0,
  partitions: [],
});

Deno.test({
  name: "dashboard state: monitoring history keeps the last points per node, in time order",
  permissions: "none",
  fn: () => {
    const h = new MonitoringHistory({ maxPoints: 3, maxSeries: 2 });
    h.add("u", {
      nodes: [{ node: { codename: "a" }, nodeStates: [], items: [sample(2), sample(1)] }],
    });
    // A resend repeats samples: ignored; newer ones push the oldest out.
    h.add("u", {
      nodes: [{
        node: { codename: "a" },
        nodeStates: [],
        items: [sample(2), sample(3), sample(4, 7)],
      }],
    });
    assert.deepEqual(h.points("u", "a").map((p) => [p.t, p.cpu]), [[2, 1], [3, 1], [4, 7]]);
    h.add("u", { nodes: [{ node: { codename: "b" }, nodeStates: [], items: [sample(1)] }] });
    h.add("v", { nodes: [{ node: { codename: "a" }, nodeStates: [], items: [sample(1)] }] });
    assert.equal(h.size, 2, "the least recently updated node went");
    assert.deepEqual(h.points("u", "a"), []);
    assert.equal(h.points("v", "a").length, 1);
  },
});

Deno.test({
  name: "dashboard state: groups instances, newest alerts first, bounded, long strings cut",
  permissions: "none",
  fn: () => {
    const status: DevcloudStatus = {
      services: [{
        name: "hello",
        id: "item-1",
        version: "1.0.0",
        indexDigest: "sha256:00",
        instances: 2,
        deployedAt: "2024-01-01T00:00:00.000Z",
        units: [{
          systemId: "u1",
          itemState: "installed",
          instances: { active: 1, failed: 1 },
          instanceErrors: ["boom"],
          done: false,
          failed: true,
        }],
      }],
      units: [{
        systemId: "u1",
        connected: true,
        lastSeen: "2024-01-01T00:00:00.000Z",
        alerts: [],
        status: {
          ...emptyUnitStatus(),
          instances: [1, 0].map((i) => ({
            item: { id: "item-1" },
            subject: { id: "s" },
            version: "1.0.0",
            node: { codename: "main" },
            runtime: { codename: "runc" },
            instance: i,
            state: i === 1 ? "failed" : "active",
            ...(i === 1 ? { errorInfo: { aosCode: 1, exitCode: 2, message: "x".repeat(50) } } : {}),
          })),
        },
      }],
    };
    const alerts: (Alert & { systemId: string })[] = [1, 2, 3].map((n) => ({
      systemId: "u1",
      tag: "systemAlert",
      timestamp: new Date(n * 1000),
      node: { codename: "main" },
      message: `alert ${n}`,
    }));
    const s = buildDashboardState(
      { status, alerts, history: new MonitoringHistory(), now: new Date(0) },
      { maxAlerts: 2, maxText: 10 },
    );
    const [g] = s.units[0]!.instanceGroups;
    assert.equal(g?.service, "hello");
    assert.deepEqual(g?.instances.map((i) => [i.instance, i.state]), [[0, "active"], [
      1,
      "failed",
    ]]);
    assert.equal(g?.instances[1]?.error, `${"x".repeat(10)}…`);
    assert.deepEqual(s.alerts.map((a) => a.message), ["alert 3", "alert 2"]);
    assert.deepEqual(s.services[0]?.units[0]?.active, 1);
  },
});

Deno.test({
  name: "dashboard state: alerts of every kind get a source and a message; JSON is HTML-inert",
  permissions: "none",
  fn: () => {
    const t = new Date(0);
    assert.deepEqual(
      describeAlert({
        tag: "instanceQuotaAlert",
        timestamp: t,
        item: { id: "i" },
        subject: { id: "s" },
        instance: 2,
        parameter: "ram",
        value: 9,
      }),
      { source: "i/s#2", message: "quota ram = 9" },
    );
    assert.match(
      describeAlert({
        tag: "downloadProgressAlert",
        timestamp: t,
        digest: "sha256:ab",
        url: "",
        downloadedBytes: 1,
        totalBytes: 2,
        state: "interrupted",
        reason: "network",
      }).message,
      /download interrupted 1\/2 bytes: network/,
    );
    const text = safeJson({ a: "</script><b>&" });
    assert.doesNotMatch(text, /[<>&]/);
    assert.deepEqual(JSON.parse(text), { a: "</script><b>&" });
  },
});

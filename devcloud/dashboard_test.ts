/**
 * The dashboard against a real devcloud fed by a fake unit through CM's real cloud link:
 * the page and its assets, `/api/state` with nodes, items, grouped instances, alerts and
 * bounded monitoring, escaping of unit strings, and the live event stream.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildAlerts, buildMonitoringData, buildUnitStatus } from "@aos/shared/cloudprotocol";
import { startDevcloud } from "./cloud.ts";
import { startDashboard } from "./dashboard.ts";
import type { DashboardState } from "./dashboard_state.ts";
import { connectFakeUnit, fakeInstances, fakeNode, until } from "./dashboard_fixture.ts";

const SYSTEM_ID = "dash-unit-1";
const EVIL_TITLE = `<script>alert("title")</script>`;
const EVIL_ERROR = `<img src=x onerror=alert(1)>`;

async function devcloudIn(dir: string) {
  return await startDevcloud({
    workingDir: join(dir, "devcloud"),
    cloudListen: "localhost:0",
    blobsListen: "localhost:0",
    ackTimeoutMs: 2000,
  });
}

/** Reads `event: state` messages of an SSE response. */
function stateEvents(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(): Promise<DashboardState> {
      while (true) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = block.split("\n");
          if (!lines.includes("event: state")) continue;
          const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join(
            "\n",
          );
          return JSON.parse(data);
        }
        const { value, done } = await reader.read();
        if (done) throw new Error("event stream ended");
        buffer += value;
      }
    },
    /** Next state that satisfies `cond`. */
    async until(cond: (s: DashboardState) => boolean): Promise<DashboardState> {
      while (true) {
        const s = await this.next();
        if (cond(s)) return s;
      }
    },
    cancel: () => reader.cancel(),
  };
}

Deno.test("dashboard: page, assets and an empty state with no unit connected", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_dash_" });
  try {
    await using cloud = await devcloudIn(dir);
    await using dash = await startDashboard({ devcloud: cloud, hostname: "localhost", port: 0 });
    const page = await fetch(`${dash.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    const html = await page.text();
    assert.match(html, /<script src="\/app.js" defer><\/script>/);
    assert.doesNotMatch(html, /https?:\/\/(?!127)/, "nothing from elsewhere");
    for (const [path, type] of [["/app.js", /javascript/], ["/style.css", /text\/css/]] as const) {
      const r = await fetch(`${dash.url}${path}`);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get("content-type") ?? "", type);
      const body = await r.text();
      assert.ok(body.length > 100, path);
      if (path === "/app.js") {
        assert.doesNotMatch(body, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
      }
    }
    const state: DashboardState = await (await fetch(`${dash.url}/api/state`)).json();
    assert.deepEqual(
      { units: state.units, services: state.services, alerts: state.alerts },
      { units: [], services: [], alerts: [] },
    );
    const missing = await fetch(`${dash.url}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${dash.url}/api/state`, { method: "POST", body: "{}" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dashboard: a unit's nodes, items, two instances, alerts and monitoring; escaped; pushed live", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_dash_" });
  try {
    await using cloud = await devcloudIn(dir);
    await using dash = await startDashboard({
      devcloud: cloud,
      hostname: "127.0.0.1",
      port: 0,
      maxPoints: 5,
      pushDelayMs: 20,
    });
    const events = stateEvents(await fetch(`${dash.url}/api/events`));
    try {
      const first = await events.next();
      assert.deepEqual(first.units, [], "the stream starts with the current state");
      assert.equal(dash.clients, 1);

      const itemId = crypto.randomUUID();
      const subjectId = crypto.randomUUID();
      await using link = await connectFakeUnit(cloud, {
        systemId: SYSTEM_ID,
        status: () => ({
          nodes: [fakeNode("main", EVIL_TITLE)],
          items: [{ item: { id: itemId, type: "service" }, version: "1.0.0", state: "installed" }],
          instances: [fakeInstances(itemId, subjectId, "1.0.0", "main", 2, 1, EVIL_ERROR)],
          unitConfig: [],
          subjects: [],
        }),
      });
      const live = await events.until((s) => s.units[0]?.instanceGroups.length === 1);
      const [unit] = live.units;
      assert.equal(unit?.systemId, SYSTEM_ID);
      assert.equal(unit?.connected, true);
      assert.deepEqual(unit?.nodes.map((n) => [n.id, n.title, n.state, n.connected]), [
        ["main", EVIL_TITLE, "provisioned", true],
      ]);
      assert.deepEqual(unit?.nodes[0]?.runtimes, [{ id: "runc", type: "runc", maxInstances: 0 }]);
      assert.deepEqual(unit?.items, [{
        id: itemId,
        type: "service",
        version: "1.0.0",
        state: "installed",
      }]);
      const group = unit?.instanceGroups[0];
      assert.equal(group?.item, itemId);
      assert.equal(group?.subject, subjectId);
      assert.equal(group?.version, "1.0.0");
      assert.deepEqual(group?.instances, [
        { instance: 0, node: "main", runtime: "runc", state: "failed", error: EVIL_ERROR },
        { instance: 1, node: "main", runtime: "runc", state: "active" },
      ]);

      // Monitoring: 4 messages of 2 samples; only the last 5 points stay.
      const t0 = Date.now() - 60_000;
      for (let m = 0; m < 4; m++) {
        link.send(buildMonitoringData({
          nodes: [{
            node: { codename: "main" },
            nodeStates: [],
            items: [0, 1].map((k) => ({
              timestamp: new Date(t0 + (2 * m + k) * 1000),
              ram: (2 * m + k) << 20,
              cpu: 10 * (2 * m + k),
              download: 0,
              upload: 0,
              partitions: [],
            })),
          }],
          instances: [],
        }));
      }
      const monitored = await events.until((s) => s.units[0]?.nodes[0]?.history.at(-1)?.cpu === 70);
      const node = monitored.units[0]!.nodes[0]!;
      assert.deepEqual(node.history.map((p) => p.cpu), [30, 40, 50, 60, 70]);
      assert.equal(node.cpu, 70);
      assert.equal(node.ram, 7 << 20);

      link.send(buildAlerts({
        items: [1, 2].map((n) => ({
          tag: "systemAlert" as const,
          timestamp: new Date(t0 + n * 1000),
          node: { codename: "main" },
          message: n === 2 ? `<script>alert(2)</script>` : `first`,
        })),
      }));
      const alerted = await events.until((s) => s.alerts.length === 2);
      assert.deepEqual(alerted.alerts.map((a) => [a.kind, a.source, a.message]), [
        ["systemAlert", "main", `<script>alert(2)</script>`],
        ["systemAlert", "main", "first"],
      ]);
      assert.equal(alerted.alerts[0]?.time, new Date(t0 + 2000).toISOString());

      // The JSON carries unit strings with <, > and & escaped, so it is inert inside HTML.
      const raw = await (await fetch(`${dash.url}/api/state`)).text();
      assert.doesNotMatch(raw, /<script|<img/i);
      assert.match(raw, /\\u003cscript\\u003ealert/);
      const parsed: DashboardState = JSON.parse(raw);
      assert.equal(parsed.units[0]?.nodes[0]?.title, EVIL_TITLE);
      assert.equal(parsed.units[0]?.instanceGroups[0]?.instances.length, 2);

      // A delta changes one instance; the stream carries it.
      link.send(buildUnitStatus({
        isDeltaInfo: true,
        instances: [fakeInstances(itemId, subjectId, "1.0.0", "main", 1)],
      }));
      const healed = await events.until((s) =>
        s.units[0]?.instanceGroups[0]?.instances[0]?.state === "active"
      );
      assert.equal(healed.units[0]?.instanceGroups[0]?.instances.length, 2);

      await link.close();
      const offline = await events.until((s) => s.units[0]?.connected === false);
      assert.equal(offline.units[0]?.nodes.length, 1, "a unit gone offline stays listed");
    } finally {
      await events.cancel();
    }
    await until("stream closed at the server", () => dash.clients === 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dashboard: close ends open event streams; the history starts from saved monitoring", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_dash_" });
  try {
    {
      await using cloud = await devcloudIn(dir);
      await using link = await connectFakeUnit(cloud, {
        systemId: SYSTEM_ID,
        status: () => ({ nodes: [fakeNode("main")], items: [], instances: [] }),
      });
      link.send(buildMonitoringData({
        nodes: [{
          node: { codename: "main" },
          nodeStates: [],
          items: [{
            timestamp: new Date(),
            ram: 1,
            cpu: 42,
            download: 0,
            upload: 0,
            partitions: [],
          }],
        }],
        instances: [],
      }));
      await until("monitoring", () => cloud.units()[0]?.monitoring !== undefined);
    }
    await using cloud = await devcloudIn(dir);
    const dash = await startDashboard({ devcloud: cloud, hostname: "localhost", port: 0 });
    assert.deepEqual(dash.state().units[0]?.nodes[0]?.history.map((p) => p.cpu), [42]);
    const res = await fetch(`${dash.url}/api/events`);
    const reader = res.body!.getReader();
    assert.equal((await reader.read()).done, false);
    await dash.close();
    // The server ended the stream: the reader sees its end instead of hanging.
    while (!(await reader.read()).done) { /* drain */ }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

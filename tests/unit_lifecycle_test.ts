/**
 * A service's whole life on one unit, built on `devcloud/local_unit.ts` (what the demo runs):
 * devcloud in this process, iam + sm + cm as real processes under their permission manifests.
 * `hello` v1 is deployed with 2 instances that answer over their port; it is updated to v2
 * (instances replaced, v1 removed); `sm` is killed with SIGKILL and restarted (instances
 * recovered, no duplicate container, no leaked mount); the service is removed (nothing left);
 * v3 is deployed and the cloud drops the WebSocket while a layer downloads (CM reconnects with
 * back-off, reports a full status, and the update finishes).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { UnitStatus } from "@aos/shared/cloudprotocol";
import { DenoCommandRunner } from "@aos/shared/exec";
import { nullLogger } from "@aos/shared/logger";
import { type Devcloud, startDevcloud } from "../devcloud/cloud.ts";
import {
  busyboxServiceManifest,
  LOCAL_RUNC,
  type LocalUnit,
  startLocalUnit,
  writeBusyboxService,
  writeLocalUnit,
} from "../devcloud/local_unit.ts";
import { type ComponentProcess, startComponent, waitFor } from "../devcloud/process.ts";
import { commandFor } from "../permissions/launch.ts";
import { mountsUnder } from "../sm/runtime/rootfs.ts";
import { smSkipReason } from "./fixtures/sm_unit.ts";
import { tearDownUnit } from "./fixtures/unit_teardown.ts";

const SERVICE = "hello";
const PAGE_V1 = "hello v1 from the lifecycle test\n";
const PAGE_V2 = "hello v2 from the lifecycle test\n";
const PAGE_V3 = "hello v3 after a dropped cloud connection\n";

const skip = await smSkipReason();
if (skip) console.warn(`unit lifecycle test skipped: ${skip}`);

const runner = new DenoCommandRunner({ allow: [LOCAL_RUNC] });

/** The page the instance's httpd serves on 127.0.0.1:8080 inside its own network namespace. */
async function page(runcRoot: string, id: string): Promise<string> {
  const r = await runner.run(LOCAL_RUNC, [
    "--root",
    runcRoot,
    "exec",
    id,
    "wget",
    "-qO-",
    "http://127.0.0.1:8080/",
  ], { allowFailure: true, timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout : `no answer from ${id}: ${r.stderr.trim()}`;
}

/** The item's versions and states in CM's image manager table. */
function cmItemStates(dbPath: string, itemId: string): string[][] {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    const rows = db.prepare(
      "SELECT version, state FROM imagemanager WHERE itemID = ? ORDER BY version",
    ).all(itemId) as { version: string; state: string }[];
    return rows.map((r) => [r.version, r.state]);
  } finally {
    db.close();
  }
}

/**
 * A pass-through proxy in front of devcloud's blob server (devcloud writes its URL into
 * `blobUrls`) that, once armed, stalls the next large blob after its first 256 KiB until
 * released: a download that is certainly in progress.
 */
class StallingBlobProxy implements AsyncDisposable {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #client = Deno.createHttpClient({});
  /** `host:port` of the blob server, set once devcloud listens. */
  target = "";
  #armed = false;
  #release = Promise.withResolvers<void>();
  /** Resolves with the stalled blob's path. */
  stalled = Promise.withResolvers<string>();

  constructor() {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#forward(req),
    );
  }

  /** The blobs base URL to give devcloud (`localhost`: CM dials it as its allowed host). */
  get url(): string {
    return `http://localhost:${this.#server.addr.port}/blobs`;
  }

  /** Stalls the next blob larger than 512 KiB. */
  arm(): void {
    this.#armed = true;
    this.#release = Promise.withResolvers();
    this.stalled = Promise.withResolvers();
  }

  /** Lets the stalled blob go on. */
  release(): void {
    this.#release.resolve();
  }

  async #forward(req: Request): Promise<Response> {
    const headers = new Headers();
    const range = req.headers.get("range");
    if (range) headers.set("range", range);
    const path = new URL(req.url).pathname;
    const up = await fetch(`http://${this.target}${path}`, { headers, client: this.#client });
    const size = Number(up.headers.get("content-length") ?? 0);
    if (!this.#armed || size < 512 * 1024 || !up.body) {
      return new Response(up.body, { status: up.status, headers: up.headers });
    }
    this.#armed = false;
    const reader = up.body.getReader();
    const released = this.#release.promise;
    const stalled = this.stalled;
    let sent = 0;
    let held = false;
    const body = new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        if (sent >= 256 * 1024 && !held) {
          held = true;
          stalled.resolve(path);
          await released;
        }
        const { value, done } = await reader.read();
        if (done) return ctrl.close();
        sent += value.length;
        ctrl.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return new Response(body, { status: up.status, headers: up.headers });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
    await this.#server.shutdown();
    this.#client.close();
  }
}

function logs(unit: LocalUnit | undefined): string {
  return (unit?.processes ?? []).map((p) => `--- ${p.name} log (tail) ---\n${p.log().slice(-4000)}`)
    .join("\n");
}

Deno.test({
  name:
    "unit lifecycle: deploy answers, update replaces, sm kill -9 recovers, remove cleans, cloud drop mid-download",
  ignore: skip !== undefined,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "aos-lifecycle-" });
    const held: { cloud?: Devcloud; unit?: LocalUnit; off?: () => void } = {};
    await using proxy = new StallingBlobProxy();
    let failed = true;
    try {
      const c = held.cloud = await startDevcloud({
        workingDir: join(root, "devcloud"),
        cloudListen: "localhost:0",
        blobsListen: "localhost:0",
        blobsBaseUrl: proxy.url,
        logger: nullLogger,
      });
      proxy.target = new URL(c.blobServerUrl).host.replace(/^localhost:/, "127.0.0.1:");
      const statuses: Omit<UnitStatus, "messageType">[] = [];
      /** Session events and full statuses, in order. */
      const timeline: string[] = [];
      held.off = c.subscribe((e) => {
        if (e.type === "connected" || e.type === "disconnected") timeline.push(e.type);
        if (e.type === "message" && e.message.messageType === "unitStatus") {
          const { messageType: _, ...body } = e.message;
          statuses.push(body);
          if (!body.isDeltaInfo) timeline.push("full status");
        }
      });
      const layout = await writeLocalUnit(join(root, "unit"), c);
      const u = held.unit = await startLocalUnit(c, layout);
      const { systemId, runcRoot } = layout;
      const withLogs = (err: unknown) => {
        throw new Error(`${err}\n${logs(u)}`);
      };
      const progress = (version: string) => {
        const s = c.status().services.find((x) => x.name === SERVICE);
        if (s?.version !== version) return undefined;
        return s.units.find((x) => x.systemId === systemId);
      };
      const untilDone = (version: string, what: string) =>
        waitFor(what, () => {
          const p = progress(version);
          if (p?.failed) throw new Error(`${what}: failed: ${JSON.stringify(p)}`);
          return p?.done ? p : undefined;
        }, 60_000).catch(withLogs);
      const running = async () =>
        (await u.runc.list()).filter((x) => x.status === "running").map((x) => x.id).sort();
      // A container's incarnation: the instance id stays across versions and restarts (it is
      // derived from item, subject and index), the process and creation time do not.
      const incarnations = async () =>
        (await u.runc.list()).map((x) => `${x.id} ${x.pid} ${String(x.created)}`).sort();

      // 1. Deploy v1 with 2 instances: both active, each answers over its port.
      const v1Dir = join(root, "services/v1");
      await writeBusyboxService(v1Dir, PAGE_V1);
      let t = performance.now();
      const v1 = await c.deploy(SERVICE, {
        instances: 2,
        source: join(v1Dir, "rootfs"),
        manifest: busyboxServiceManifest(SERVICE, "1.0.0"),
      });
      const done1 = await untilDone("1.0.0", "v1: installed + 2 active");
      console.log(`deploy → 2 active: ${Math.round(performance.now() - t)} ms`);
      assert.equal(done1.itemState, "installed");
      assert.equal(done1.instances.active, 2);
      const ids1 = await running();
      assert.equal(ids1.length, 2, `containers: ${ids1}`);
      for (const id of ids1) assert.equal(await page(runcRoot, id), PAGE_V1);
      const v1Containers = await incarnations();

      // 2. Update to v2 (same service, same item id): v2 installed, instances replaced by v2
      // containers (same instance ids, new processes), no v1 container left, v1 removed.
      const v2Dir = join(root, "services/v2");
      await writeBusyboxService(v2Dir, PAGE_V2);
      t = performance.now();
      const v2 = await c.deploy(SERVICE, {
        source: join(v2Dir, "rootfs"),
        manifest: busyboxServiceManifest(SERVICE, "2.0.0"),
      });
      assert.equal(v2.id, v1.id, "an update keeps the item id");
      assert.equal(v2.instances, 2);
      const done2 = await untilDone("2.0.0", "v2: installed + 2 active");
      const v2Containers = await waitFor("only v2 containers", async () => {
        const now = await incarnations();
        return now.length === 2 && now.every((x) => !v1Containers.includes(x)) ? now : undefined;
      }, 30_000).catch(withLogs);
      const ids2 = await running();
      assert.deepEqual(ids2, ids1, "the instances keep their ids across versions");
      console.log(`update → replaced: ${Math.round(performance.now() - t)} ms`);
      assert.equal(done2.itemState, "installed");
      for (const id of ids2) assert.equal(await page(runcRoot, id), PAGE_V2);
      assert.deepEqual(await incarnations(), v2Containers);
      // v1 is reported removed the way AosCore does it: a full unit status omits `removed`
      // items (spec cm.md §15.1), and the full status sent when the update finished supersedes
      // the pending delta, so v1 is gone from the status the cloud holds; CM's image manager
      // drops the row of an installed version replaced by a newer one (cm.md §6.2).
      await waitFor("a full status without v1", () => {
        const last = statuses.findLast((s) => !s.isDeltaInfo);
        return last?.items?.some((i) => i.item.id === v1.id && i.version === "2.0.0") &&
          !last.items.some((i) => i.item.id === v1.id && i.version === "1.0.0");
      }, 15_000).catch(withLogs);
      assert.deepEqual(cmItemStates(join(layout.root, "var/cm/cm.db"), v1.id), [
        ["2.0.0", "installed"],
      ]);
      const status2 = c.units().find((x) => x.systemId === systemId)!.status;
      assert.deepEqual(
        status2.items.filter((i) => i.item.id === v1.id).map((i) => [i.version, i.state]),
        [["2.0.0", "installed"]],
      );
      assert.deepEqual(
        status2.instances.filter((i) => i.item.id === v1.id).map((i) => [i.version, i.state]),
        [["2.0.0", "active"], ["2.0.0", "active"]],
      );

      // 3. SM killed with SIGKILL while the instances run, restarted with the same command
      // under its manifest: 2 active again, exactly 2 containers, no leaked mount.
      const mountsBefore = await mountsUnder(layout.root, 8);
      const sm = u.processes.find((p) => p.name === "sm")!;
      const statusesAtKill = statuses.length;
      await sm.kill();
      t = performance.now();
      const smArgs = (await commandFor("sm", ["-c", layout.smConfig])).args;
      const restarted: ComponentProcess = await startComponent("sm", smArgs);
      u.processes.splice(u.processes.indexOf(sm), 1, restarted);
      // The cloud's view must come from a status sent after the restart, not from before it.
      await waitFor("a unit status after the sm restart with 2 active v2 instances", async () => {
        const fresh = statuses.slice(statusesAtKill).some((s) =>
          (s.instances ?? []).filter((g) => g.item.id === v1.id && g.version === "2.0.0")
            .flatMap((g) => g.instances).filter((i) => i.state === "active").length === 2
        );
        const s = c.units().find((x) => x.systemId === systemId)?.status;
        const active = s?.instances.filter((i) =>
          i.item.id === v1.id && i.version === "2.0.0" && i.state === "active"
        ).length;
        return fresh && active === 2 && (await running()).length === 2;
      }, 30_000).catch((err) =>
        withLogs(
          `${err}\nstatuses since the kill: ${
            JSON.stringify(
              statuses.slice(statusesAtKill).map((s) => [
                s.isDeltaInfo,
                s.instances?.flatMap((g) =>
                  g.instances.map((i) => [g.version, i.instance, i.state])
                ),
              ]),
            )
          }`,
        )
      );
      console.log(`sm restart → recovered: ${Math.round(performance.now() - t)} ms`);
      // The CM's batch on reconnect overlaps the restore of the stored instances: it is queued,
      // not rejected (a rejected batch was lost).
      assert.doesNotMatch(restarted.log(), /\bERROR\b/, restarted.log());
      const ids3 = await running();
      assert.equal((await u.runc.list()).length, 2, "no duplicate or orphan container");
      for (const id of ids3) assert.equal(await page(runcRoot, id), PAGE_V2);
      assert.deepEqual(
        (await mountsUnder(layout.root, 8)).sort(),
        mountsBefore.sort(),
        "the same mounts as before the kill",
      );

      // 4. Remove: stopped and cleaned.
      t = performance.now();
      await c.remove(SERVICE);
      await waitFor("the service gone from the unit status", () => {
        const s = c.units().find((x) => x.systemId === systemId)?.status;
        return s !== undefined && !s.items.some((i) => i.item.id === v1.id) &&
          !s.instances.some((i) => i.item.id === v1.id);
      }, 60_000).catch(withLogs);
      await waitFor("no container", async () => (await u.runc.list()).length === 0, 30_000)
        .catch(withLogs);
      console.log(`remove → gone: ${Math.round(performance.now() - t)} ms`);
      assert.deepEqual(await mountsUnder(layout.root, 8), []);
      assert.deepEqual(cmItemStates(join(layout.root, "var/cm/cm.db"), v1.id), [
        ["2.0.0", "removed"],
      ]);

      // 5. The cloud drops the WebSocket while a layer is downloading (the proxy holds it
      // half-sent) and refuses upgrades for a while: CM reconnects with back-off, sends a full
      // status, and the update finishes once the layer flows again.
      const v3Dir = join(root, "services/v3");
      await writeBusyboxService(v3Dir, PAGE_V3);
      proxy.arm();
      t = performance.now();
      const v3 = await c.deploy(SERVICE, {
        instances: 1,
        source: join(v3Dir, "rootfs"),
        manifest: busyboxServiceManifest(SERVICE, "3.0.0"),
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalledPath = await Promise.race([
        proxy.stalled.promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("no layer download started")), 30_000);
        }),
      ]).catch(withLogs).finally(() => clearTimeout(timer));
      assert.equal(progress("3.0.0")?.itemState ?? "absent", "absent");
      const mark = timeline.length;
      const cmLogMark = u.processes.find((p) => p.name === "cm")!.log().length;
      const tDrop = performance.now();
      assert.equal(c.dropSessions({ refuseForMs: 2_500 }), 1);
      await waitFor("a full status after the reconnect", () => {
        const after = timeline.slice(mark);
        const at = after.indexOf("connected");
        return at >= 0 && after.indexOf("full status", at) > at;
      }, 30_000).catch(withLogs);
      console.log(
        `drop → reconnected + full status: ${Math.round(performance.now() - tDrop)} ms ` +
          "(upgrades refused for 2500 ms)",
      );
      const refusals = u.processes.find((p) => p.name === "cm")!.log().slice(cmLogMark)
        .match(/Cannot connect to the cloud/g)?.length ?? 0;
      assert.ok(refusals >= 2, `CM retried with back-off (${refusals} refused attempts)`);
      proxy.release();
      const done3 = await untilDone("3.0.0", "v3: installed + 1 active after the drop");
      console.log(
        `deploy v3 (layer …${stalledPath.slice(-12)} held, cloud dropped) → v3 active: ${
          Math.round(performance.now() - t)
        } ms`,
      );
      assert.equal(done3.instances.active, 1);
      const ids4 = await running();
      assert.equal(ids4.length, 1);
      assert.equal(await page(runcRoot, ids4[0]!), PAGE_V3);
      assert.notEqual(v3.id, v1.id, "a removed service deployed again is a new item");
      failed = false;
    } finally {
      held.off?.();
      const left = await tearDownUnit({ unit: held.unit, cloud: held.cloud, root });
      // Only when the steps passed: a leftover after a failure is not the first error.
      if (!failed) {
        assert.deepEqual(left.containers, [], "containers left at stop");
        assert.deepEqual(left.mounts, [], "mounts left at stop");
      }
    }
  },
});

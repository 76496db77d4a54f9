/**
 * `cm` killed with SIGKILL in the middle of an image download, end to end, on the unit of
 * `devcloud/local_unit.ts` (devcloud in this process; iam, sm and cm real processes under their
 * permission manifests, mTLS everywhere).
 *
 * The service image has two large extra layers, served through a proxy in front of devcloud's
 * blob server that logs every request and holds the last layer after a given number of bytes.
 * While that layer is held the cloud stops reading the unit's WebSocket (a hung cloud) or
 * drops it and refuses reconnects (CM offline), the held response is broken so CM raises an
 * alert that can only wait in its durable outbox, and
 * CM's resumed `Range` request is held too. Then CM is killed and restarted. Proven:
 * (a) the blobs that were complete are never requested again (the proxy's log, and no
 * `requestBlobUrls` for them), the partial one continues with a `Range` request from the size
 * of its part file; (b) every message in CM's outbox at the kill reaches the cloud after the
 * restart under its txn (a stored unit status may instead be superseded by the full status CM
 * sends on connect), and the outbox drains; (c) the update finishes with both instances active;
 * (d) CM's database and its blob directories agree: every referenced blob is installed and
 * matches its digest, nothing else is there, no partial download is left.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { nullLogger } from "@aos/shared/logger";
import { type Devcloud, startDevcloud } from "../devcloud/cloud.ts";
import {
  busyboxServiceManifest,
  type LocalUnit,
  startLocalUnit,
  writeBusyboxService,
  writeLocalUnit,
} from "../devcloud/local_unit.ts";
import { startComponent, waitFor } from "../devcloud/process.ts";
import { commandFor } from "../permissions/launch.ts";
import { smSkipReason } from "./fixtures/sm_unit.ts";
import { tearDownUnit } from "./fixtures/unit_teardown.ts";

const SERVICE = "layered";
/** Each extra layer: incompressible, so its blob is about this large. */
const LAYER_BYTES = 2 * 1024 * 1024;
/** The last layer's first response stops after this many bytes. */
const FIRST_HOLD = 512 * 1024;
/** The resumed (`Range`) response stops after this many more. */
const SECOND_HOLD = 256 * 1024;

const skip = await smSkipReason();
if (skip) console.warn(`cm crash test skipped: ${skip}`);

/** One response of the proxy. */
interface Served {
  /** Plain digest hex of the blob (the URL's last segment). */
  hex: string;
  /** The request's `Range` header. */
  range: string | null;
  status: number;
  /** `content-length` of the response. */
  length: number;
  /** Body bytes handed on so far. */
  sent: number;
  /** The whole body was handed on. */
  complete: boolean;
}

type Release = "fail" | "pass" | "gone";

/**
 * A logging pass-through proxy in front of devcloud's blob server. Responses for one blob stop
 * after the given byte counts (one per response, in order) until the test fails or releases
 * them. Requests wait until {@link hold} was called, so the rule is set before any blob flows.
 */
class HoldingBlobProxy implements AsyncDisposable {
  /** Every response, in request order. */
  readonly log: Served[] = [];
  /** Responses that reached their hold point, in order. */
  readonly holds: Served[] = [];
  /** `host:port` of the blob server. */
  upstream = "";
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #client = Deno.createHttpClient({});
  readonly #ready = Promise.withResolvers<void>();
  #hex = "";
  #thresholds: number[] = [];
  /** Releases of held responses (at most one is held at a time in this test). */
  readonly #held = new Set<(r: Release) => void>();

  constructor() {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#forward(req),
    );
  }

  /** Blobs base URL for devcloud (`localhost`: the unit's allowed host). */
  get url(): string {
    return `http://localhost:${this.#server.addr.port}/blobs`;
  }

  /** Holds the next responses of blob `hex`, the n-th after `thresholds[n]` bytes. */
  hold(hex: string, thresholds: number[]): void {
    this.#hex = hex;
    this.#thresholds = [...thresholds];
    this.#ready.resolve();
  }

  /** Breaks the held response (the client sees its body fail). */
  failHeld(): void {
    for (const r of [...this.#held]) r("fail");
  }

  /** Lets everything through from now on. */
  passAll(): void {
    this.#thresholds = [];
    for (const r of [...this.#held]) r("pass");
  }

  async #forward(req: Request): Promise<Response> {
    await this.#ready.promise;
    const path = new URL(req.url).pathname;
    const headers = new Headers();
    for (const h of ["range", "if-range"]) {
      const v = req.headers.get(h);
      if (v !== null) headers.set(h, v);
    }
    const up = await fetch(`http://${this.upstream}${path}`, { headers, client: this.#client });
    const entry: Served = {
      hex: path.split("/").pop() ?? "",
      range: req.headers.get("range"),
      status: up.status,
      length: Number(up.headers.get("content-length") ?? 0),
      sent: 0,
      complete: false,
    };
    this.log.push(entry);
    if (!up.body) {
      entry.complete = true;
      return new Response(null, { status: up.status, headers: up.headers });
    }
    const holdAt = entry.hex === this.#hex ? this.#thresholds.shift() : undefined;
    const reader = up.body.getReader();
    let gone: (() => void) | undefined;
    let holding = holdAt !== undefined;
    const body = new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        if (holding && entry.sent >= holdAt!) {
          holding = false;
          const release = await new Promise<Release>((resolve) => {
            const r = (x: Release) => {
              this.#held.delete(r);
              resolve(x);
            };
            this.#held.add(r);
            gone = () => r("gone");
            this.holds.push(entry);
          });
          if (release === "gone") return;
          if (release === "fail") {
            // Ends the body short of its content-length: the client sees a broken transfer.
            await reader.cancel().catch(() => {});
            ctrl.close();
            return;
          }
        }
        const { value, done } = await reader.read();
        if (done) {
          entry.complete = true;
          ctrl.close();
          return;
        }
        entry.sent += value.length;
        ctrl.enqueue(value);
      },
      cancel: async (reason) => {
        gone?.();
        await reader.cancel(reason).catch(() => {});
      },
    });
    return new Response(body, { status: up.status, headers: up.headers });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#ready.resolve();
    for (const r of [...this.#held]) r("fail");
    await this.#server.shutdown();
    this.#client.close();
  }
}

/** A row of CM's durable outbox. */
interface OutboxRow {
  txn: string;
  group: string;
  messageType: string;
  data: { messageType: string; items?: Record<string, unknown>[] };
}

/** CM's outbox as stored now (read-only, so it works with CM running or dead). */
function readOutbox(dbPath: string): OutboxRow[] {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    const rows = db.prepare(
      "SELECT txn, grp, message_type, payload FROM cloud_outbox ORDER BY seq",
    ).all() as { txn: string; grp: string; message_type: string; payload: Uint8Array }[];
    return rows.map((r) => ({
      txn: r.txn,
      group: r.grp,
      messageType: r.message_type,
      data: JSON.parse(new TextDecoder().decode(r.payload)).data,
    }));
  } finally {
    db.close();
  }
}

/** Rows of one item in CM's image manager tables. */
function imageRows(dbPath: string, itemId: string) {
  const db = new DatabaseSync(dbPath, { readOnly: true });
  try {
    const items = (db.prepare("SELECT version, state FROM imagemanager WHERE itemID = ?")
      .all(itemId) as { version: string; state: string }[]).map((r) => [r.version, r.state]);
    const blobs = (db.prepare("SELECT digest, size FROM imagemanager_blobs WHERE itemID = ?")
      .all(itemId) as { digest: string; size: number }[]).map((r) => ({
        digest: r.digest,
        size: Number(r.size),
      }));
    const all = db.prepare("SELECT COUNT(*) AS n FROM imagemanager").get() as { n: number };
    return { items, blobs, itemCount: Number(all.n) };
  } finally {
    db.close();
  }
}

/** Names of the files in a directory (none when it does not exist). */
async function filesIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

/** A directory holding one file of `bytes` random (incompressible) bytes. */
async function randomLayer(dir: string, name: string, bytes: number): Promise<void> {
  await Deno.mkdir(join(dir, "data"), { recursive: true });
  const data = new Uint8Array(bytes);
  for (let off = 0; off < bytes; off += 65536) {
    crypto.getRandomValues(data.subarray(off, Math.min(off + 65536, bytes)));
  }
  await Deno.writeFile(join(dir, "data", name), data);
}

/** The image's blob digests in the order CM walks them (index, manifest, configs, layers). */
async function imageBlobs(cloud: Devcloud, indexDigest: string): Promise<string[]> {
  const read = async (d: string) => JSON.parse(await Deno.readTextFile(cloud.blobs.blobPath(d)));
  const index = await read(indexDigest);
  const manifestDigest: string = index.manifests[0].digest;
  const manifest = await read(manifestDigest);
  return [
    indexDigest,
    manifestDigest,
    manifest.config.digest,
    manifest.aosItemConfig.digest,
    ...manifest.layers.map((l: { digest: string }) => l.digest),
  ];
}

const hexOf = (digest: string) => digest.slice("sha256:".length);

function logs(unit: LocalUnit | undefined): string {
  return (unit?.processes ?? []).map((p) => `--- ${p.name} log (tail) ---\n${p.log().slice(-4000)}`)
    .join("\n");
}

/**
 * How the cloud fails before the kill: it hangs (the session stays open, nothing is read or
 * acked), or it is gone (the session dropped, reconnects refused), so alerts wait while CM is
 * offline.
 */
type CloudFault = "hung" | "offline";

for (const fault of ["hung", "offline"] as const) {
  Deno.test({
    name:
      `cm kill -9 mid-download, cloud ${fault}: complete blobs not fetched again, partial one resumed, outbox delivered, update finishes, db = disk`,
    ignore: skip !== undefined,
    fn: () => crashMidDownload(fault),
  });
}

async function crashMidDownload(fault: CloudFault): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "aos-cm-crash-" });
  const held: { cloud?: Devcloud; unit?: LocalUnit; off?: () => void } = {};
  await using proxy = new HoldingBlobProxy();
  let failed = true;
  try {
    const c = held.cloud = await startDevcloud({
      workingDir: join(root, "devcloud"),
      cloudListen: "localhost:0",
      blobsListen: "localhost:0",
      blobsBaseUrl: proxy.url,
      logger: nullLogger,
    });
    proxy.upstream = new URL(c.blobServerUrl).host.replace(/^localhost:/, "127.0.0.1:");
    /** Unit messages the cloud handled (acked and processed), in order. */
    const handled: { txn: string; type: string; full?: boolean; digests?: string[] }[] = [];
    held.off = c.subscribe((e) => {
      if (e.type !== "message") return;
      const m = e.message;
      handled.push({
        txn: e.txn,
        type: m.messageType,
        ...(m.messageType === "unitStatus" ? { full: !m.isDeltaInfo } : {}),
        ...(m.messageType === "requestBlobUrls" ? { digests: m.digests } : {}),
      });
    });

    // Ports are picked free and bound later: a concurrent job may take one in between.
    for (let attempt = 1; !held.unit; attempt++) {
      const layout = await writeLocalUnit(join(root, `unit${attempt}`), c);
      // Alerts go out a second after they are raised (default 10 s).
      const cfg = JSON.parse(await Deno.readTextFile(layout.cmConfig));
      await Deno.writeTextFile(
        layout.cmConfig,
        JSON.stringify({ ...cfg, alerts: { sendPeriod: "1s" } }),
      );
      try {
        held.unit = await startLocalUnit(c, layout);
      } catch (err) {
        if (attempt >= 3 || !/EADDRINUSE/.test(String(err))) throw err;
      }
    }
    const u = held.unit;
    const layout = u.layout;
    const withLogs = (err: unknown): never => {
      throw new Error(`${err}\n${logs(u)}`);
    };
    const cmDir = join(layout.root, "var/cm");
    const dbPath = join(cmDir, "cm.db");

    // The service: busybox rootfs plus two large layers.
    const svcDir = join(root, "services", SERVICE);
    await writeBusyboxService(svcDir, "layered\n");
    await randomLayer(join(svcDir, "big1"), "one.bin", LAYER_BYTES);
    await randomLayer(join(svcDir, "big2"), "two.bin", LAYER_BYTES);
    const record = await c.deploy(SERVICE, {
      instances: 2,
      source: join(svcDir, "rootfs"),
      manifest: busyboxServiceManifest(SERVICE, "1.0.0"),
      layers: [join(svcDir, "big1"), join(svcDir, "big2")],
    });
    const blobs = await imageBlobs(c, record.indexDigest);
    assert.equal(blobs.length, 7, "index, manifest, config, item config, 3 layers");
    const target = blobs.at(-1)!;
    const before = blobs.slice(0, -1);
    proxy.hold(hexOf(target), [FIRST_HOLD, SECOND_HOLD]);

    // 1. The last layer stops after 512 KiB; everything CM walks before it was served whole.
    await waitFor("the last layer held mid-transfer", () => proxy.holds.length >= 1, 60_000)
      .catch(withLogs);
    for (const d of before) {
      const served = proxy.log.filter((s) => s.hex === hexOf(d));
      assert.equal(served.length, 1, `${d} requested once`);
      assert.ok(served[0]!.complete && served[0]!.status === 200, `${d} served whole`);
    }
    const first = proxy.holds[0]!;
    assert.equal(first.range, null);
    assert.ok(first.sent >= FIRST_HOLD && first.sent < first.length, `${first.sent} sent`);

    // 2. The cloud hangs (reads nothing more from the unit) or goes away (CM is offline).
    // The held response breaks, so CM raises an `interrupted` alert that can only wait in
    // its outbox, and resumes the layer with a `Range` request, which is held again.
    if (fault === "hung") assert.equal(c.pauseSessions(), 1);
    else assert.equal(c.dropSessions({ refuseForMs: 10 * 60_000 }), 1);
    proxy.failHeld();
    await waitFor("the resumed request held", () => proxy.holds.length >= 2, 30_000)
      .catch(withLogs);
    const resumed = proxy.holds[1]!;
    const resumedFrom = Number(/^bytes=(\d+)-$/.exec(resumed.range ?? "")?.[1] ?? NaN);
    assert.ok(resumed.status === 206 && resumedFrom > 0, `resumed with ${resumed.range}`);
    const interruptedAlert = (r: OutboxRow) =>
      r.messageType === "alerts" &&
      (r.data.items ?? []).some((a) =>
        a.tag === "downloadProgressAlert" && a.digest === target && a.state === "interrupted"
      );
    await waitFor(
      "the interruption alert stored in cm's outbox",
      () => readOutbox(dbPath).some(interruptedAlert),
      30_000,
    ).catch(withLogs);

    // 3. SIGKILL. What the outbox holds now never reached the cloud.
    const cm = u.processes.find((p) => p.name === "cm")!;
    await cm.kill();
    u.processes.splice(u.processes.indexOf(cm), 1);
    const stored = readOutbox(dbPath);
    const handledBefore = new Set(handled.map((h) => h.txn));
    assert.ok(stored.some(interruptedAlert));
    for (const r of stored) {
      assert.ok(!handledBefore.has(r.txn), `stored ${r.messageType} ${r.txn} not handled yet`);
    }
    const part = join(cmDir, "download/blobs/sha256", `${hexOf(target)}.part`);
    const partSize = (await Deno.stat(part)).size;
    const targetSize = proxy.holds[0]!.length;
    assert.ok(
      partSize >= resumedFrom && partSize < targetSize,
      `part file ${partSize} bytes (resumed from ${resumedFrom}, blob ${targetSize})`,
    );
    for (const d of before) {
      assert.ok(
        (await Deno.stat(join(cmDir, "install/blobs/sha256", hexOf(d)))).isFile,
        `${d} installed before the kill`,
      );
    }

    // 4. Restart cm under its manifest; the blob server lets everything through now, and
    // an offline cloud takes connections again.
    const logMark = proxy.log.length;
    const handledMark = handled.length;
    proxy.passAll();
    if (fault === "offline") c.dropSessions({ refuseForMs: 0 });
    const restarted = await startComponent(
      "cm",
      (await commandFor("cm", ["-c", layout.cmConfig])).args,
    );
    u.processes.push(restarted);

    // (c) The update finishes: item installed, both instances active, two containers.
    const done = await waitFor("installed + 2 active after the restart", () => {
      const p = c.status().services.find((s) => s.name === SERVICE)?.units.find((x) =>
        x.systemId === layout.systemId
      );
      if (p?.failed) throw new Error(`update failed: ${JSON.stringify(p)}`);
      return p?.done ? p : undefined;
    }, 90_000).catch(withLogs);
    assert.equal(done.itemState, "installed");
    assert.equal(done.instances.active, 2);
    await waitFor(
      "2 running containers",
      async () => (await u.runc.list()).filter((x) => x.status === "running").length === 2,
      30_000,
    )
      .catch(withLogs);

    // (b) Every stored message reached the cloud under its txn after the restart (a stored
    // unit status may be superseded by a full one instead), and the outbox drains.
    const after = () => handled.slice(handledMark);
    await waitFor(
      "every stored message delivered or superseded",
      () =>
        stored.every((r) =>
          after().some((h) => h.txn === r.txn) ||
          (r.group === "unitStatus" && after().some((h) => h.type === "unitStatus" && h.full))
        ),
      30_000,
    ).catch(withLogs);
    for (const r of stored.filter((r) => r.group !== "unitStatus")) {
      assert.ok(after().some((h) => h.txn === r.txn), `${r.messageType} ${r.txn} delivered`);
    }
    await waitFor("cm's outbox drained", () => readOutbox(dbPath).length === 0, 30_000)
      .catch(withLogs);

    // (a) No complete blob requested again, neither from the blob server nor from the cloud;
    // the partial one continued from its part file.
    const since = proxy.log.slice(logMark);
    for (const d of before) {
      assert.equal(
        since.filter((s) => s.hex === hexOf(d)).length,
        0,
        `${d} not requested again`,
      );
    }
    const targetRequests = since.filter((s) => s.hex === hexOf(target));
    assert.ok(targetRequests.length >= 1);
    assert.equal(targetRequests[0]!.range, `bytes=${partSize}-`);
    assert.ok(targetRequests.every((s) => s.status === 206), "only Range requests");
    assert.ok(targetRequests.at(-1)!.complete);
    assert.equal(
      proxy.log.filter((s) => s.hex === hexOf(target) && s.range === null).length,
      1,
      "one full GET of the partial blob in all",
    );
    const urlRequests = after().filter((h) => h.type === "requestBlobUrls");
    assert.deepEqual([...new Set(urlRequests.flatMap((h) => h.digests ?? []))], [target]);

    // (d) The database and the disk agree.
    const rows = imageRows(dbPath, record.id);
    assert.deepEqual(rows.items, [["1.0.0", "installed"]]);
    assert.equal(rows.itemCount, 1);
    assert.deepEqual(rows.blobs.map((b) => b.digest).sort(), [...blobs].sort());
    const installDir = join(cmDir, "install/blobs/sha256");
    assert.deepEqual(await filesIn(installDir), blobs.map(hexOf).sort(), "installed blobs");
    for (const b of rows.blobs) {
      const bytes = await Deno.readFile(join(installDir, hexOf(b.digest)));
      assert.equal(bytes.length, b.size, `${b.digest} size`);
      assert.equal(`sha256:${createHash("sha256").update(bytes).digest("hex")}`, b.digest);
    }
    assert.deepEqual(await filesIn(join(cmDir, "download/blobs/sha256")), [], "no download left");
    assert.deepEqual(await filesIn(join(cmDir, "install/tmp")), [], "no temporary file left");
    console.log(
      `killed with ${stored.length} stored message(s) (${
        stored.map((r) => r.messageType).join(", ")
      }); part file ${partSize} of ${targetSize} bytes, resumed with Range`,
    );
    failed = false;
  } finally {
    held.off?.();
    const left = await tearDownUnit({ unit: held.unit, cloud: held.cloud, root });
    if (!failed) {
      assert.deepEqual(left.containers, [], "containers left at stop");
      assert.deepEqual(left.mounts, [], "mounts left at stop");
    }
  }
}

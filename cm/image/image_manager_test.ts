import assert from "node:assert/strict";
import { join } from "node:path";
import { openDatabase } from "@aos/shared/db";
import { startFileServer } from "@aos/shared/fileserver";
import { createSpaceRegistry, realSpaceFs, type SpaceFs } from "@aos/shared/space";
import {
  desired,
  fileSha256,
  listFiles,
  makePki,
  type Published,
  TestCloud,
  type TestImage,
} from "./_test_fixture.ts";
import {
  CM_IMAGE_MIGRATIONS,
  createImageManager,
  type DownloadProgressAlert,
  type ImageManager,
  type ImageManagerOptions,
  type ItemStatus,
  type RemovedItem,
} from "./mod.ts";

const pki = await makePki();
const DAY = 24 * 3600 * 1000;

interface Env {
  dir: string;
  cloud: TestCloud;
  images: ImageManager;
  alerts: DownloadProgressAlert[];
  changes: ItemStatus[];
  removed: RemovedItem[];
  clock: { t: number; now(): number };
  /** Opens a second manager on the same directories and database (a restart). */
  reopen(): Promise<ImageManager>;
}

async function withEnv(
  fn: (env: Env) => Promise<void>,
  opts: { fs?: (dir: string) => SpaceFs; options?: Partial<ImageManagerOptions> } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cm-image-" });
  try {
    using db = openDatabase({ path: join(dir, "cm.db"), migrations: CM_IMAGE_MIGRATIONS });
    await using cloud = new TestCloud(pki);
    const clock = { t: Date.UTC(2025, 5, 1), now: () => clock.t };
    const alerts: DownloadProgressAlert[] = [];
    const changes: ItemStatus[] = [];
    const removed: RemovedItem[] = [];
    const space = createSpaceRegistry(opts.fs ? { fs: opts.fs(dir) } : {});
    const make = () =>
      createImageManager({
        database: db,
        installPath: join(dir, "install"),
        downloadPath: join(dir, "download"),
        blobInfo: cloud,
        caCert: pki.rootPem,
        space,
        allowHost: (url) => url.hostname === "127.0.0.1",
        onAlert: (a) => alerts.push(a),
        removeOutdatedPeriodMs: 0,
        updateItemTtlMs: 30 * DAY,
        clock,
        blobs: { retryDelayMs: 5, maxAttempts: 2, checksumAttempts: 2 },
        downloader: { tries: 1, initialDelayMs: 1, maxDelayMs: 1 },
        ...opts.options,
      });
    await using images = await make();
    images.onStatusChange((s) => changes.push(s));
    images.onItemRemoved((r) => removed.push(r));
    await fn({ dir, cloud, images, alerts, changes, removed, clock, reopen: make });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function assertInstalled(images: ImageManager, blobs: Published[]): Promise<void> {
  for (const b of blobs) {
    assert.equal(await images.hasBlob(b.digest), true, `${b.digest} installed`);
    assert.equal(`sha256:${await fileSha256(images.blobPath(b.digest))}`, b.digest);
  }
}

async function assertAbsent(env: Env, blob: Published): Promise<void> {
  assert.equal(await env.images.hasBlob(blob.digest), false);
  const hex = blob.digest.slice(7);
  for (const f of await listFiles(env.dir)) assert.ok(!f.includes(hex), `leftover ${f}`);
}

Deno.test("image manager: happy path installs, verifies and serves every blob", async () => {
  await withEnv(async (env) => {
    const { cloud, images } = env;
    const image = await cloud.publishImage(1);
    const item = desired("svc1", "1.0.0", image);

    const statuses = await images.downloadItems([item], pki.trust);
    assert.deepEqual(statuses, [{
      id: "svc1",
      type: "service",
      version: "1.0.0",
      state: "pending",
    }]);
    assert.deepEqual(env.changes.map((c) => c.state), ["downloading", "pending"]);
    await assertInstalled(images, image.all);
    assert.deepEqual(
      images.itemBlobs("svc1", "1.0.0").sort(),
      image.all.map((b) => b.digest).sort(),
    );
    // Encrypted downloads and temp files are gone; only verified blobs remain.
    assert.deepEqual(await listFiles(join(env.dir, "download")), []);
    assert.deepEqual(await listFiles(join(env.dir, "install", "tmp")), []);
    assert.equal((await listFiles(images.blobRoot)).length, image.all.length);

    // Progress alerts: one started and one finished per blob, shaped for the cloud.
    for (const b of image.all) {
      const mine = env.alerts.filter((a) => a.digest === b.digest);
      assert.deepEqual(mine.map((a) => a.state), ["started", "finished"], b.digest);
      assert.equal(mine[1]?.totalBytes, b.served.length);
      assert.equal(mine[1]?.tag, "downloadProgressAlert");
    }

    // Served by the blob file server exactly as SMs will fetch them.
    await using files = await startFileServer({ root: images.blobRoot, port: 0 });
    for (const b of image.all) {
      const res = await fetch(files.urlFor(b.digest));
      assert.equal(res.status, 200);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), b.plain);
    }

    assert.deepEqual(await images.installItems([item]), [
      { id: "svc1", type: "service", version: "1.0.0", state: "installed" },
    ]);
    assert.deepEqual(images.statuses().map((s) => s.state), ["installed"]);

    // The same desired status again: blobs re-checked locally, nothing fetched.
    const requests = cloud.seen.length;
    const again = await images.downloadItems([item], pki.trust);
    assert.equal(again[0]?.state, "installed");
    assert.equal(cloud.seen.length, requests);
  });
});

Deno.test("image manager: tampered, wrongly signed and mis-digested blobs fail with distinct errors and are never installed", async () => {
  await withEnv(async (env) => {
    const { cloud, images } = env;
    const tampered = await cloud.publishImage(2, { layerOpts: [undefined, { tamper: true }] });
    const wrongKey = await cloud.publishImage(3, { layerOpts: [{ sign: "other" }] });
    // The cloud serves (and correctly signs) another file than the manifest's digest names.
    const decoy = new TextEncoder().encode("not the layer you are looking for");
    const wrongDigest = await cloud.publishImage(4, { layerOpts: [{ serve: decoy }] });

    const statuses = await images.downloadItems([
      desired("tampered", "1", tampered),
      desired("wrongkey", "1", wrongKey),
      desired("wrongdigest", "1", wrongDigest),
    ], pki.trust);
    const byId = new Map(statuses.map((s) => [s.id, s]));
    for (const s of statuses) assert.equal(s.state, "failed", s.id);

    const t = byId.get("tampered")?.error;
    assert.equal(t?.code, "invalidChecksum");
    assert.match(t!.message, /^Cannot download item tampered 1: Cannot install blob sha256:/);
    assert.match(t!.message, /does not match the signature \(modified content\)/);

    const k = byId.get("wrongkey")?.error;
    assert.equal(k?.code, "failed");
    assert.match(k!.message, /signature was not made by the key of "CN=Test Aos Blob Signer/);

    const d = byId.get("wrongdigest")?.error;
    assert.equal(d?.code, "invalidChecksum");
    assert.match(d!.message, /decrypted content has SHA-256 [0-9a-f]{12}…, expected/);

    // The failing blobs exist nowhere: not installed, not in tmp, not in downloads, not served.
    await assertAbsent(env, tampered.layers[1]!);
    await assertAbsent(env, wrongKey.layers[0]!);
    await assertAbsent(env, wrongDigest.layers[0]!);
    await using files = await startFileServer({ root: images.blobRoot, port: 0 });
    for (const b of [tampered.layers[1]!, wrongKey.layers[0]!, wrongDigest.layers[0]!]) {
      const res = await fetch(files.urlFor(b.digest));
      await res.body?.cancel();
      assert.equal(res.status, 404);
    }

    // The errors survive in the DB (unit status after a restart).
    const stored = images.statuses();
    assert.deepEqual(stored.map((s) => [s.id, s.state]).sort(), [
      ["tampered", "failed"],
      ["wrongdigest", "failed"],
      ["wrongkey", "failed"],
    ]);
    assert.equal(stored.find((s) => s.id === "wrongkey")?.error?.message, k!.message);

    // Installing a failed item does not make it installed.
    const inst = await images.installItems([desired("tampered", "1", tampered)]);
    assert.equal(inst[0]?.state, "failed");
  });
});

Deno.test("image manager: a blob URL outside the allow-list is refused before any request", async () => {
  await withEnv(async (env) => {
    const { cloud, images } = env;
    const image = await cloud.publishImage(5, {
      layerOpts: [{ host: "http://blobs.example.invalid:8080" }],
    });
    const [s] = await images.downloadItems([desired("svc", "1", image)], pki.trust);
    assert.equal(s?.state, "failed");
    assert.equal(s?.error?.code, "invalidArgument");
    assert.match(
      s!.error!.message,
      /Cannot download blob sha256:[0-9a-f]{12}…: host "blobs.example.invalid:8080" is not on the allow-list/,
    );
    assert.equal(cloud.count(image.layers[0]!.digest), 0);
    await assertAbsent(env, image.layers[0]!);
  });
});

Deno.test("image manager: a wrong SHA3-256 of the download fails after the bounded re-downloads", async () => {
  await withEnv(async (env) => {
    const { cloud, images } = env;
    const image = await cloud.publishImage(6, { layerOpts: [undefined, { badSha3: true }] });
    const [s] = await images.downloadItems([desired("svc", "1", image)], pki.trust);
    assert.equal(s?.state, "failed");
    assert.equal(s?.error?.code, "invalidChecksum");
    assert.match(s!.error!.message, /does not match its SHA3-256 or size after 2 downloads/);
    assert.equal(cloud.count(image.layers[1]!.digest), 2);
    await assertAbsent(env, image.layers[1]!);
  });
});

Deno.test("image manager: removed items expire after the TTL; shared blobs stay", async () => {
  await withEnv(async (env) => {
    const { cloud, images, clock } = env;
    const a = await cloud.publishImage(7);
    const b = await cloud.publishImage(8, { firstLayer: a.layers[0]! });
    const itemA = desired("a", "1", a);
    const itemB = desired("b", "1", b);
    await images.downloadItems([itemA, itemB], pki.trust);
    // Both items want the shared layer at the same time: it is fetched once.
    assert.equal(cloud.count(a.layers[0]!.digest), 1);
    await images.installItems([itemA, itemB]);

    clock.t += 1000;
    await images.downloadItems([itemB], pki.trust);
    await images.installItems([itemB]);
    assert.deepEqual(images.statuses().map((s) => [s.id, s.state]), [["b", "installed"], [
      "a",
      "removed",
    ]]);
    // Still on disk until the TTL passes.
    await assertInstalled(images, a.all);

    clock.t += 30 * DAY - 1;
    assert.deepEqual(await images.removeOutdatedItems(), []);
    clock.t += 2;
    assert.deepEqual(await images.removeOutdatedItems(), [{
      id: "a",
      type: "service",
      version: "1",
    }]);
    assert.deepEqual(env.removed, [{ id: "a", type: "service", version: "1" }]);
    assert.deepEqual(images.statuses().map((s) => s.id), ["b"]);
    for (const blob of a.all.filter((x) => x !== a.layers[0])) {
      assert.equal(await images.hasBlob(blob.digest), false);
    }
    // The layer b shares with a stays.
    await assertInstalled(images, b.all);

    // A removed item asked for again comes back without downloading what is still there.
    clock.t += 1000;
    await images.installItems([]);
    assert.equal(images.statuses()[0]?.state, "removed");
    const before = cloud.seen.length;
    const [again] = await images.downloadItems([itemB], pki.trust);
    assert.equal(again?.state, "pending");
    assert.equal(cloud.seen.length, before);
  });
});

Deno.test("image manager: when space runs short the oldest removed item is evicted", async () => {
  // A partition of `cap` bytes: free space = cap - what install and download hold.
  let cap = Infinity;
  const fs = (dir: string): SpaceFs => ({
    ...realSpaceFs,
    size: async () => {
      const used = await realSpaceFs.usedBy(join(dir, "install")) +
        await realSpaceFs.usedBy(join(dir, "download"));
      return { total: cap, available: Math.max(0, cap - used) };
    },
  });
  await withEnv(async (env) => {
    const { cloud, images, clock } = env;
    const sizes: [number, number] = [10_000, 100_000];
    const a = await cloud.publishImage(9, { layerSizes: sizes });
    const b = await cloud.publishImage(10, { layerSizes: sizes });
    const c = await cloud.publishImage(11, { layerSizes: sizes });
    for (const [id, img] of [["a", a], ["b", b]] as const) {
      clock.t += 1000;
      const item = desired(id, "1", img);
      await images.downloadItems([item], pki.trust);
      await images.installItems([item]);
    }
    clock.t += 1000;
    await images.installItems([]);
    assert.deepEqual(images.statuses().map((s) => [s.id, s.state]), [["a", "removed"], [
      "b",
      "removed",
    ]]);

    // Room for c's small blobs and its big layer's download, not for installing it as well.
    const used = await realSpaceFs.usedBy(join(env.dir, "install"));
    cap = used + 150_000;
    const [s] = await images.downloadItems([desired("c", "1", c)], pki.trust);
    assert.equal(s?.state, "pending", s?.error?.message ?? "");
    assert.deepEqual(env.removed.map((r) => r.id), ["a"]);
    assert.deepEqual(images.statuses().map((x) => [x.id, x.state]).sort(), [
      ["b", "removed"],
      ["c", "pending"],
    ]);
    for (const blob of a.all) assert.equal(await images.hasBlob(blob.digest), false);
    await assertInstalled(images, [...b.all, ...c.all]);
  }, { fs });
});

Deno.test("image manager: a new desired set cancels the download of an item it no longer lists", async () => {
  await withEnv(async (env) => {
    const { cloud, images } = env;
    const slow = await cloud.publishImage(12, { layerSizes: [1000, 200_000] });
    const next = await cloud.publishImage(13);
    const gate = cloud.gate(slow.layers[1]!.digest, 50_000);

    const first = images.downloadItems([desired("slow", "1", slow)], pki.trust);
    const part = join(
      env.dir,
      "download",
      "blobs",
      "sha256",
      `${slow.layers[1]!.digest.slice(7)}.part`,
    );
    for (let i = 0; i < 1000; i++) {
      if (((await Deno.stat(part).catch(() => null))?.size ?? 0) >= 50_000) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const second = await images.downloadItems([desired("next", "1", next)], pki.trust);
    const [canceled] = await first;
    gate.release();

    assert.equal(canceled?.state, "failed");
    assert.equal(canceled?.error?.code, "canceled");
    assert.match(canceled!.error!.message, /Download of item slow 1 canceled: no longer desired/);
    assert.equal(second[0]?.state, "pending");
    assert.deepEqual(images.statuses().map((s) => s.id), ["next"]);
    const paused = env.alerts.filter((a) => a.digest === slow.layers[1]!.digest);
    assert.equal(paused.at(-1)?.state, "paused");
    // Nothing of the canceled item is kept: its finished blobs were orphans, its part file gone.
    for (const blob of slow.all) assert.equal(await images.hasBlob(blob.digest), false);
    assert.deepEqual(await listFiles(join(env.dir, "download")), []);

    // cancel() stops everything in flight.
    const again = await cloud.publishImage(14, { layerSizes: [1000, 200_000] });
    const gate2 = cloud.gate(again.layers[1]!.digest, 10_000);
    const pending = images.downloadItems([desired("again", "1", again)], pki.trust);
    while (!env.alerts.some((a) => a.digest === again.layers[1]!.digest)) {
      await new Promise((r) => setTimeout(r, 5));
    }
    images.cancel();
    const [c] = await pending;
    gate2.release();
    assert.equal(c?.error?.code, "canceled");
    // "next" was pending and is not in the latest set: its row went too (upstream rule).
    assert.deepEqual(images.statuses(), []);
  });
});

Deno.test("image manager: a restarted manager reuses installed blobs and keeps states", async () => {
  await withEnv(async (env) => {
    const { cloud, images } = env;
    const image: TestImage = await cloud.publishImage(15);
    const item = desired("svc", "1", image);
    await images.downloadItems([item], pki.trust);
    await images[Symbol.asyncDispose]();

    await using reopened = await env.reopen();
    assert.deepEqual(reopened.statuses().map((s) => s.state), ["pending"]);
    const before = cloud.seen.length;
    const [s] = await reopened.downloadItems([item], pki.trust);
    assert.equal(s?.state, "pending");
    assert.equal(cloud.seen.length, before);
    // A corrupted blob on disk is detected by its hash and fetched again.
    await Deno.writeFile(reopened.blobPath(image.layers[0]!.digest), new Uint8Array([1, 2, 3]));
    const [inst] = await reopened.installItems([item]);
    assert.equal(inst?.state, "failed");
    assert.match(inst!.error!.message, /is missing or does not match its digest/);
    const [re] = await reopened.downloadItems([item], pki.trust);
    assert.equal(re?.state, "pending");
    assert.equal(cloud.count(image.layers[0]!.digest), 2);
    await assertInstalled(reopened, image.all);
  });
});

Deno.test("image manager: a new version replaces the installed one; at most two versions per item", async () => {
  await withEnv(async (env) => {
    const { cloud, images, clock } = env;
    const v1 = await cloud.publishImage(16);
    const v2 = await cloud.publishImage(17);
    const v3 = await cloud.publishImage(18);
    await images.downloadItems([desired("svc", "1", v1)], pki.trust);
    await images.installItems([desired("svc", "1", v1)]);

    clock.t += 1000;
    const [p2] = await images.downloadItems([desired("svc", "2", v2)], pki.trust);
    assert.equal(p2?.state, "pending");
    assert.deepEqual(images.statuses().map((s) => [s.version, s.state]), [
      ["1", "installed"],
      ["2", "pending"],
    ]);
    // The cloud changes its mind before install: v2 goes, v3 comes; v1 stays installed.
    clock.t += 1000;
    await images.downloadItems([desired("svc", "3", v3)], pki.trust);
    assert.deepEqual(images.statuses().map((s) => [s.version, s.state]), [
      ["1", "installed"],
      ["3", "pending"],
    ]);
    for (const b of v2.all) assert.equal(await images.hasBlob(b.digest), false);

    clock.t += 1000;
    const [i3] = await images.installItems([desired("svc", "3", v3)]);
    assert.equal(i3?.state, "installed");
    assert.deepEqual(images.statuses().map((s) => [s.version, s.state]), [["3", "installed"]]);
    assert.deepEqual(env.removed, [{ id: "svc", type: "service", version: "1" }]);
    for (const b of v1.all) assert.equal(await images.hasBlob(b.digest), false);
    await assertInstalled(images, v3.all);
  });
});

Deno.test("image manager: bad desired items are refused as a whole", async () => {
  await withEnv(async ({ images }) => {
    const ok = { id: "a", type: "service", version: "1", indexDigest: `sha256:${"0".repeat(64)}` };
    await assert.rejects(
      images.downloadItems([{ ...ok, indexDigest: "sha256:XYZ" }], pki.trust),
      /index digest "sha256:XYZ" is not sha256:<64 hex>/,
    );
    await assert.rejects(
      images.downloadItems([ok, { ...ok, version: "2" }], pki.trust),
      /item a is listed twice/,
    );
    assert.deepEqual(images.statuses(), []);
  });
});

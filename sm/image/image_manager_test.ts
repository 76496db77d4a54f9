import assert from "node:assert/strict";
import { join } from "node:path";
import { AosError } from "@aos/shared/core";
import { MediaType } from "@aos/shared/oci";
import { ImageTables } from "../db.ts";
import { listFiles, listRegular, testEnv, tmpfs } from "./testdata/env.ts";
import { buildImage, layer, randomBytes, rootfsLayer, sha256 } from "./testdata/oci.ts";

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp): Promise<AosError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AosError, `not an AosError: ${err}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, re);
    return err;
  }
  assert.fail("expected a rejection");
}

Deno.test("image: install registers, unpacks, reuses; shared layers are stored once", async () => {
  await using env = await testEnv();
  const base = await rootfsLayer("base");
  const app1 = await layer([{ path: "app/run", data: "one" }]);
  const app2 = await layer([{ path: "app/run", data: "two" }]);
  const img1 = await buildImage(env.store, [app1, base]);
  const img2 = await buildImage(env.store, [app2, base], { itemConfig: { hostname: "two" } });
  const images = await env.open();

  const a = await images.installItem({
    itemId: "svc1",
    version: "1.0.0",
    manifestDigest: img1.manifestDigest,
  });
  assert.equal(a.state, "installed");
  assert.equal(a.itemConfig?.hostname, "svc");
  assert.deepEqual(a.imageConfig?.config?.Cmd, ["/bin/busybox"]);
  // Top-most first: layers[0] of the manifest is the service's own layer.
  assert.deepEqual(a.layerPaths, [
    join(env.imagePath, "layers/sha256", app1.diffId.slice(7), "layer"),
    join(env.imagePath, "layers/sha256", base.diffId.slice(7), "layer"),
  ]);
  assert.equal(await Deno.readTextFile(join(a.layerPaths[0]!, "app/run")), "one");
  assert.equal(
    await Deno.readTextFile(join(a.layerPaths[1]!, "bin/busybox")),
    "#!/bin/sh\necho busybox base\n",
  );
  assert.equal(await Deno.readLink(join(a.layerPaths[1]!, "bin/sh")), "busybox");
  assert.equal(await Deno.readTextFile(a.blobPaths.manifest), JSON.stringify(img1.manifest));
  // Packed layer blobs are not kept; staging is empty.
  assert.deepEqual(
    await listFiles(join(env.imagePath, "blobs/sha256")),
    [
      img1.configDigest.slice(7),
      img1.itemConfigDigest.slice(7),
      img1.manifestDigest.slice(7),
    ].sort(),
  );
  assert.deepEqual(await listFiles(join(env.imagePath, "tmp/downloads/sha256")), []);

  // Same item version again: nothing is fetched.
  const calls = env.source.calls.length;
  const events = env.events.length;
  const again = await images.installItem({
    itemId: "svc1",
    version: "1.0.0",
    manifestDigest: img1.manifestDigest,
  });
  assert.deepEqual(again.layerPaths, a.layerPaths);
  assert.equal(env.source.calls.length, calls);
  assert.equal(env.events.length, events);

  // A second item sharing the base layer: the layer is reused, not downloaded.
  const b = await images.installItem({
    itemId: "svc2",
    version: "1.0.0",
    manifestDigest: img2.manifestDigest,
  });
  assert.equal(b.layerPaths[1], a.layerPaths[1]);
  assert.ok(
    !env.events.some((e) =>
      e.type === "download" && e.itemId === "svc2" && e.digest === base.digest
    ),
  );
  assert.deepEqual(
    await listFiles(join(env.imagePath, "layers/sha256")),
    [
      app1.diffId.slice(7),
      `${app1.diffId.slice(7)}/layer`,
      `${app1.diffId.slice(7)}/layer/app`,
      `${app1.diffId.slice(7)}/layer/app/run`,
      app2.diffId.slice(7),
      `${app2.diffId.slice(7)}/layer`,
      `${app2.diffId.slice(7)}/layer/app`,
      `${app2.diffId.slice(7)}/layer/app/run`,
      base.diffId.slice(7),
      `${base.diffId.slice(7)}/layer`,
      `${base.diffId.slice(7)}/layer/bin`,
      `${base.diffId.slice(7)}/layer/bin/busybox`,
      `${base.diffId.slice(7)}/layer/bin/sh`,
      `${base.diffId.slice(7)}/layer/etc`,
      `${base.diffId.slice(7)}/layer/etc/hostname`,
    ].sort(),
  );
  const tables = new ImageTables(env.db);
  assert.equal(tables.layerRefCount(base.diffId), 2);
  assert.deepEqual(images.listItems().map((r) => r.itemId), ["svc1", "svc2"]);

  // A fresh manager over the same store finds everything intact (full validation at start).
  await images[Symbol.asyncDispose]();
  const reopened = await env.open();
  assert.equal((await reopened.getItem("svc2", "1.0.0"))?.itemConfig?.hostname, "two");
  assert.deepEqual((await reopened.validate()).removed, []);
  assert.equal(await reopened.getLayerPath(base.diffId), a.layerPaths[1]);
});

Deno.test("image: a path-traversal layer fails cleanly and leaves earlier items intact", async () => {
  await using env = await testEnv();
  const good = await buildImage(env.store, [await rootfsLayer("good")]);
  const evil = await buildImage(env.store, [
    await layer([
      { path: "ok.txt", data: "fine" },
      { path: "../../../../escaped.txt", data: "pwned" },
    ]),
  ]);
  const images = await env.open();
  await images.installItem({ itemId: "good", version: "1", manifestDigest: good.manifestDigest });
  const before = await listFiles(env.imagePath);

  await rejectsWith(
    images.installItem({ itemId: "evil", version: "1", manifestDigest: evil.manifestDigest }),
    "invalidArgument",
    /Cannot install item "evil" version "1".*Cannot extract layer sha256:.*"\.\.\/\.\.\/\.\.\/\.\.\/escaped\.txt".*escapes/,
  );
  for (
    const p of [
      "escaped.txt",
      "sm/escaped.txt",
      "sm/images/escaped.txt",
      "sm/images/tmp/escaped.txt",
    ]
  ) {
    await assert.rejects(Deno.stat(join(env.dir, p)), Deno.errors.NotFound, p);
  }
  await assert.rejects(Deno.stat("/escaped.txt"), Deno.errors.NotFound);
  assert.deepEqual(images.listItems().map((r) => r.itemId), ["good"]);
  assert.deepEqual(await listFiles(env.imagePath), before);
  assert.deepEqual((await images.validate()).removed, []);
});

Deno.test("image: a digest mismatch fails with invalidChecksum and leaves nothing", async () => {
  await using env = await testEnv();
  const l = await rootfsLayer("x");
  const img = await buildImage(env.store, [l]);
  // The server now answers the layer's URL with other bytes of the same size.
  const wrong = l.blob.slice();
  wrong[wrong.length - 9]! ^= 0xff;
  await env.store.put(wrong, l.digest);
  const images = await env.open();
  await rejectsWith(
    images.installItem({ itemId: "svc", version: "1", manifestDigest: img.manifestDigest }),
    "invalidChecksum",
    new RegExp(`Cannot install item "svc".*${l.digest.slice(0, 19)}`),
  );
  assert.deepEqual(images.listItems(), []);
  assert.deepEqual(await listRegular(env.imagePath), []);
});

Deno.test("image: a layer whose content does not match its diffID is refused", async () => {
  await using env = await testEnv();
  const l = await rootfsLayer("x");
  const other = await rootfsLayer("y");
  const img = await buildImage(env.store, [l], { diffIds: [other.diffId] });
  const images = await env.open();
  await rejectsWith(
    images.installItem({ itemId: "svc", version: "1", manifestDigest: img.manifestDigest }),
    "invalidChecksum",
    /unpacks to sha256:.*not its diffID/,
  );
  assert.deepEqual(images.listItems(), []);
  assert.deepEqual(await listRegular(env.imagePath), []);
});

Deno.test("image: malformed documents and unknown media types give clear errors", async () => {
  await using env = await testEnv();
  const images = await env.open();
  const install = (manifestDigest: string, itemId = "bad") =>
    images.installItem({ itemId, version: "1", manifestDigest });

  const notJson = await env.store.put(new TextEncoder().encode("{ not json"));
  await rejectsWith(install(notJson), "invalidArgument", /manifest sha256:.* is not JSON/);

  const wrongShape = await env.store.putJson({ schemaVersion: 2, config: { digest: "x" } });
  await rejectsWith(
    install(wrongShape),
    "invalidArgument",
    /Invalid image manifest .*key "config\./,
  );

  const unknownType = await env.store.putJson({
    schemaVersion: 2,
    mediaType: "application/vnd.example.weird+json",
  });
  await rejectsWith(
    install(unknownType),
    "notSupported",
    /unknown media type "application\/vnd\.example\.weird\+json"/,
  );

  const l = await rootfsLayer("z");
  const zstd = await buildImage(env.store, [{ ...l, mediaType: MediaType.ociLayerTarZstd }]);
  await rejectsWith(
    install(zstd.manifestDigest),
    "notSupported",
    /layer 0 sha256:.*not an extractable layer/,
  );

  const badItemConfig = await buildImage(env.store, [l], {
    manifestPatch: {
      aosItemConfig: { mediaType: "text/plain", digest: l.digest, size: l.blob.length },
    },
  });
  await rejectsWith(
    install(badItemConfig.manifestDigest),
    "notSupported",
    /item config .* unknown media type "text\/plain"/,
  );

  const tooFewDiffIds = await buildImage(env.store, [l, await rootfsLayer("w")], {
    diffIds: [l.diffId],
  });
  await rejectsWith(
    install(tooFewDiffIds.manifestDigest),
    "invalidArgument",
    /1 diff_ids for 2 layers/,
  );

  await rejectsWith(install("sha256:abc"), "invalidArgument", /Invalid digest/);
  await rejectsWith(install(sha256(new Uint8Array([1]))), "notFound", /the CM has no URL for blob/);
  await rejectsWith(install(notJson, "../x\n"), "invalidArgument", /item id/);

  assert.deepEqual(images.listItems(), []);
  assert.deepEqual(await listFiles(join(env.imagePath, "blobs")), ["sha256"]);
});

Deno.test("image: an index digest resolves to its manifest", async () => {
  await using env = await testEnv();
  const img = await buildImage(env.store, [await rootfsLayer("i")]);
  const manifestBytes = await Deno.readFile(env.store.path(img.manifestDigest));
  const indexDigest = await env.store.putJson({
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [{
      mediaType: MediaType.ociManifest,
      digest: img.manifestDigest,
      size: manifestBytes.length,
      platform: { architecture: "amd64", os: "linux" },
    }],
  });
  const images = await env.open({ platform: { architecture: "amd64" } });
  const item = await images.installItem({
    itemId: "idx",
    version: "1",
    manifestDigest: indexDigest,
  });
  assert.equal(item.manifestDigest, indexDigest);
  assert.equal(item.resolvedManifestDigest, img.manifestDigest);
  assert.equal(item.index?.manifests.length, 1);
  assert.equal(item.layerPaths.length, 1);
});

Deno.test("image: components are stored as is", async () => {
  await using env = await testEnv();
  const blob = new TextEncoder().encode("firmware image bytes");
  const l = {
    blob,
    digest: sha256(blob),
    diffId: sha256(blob),
    mediaType: MediaType.aosComponentFullGzip,
  };
  const img = await buildImage(env.store, [l]);
  const images = await env.open();
  const item = await images.installItem({
    itemId: "fw",
    version: "1",
    manifestDigest: img.manifestDigest,
    type: "component",
  });
  assert.deepEqual(item.layerPaths, []);
  assert.deepEqual(item.layerDigests, [l.digest]);
  assert.deepEqual(await Deno.readFile(item.blobPaths.layers[0]!), blob);
});

Deno.test("image: removal keeps the item until TTL; unshared layers go, shared stay", async () => {
  await using env = await testEnv();
  const base = await rootfsLayer("base");
  const own = await layer([{ path: "own", data: "1" }]);
  const img1 = await buildImage(env.store, [own, base]);
  const img2 = await buildImage(env.store, [base], { itemConfig: { hostname: "2" } });
  const ttl = 30 * 24 * 3600 * 1000;
  const removed: string[] = [];
  const images = await env.open({
    updateItemTtlMs: ttl,
    onItemRemoved: (i) => removed.push(`${i.itemId}@${i.version}`),
  });
  const a = await images.installItem({
    itemId: "a",
    version: "1",
    manifestDigest: img1.manifestDigest,
  });
  await images.installItem({ itemId: "b", version: "1", manifestDigest: img2.manifestDigest });

  assert.equal(await images.removeItem("a", "1"), true);
  assert.equal(await images.removeItem("nope", "1"), false);
  const t0 = env.clock.t;
  assert.equal((await images.getItem("a", "1"))?.state, "removed");
  assert.deepEqual(await images.removeOutdated(t0 + ttl - 1), []);
  assert.ok((await Deno.stat(a.layerPaths[0]!)).isDirectory);

  assert.deepEqual((await images.removeOutdated(t0 + ttl)).map((r) => r.itemId), ["a"]);
  assert.deepEqual(removed, ["a@1"]);
  assert.equal(await images.getItem("a", "1"), undefined);
  await assert.rejects(Deno.stat(a.layerPaths[0]!), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(a.blobPaths.manifest), Deno.errors.NotFound);
  assert.ok((await Deno.stat(a.layerPaths[1]!)).isDirectory, "shared base layer stays");
  assert.deepEqual((await images.validate()).removed, []);
});

Deno.test("image: a removed item installed again is restored without downloads", async () => {
  await using env = await testEnv();
  const img = await buildImage(env.store, [await rootfsLayer("r")]);
  const images = await env.open();
  const req = { itemId: "r", version: "1", manifestDigest: img.manifestDigest };
  await images.installItem(req);
  await images.removeItem("r", "1");
  assert.equal(env.space.partitions()[0]?.outdated.length, 1);
  const downloads = env.events.filter((e) => e.type === "download").length;
  const item = await images.installItem(req);
  assert.equal(item.state, "installed");
  assert.equal(env.events.filter((e) => e.type === "download").length, downloads);
  assert.equal(env.space.partitions()[0]?.outdated.length, 0);

  // Removed again and tampered with: restoring it re-validates and unpacks the layer anew.
  await images.removeItem("r", "1");
  await Deno.writeTextFile(join(item.layerPaths[0]!, "etc/hostname"), "tampered\n");
  const restored = await images.installItem(req);
  assert.equal(await Deno.readTextFile(join(restored.layerPaths[0]!, "etc/hostname")), "r\n");
  assert.equal(env.events.filter((e) => e.type === "download").length, downloads + 1);
  assert.deepEqual((await images.validate()).removed, []);
});

Deno.test("image: at most two versions per item, removed ones go first", async () => {
  await using env = await testEnv();
  const images = await env.open();
  const versions = ["1", "2", "3"];
  for (const v of versions) {
    const img = await buildImage(env.store, [await rootfsLayer(`v${v}`)]);
    env.clock.t += 1000;
    await images.installItem({ itemId: "svc", version: v, manifestDigest: img.manifestDigest });
  }
  assert.deepEqual(images.listItems().map((r) => r.version), ["2", "3"]);
  // With 2 removed and 3 installed, version 4 replaces the removed one, not the older installed.
  await images.removeItem("svc", "3");
  const img4 = await buildImage(env.store, [await rootfsLayer("v4")]);
  env.clock.t += 1000;
  await images.installItem({ itemId: "svc", version: "4", manifestDigest: img4.manifestDigest });
  assert.deepEqual(images.listItems().map((r) => r.version), ["2", "4"]);
  assert.deepEqual((await images.validate()).removed, []);
  assert.equal(
    (await listFiles(join(env.imagePath, "layers/sha256"))).filter((p) => !p.includes("/")).length,
    2,
  );
});

Deno.test("image: validate removes an item whose unpacked layer was altered", async () => {
  await using env = await testEnv();
  const img = await buildImage(env.store, [await rootfsLayer("v")]);
  const images = await env.open();
  const item = await images.installItem({
    itemId: "v",
    version: "1",
    manifestDigest: img.manifestDigest,
  });
  await Deno.writeTextFile(join(item.layerPaths[0]!, "etc/hostname"), "tampered\n");
  const res = await images.validate();
  assert.deepEqual(res.removed.map((r) => [r.itemId, r.reason]), [[
    "v",
    `layer ${img.layers[0]!.diffId.slice(0, 19)}… content changed`,
  ]]);
  assert.deepEqual(images.listItems(), []);
  assert.deepEqual(await listFiles(join(env.imagePath, "layers/sha256")), []);
  // And it can be installed again.
  await images.installItem({ itemId: "v", version: "1", manifestDigest: img.manifestDigest });
});

const isRoot = Deno.uid() === 0;

Deno.test({
  name: `image: space pressure evicts removed items oldest first${
    isRoot ? "" : " [SKIPPED: needs root for a tmpfs]"
  }`,
  ignore: !isRoot,
  fn: async () => {
    const MiB = 1024 * 1024;
    await using fs = await tmpfs("8m");
    await using env = await testEnv({ imagePath: join(fs.dir, "images") });
    const big = async (tag: string, size: number) =>
      await buildImage(env.store, [
        await layer([{ path: `data-${tag}`, data: randomBytes(size) }]),
      ]);
    const [a, b, c, huge] = [
      await big("a", 2 * MiB),
      await big("b", 2 * MiB),
      await big("c", 2.5 * MiB),
      await big("huge", 6 * MiB),
    ];
    const removed: string[] = [];
    const images = await env.open({ onItemRemoved: (i) => removed.push(i.itemId) });
    const ia = await images.installItem({
      itemId: "a",
      version: "1",
      manifestDigest: a.manifestDigest,
    });
    await images.installItem({ itemId: "b", version: "1", manifestDigest: b.manifestDigest });
    env.clock.t += 1000;
    await images.removeItem("a", "1");
    env.clock.t += 1000;
    await images.removeItem("b", "1");

    // c does not fit next to a and b: the older removed item (a) is evicted, b is kept.
    await images.installItem({ itemId: "c", version: "1", manifestDigest: c.manifestDigest });
    assert.deepEqual(removed, ["a"]);
    assert.deepEqual(images.listItems().map((r) => [r.itemId, r.state]), [
      ["b", "removed"],
      ["c", "installed"],
    ]);
    await assert.rejects(Deno.stat(ia.layerPaths[0]!), Deno.errors.NotFound);

    // Nothing can make room for 6 MiB: refused up front, and b is not sacrificed for nothing.
    await rejectsWith(
      images.installItem({ itemId: "huge", version: "1", manifestDigest: huge.manifestDigest }),
      "noMemory",
      /Cannot install item "huge".*not enough space/,
    );
    assert.deepEqual(removed, ["a"]);
    assert.deepEqual(images.listItems().map((r) => r.itemId), ["b", "c"]);
    assert.deepEqual((await images.validate()).removed, []);
    assert.deepEqual(await listRegular(join(env.imagePath, "tmp")), []);
  },
});

Deno.test("image: concurrent installs share a layer and a same-version request", async () => {
  await using env = await testEnv();
  const base = await rootfsLayer("shared");
  const imgs = await Promise.all(
    ["a", "b", "c"].map(async (t) =>
      await buildImage(env.store, [await layer([{ path: t, data: t }]), base])
    ),
  );
  const images = await env.open();
  const [a1, a2, b, c] = await Promise.all([
    images.installItem({ itemId: "a", version: "1", manifestDigest: imgs[0]!.manifestDigest }),
    images.installItem({ itemId: "a", version: "1", manifestDigest: imgs[0]!.manifestDigest }),
    images.installItem({ itemId: "b", version: "1", manifestDigest: imgs[1]!.manifestDigest }),
    images.installItem({ itemId: "c", version: "1", manifestDigest: imgs[2]!.manifestDigest }),
  ]);
  assert.deepEqual(a1, a2);
  assert.equal(b.layerPaths[1], a1.layerPaths[1]);
  assert.equal(c.layerPaths[1], a1.layerPaths[1]);
  const extracts = env.events.filter((e) => e.type === "extract" && e.digest === base.diffId);
  assert.equal(extracts.length, 1);
  assert.deepEqual(images.listItems().map((r) => r.itemId).sort(), ["a", "b", "c"]);
  assert.deepEqual((await images.validate()).removed, []);
});

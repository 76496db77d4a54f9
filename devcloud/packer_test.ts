import assert from "node:assert/strict";
import { join } from "node:path";
import { hashFileHex } from "@aos/shared/crypto";
import { extractLayerFile } from "@aos/shared/layer";
import {
  loadImageConfig,
  loadImageIndex,
  loadImageManifest,
  loadItemConfig,
  MediaType,
  parseDigest,
} from "@aos/shared/oci";
import { loadServiceDir, packService, serviceManifestSchema } from "./packer.ts";

function blobPath(blobsDir: string, digest: string): string {
  return join(blobsDir, "sha256", parseDigest(digest).hex);
}

async function makeRootfs(dir: string): Promise<void> {
  await Deno.mkdir(join(dir, "bin"), { recursive: true });
  await Deno.mkdir(join(dir, "etc/app"), { recursive: true });
  await Deno.writeTextFile(join(dir, "bin/hello"), "#!/bin/sh\necho hello\n", { mode: 0o755 });
  await Deno.writeTextFile(join(dir, "etc/app/config"), "greeting=hi\n");
  await Deno.symlink("hello", join(dir, "bin/hi"));
}

Deno.test("packer: a rootfs directory becomes an Aos service image the shared readers accept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_packer_" });
  try {
    const rootfs = join(dir, "rootfs");
    await makeRootfs(rootfs);
    const blobs = join(dir, "blobs");
    const manifest = serviceManifestSchema.parse({
      name: "hello",
      version: "1.0.0",
      cmd: ["/bin/hello"],
      env: ["A=1"],
      workingDir: "/",
      quotas: { cpuDMIPSLimit: 1000, ramLimit: 64 * 1024 * 1024, pidsLimit: 16 },
      runParameters: { startInterval: "5s", startBurst: 3, restartInterval: "1s" },
      runtimes: ["runc"],
    });
    const packed = await packService({ source: rootfs, manifest, blobsDir: blobs });

    const index = await loadImageIndex(blobPath(blobs, packed.index.digest));
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0]?.digest, packed.manifest.digest);
    assert.equal(index.manifests[0]?.mediaType, MediaType.ociManifest);

    const m = await loadImageManifest(blobPath(blobs, packed.manifest.digest));
    assert.equal(m.aosItemConfig?.mediaType, MediaType.aosItemConfig);
    assert.equal(m.aosItemConfig?.digest, packed.itemConfig.digest);
    assert.equal(m.config.mediaType, MediaType.ociConfig);
    assert.deepEqual(m.layers.map((l) => l.mediaType), [MediaType.ociLayerTarGzip]);

    const config = await loadImageConfig(blobPath(blobs, packed.config.digest));
    assert.deepEqual(config.rootfs.diff_ids, [packed.diffId]);
    assert.deepEqual(config.config?.Cmd, ["/bin/hello"]);
    assert.deepEqual(config.config?.Env, ["A=1"]);
    assert.equal(config.config?.WorkingDir, "/");
    assert.equal(config.os, "linux");

    const item = await loadItemConfig(blobPath(blobs, packed.itemConfig.digest));
    assert.equal(item.quotas?.pidsLimit, 16);
    assert.equal(item.runParameters?.startBurst, 3);
    assert.deepEqual(item.runtimes, [{ codename: "runc" }]);
    assert.equal((item as Record<string, unknown>).cmd, undefined);

    // Every blob is stored under its digest with its size.
    for (
      const d of [packed.index, packed.manifest, packed.config, packed.itemConfig, packed.layer]
    ) {
      const path = blobPath(blobs, d.digest);
      assert.equal(`sha256:${await hashFileHex("sha256", path)}`, d.digest);
      assert.equal((await Deno.stat(path)).size, d.size);
    }

    const target = join(dir, "out");
    await Deno.mkdir(target);
    await extractLayerFile(blobPath(blobs, packed.layer.digest), target, { chown: false });
    assert.equal(await Deno.readTextFile(join(target, "etc/app/config")), "greeting=hi\n");
    assert.equal(await Deno.readLink(join(target, "bin/hi")), "hello");
    assert.equal((await Deno.stat(join(target, "bin/hello"))).mode! & 0o777, 0o755);

    // Same inputs, same digests: a re-deploy of an unchanged service is a no-op on the unit.
    const again = await packService({ source: rootfs, manifest, blobsDir: blobs });
    assert.equal(again.index.digest, packed.index.digest);

    // The layer as a .tar.gz source gives the same layer and diff ID.
    const tgz = join(dir, "rootfs.tar.gz");
    await Deno.copyFile(blobPath(blobs, packed.layer.digest), tgz);
    const fromTgz = await packService({ source: tgz, manifest, blobsDir: join(dir, "b2") });
    assert.equal(fromTgz.layer.digest, packed.layer.digest);
    assert.equal(fromTgz.diffId, packed.diffId);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("packer: extra layers become more blobs, in manifest and diff_ids order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_packer_" });
  try {
    const rootfs = join(dir, "rootfs");
    await makeRootfs(rootfs);
    const extra = join(dir, "extra");
    await Deno.mkdir(join(extra, "data"), { recursive: true });
    await Deno.writeTextFile(join(extra, "data/more.txt"), "more\n");
    const blobs = join(dir, "blobs");
    const manifest = serviceManifestSchema.parse({ name: "two", version: "1", cmd: ["/bin/hi"] });
    const packed = await packService({
      source: rootfs,
      manifest,
      blobsDir: blobs,
      layers: [extra],
    });
    assert.equal(packed.layers.length, 2);
    assert.equal(packed.layers[0]?.digest, packed.layer.digest);
    const m = await loadImageManifest(blobPath(blobs, packed.manifest.digest));
    assert.deepEqual(m.layers.map((l) => l.digest), packed.layers.map((l) => l.digest));
    const config = await loadImageConfig(blobPath(blobs, packed.config.digest));
    assert.equal(config.rootfs.diff_ids.length, 2);
    assert.equal(config.rootfs.diff_ids[0], packed.diffId);
    const target = join(dir, "out");
    await Deno.mkdir(target);
    await extractLayerFile(blobPath(blobs, packed.layers[1]!.digest), target, { chown: false });
    assert.equal(await Deno.readTextFile(join(target, "data/more.txt")), "more\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("packer: service directories and bad input", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_packer_" });
  try {
    const svc = join(dir, "svc");
    await makeRootfs(join(svc, "rootfs"));
    await Deno.writeTextFile(
      join(svc, "service.json"),
      JSON.stringify({ version: "2.0.0", cmd: ["/bin/hello"] }),
    );
    const loaded = await loadServiceDir(svc);
    assert.equal(loaded.manifest.name, "svc");
    assert.equal(loaded.source, join(svc, "rootfs"));

    await Deno.writeTextFile(join(svc, "service.json"), JSON.stringify({ version: "2.0.0" }));
    await assert.rejects(loadServiceDir(svc), /Invalid .*service\.json: cmd/);
    await assert.rejects(loadServiceDir(join(dir, "missing")), /Cannot read/);

    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    const manifest = serviceManifestSchema.parse({ name: "e", version: "1", cmd: ["x"] });
    await assert.rejects(
      packService({ source: empty, manifest, blobsDir: join(dir, "b") }),
      /rootfs directory is empty/,
    );
    const notGzip = join(dir, "bad.tgz");
    await Deno.writeTextFile(notGzip, "plain text");
    await assert.rejects(
      packService({ source: notGzip, manifest, blobsDir: join(dir, "b") }),
      /not a gzip tar archive/,
    );
    await assert.rejects(
      packService({
        source: join(svc, "rootfs"),
        manifest: { ...manifest, quotas: { ramLimit: -1 } },
        blobsDir: join(dir, "b"),
      }),
      /quotas\.ramLimit/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

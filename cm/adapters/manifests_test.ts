import assert from "node:assert/strict";
import { join } from "node:path";
import { packService } from "../../devcloud/packer.ts";
import { ImageManifestSource } from "./manifests.ts";

Deno.test("manifest source: platform and item config of a packed service; a missing blob is notFound", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cm_manifests_" });
  try {
    await Deno.mkdir(join(dir, "rootfs"));
    await Deno.writeTextFile(join(dir, "rootfs/hello"), "hi\n");
    const image = await packService({
      source: join(dir, "rootfs"),
      manifest: {
        name: "svc",
        version: "1.0.0",
        cmd: ["/hello"],
        env: [],
        os: "linux",
        architecture: "amd64",
        runtimes: ["runc"],
        quotas: { stateLimit: 1024 },
      },
      blobsDir: join(dir, "blobs"),
    });
    const path = (d: string) => join(dir, "blobs", ...d.split(":"));
    const source = new ImageManifestSource({
      hasBlob: async (d) => await Deno.stat(path(d)).then(() => true, () => false),
      blobPath: path,
    });
    const item = { itemId: "svc", version: "1.0.0", indexDigest: image.index.digest };
    const [m, ...rest] = await source.manifests(item);
    assert.equal(rest.length, 0);
    assert.equal(m?.digest, image.manifest.digest);
    assert.deepEqual(m?.platform, { architecture: "amd64", os: "linux" });
    assert.deepEqual(m?.itemConfig.runtimes, ["runc"]);
    assert.equal(m?.itemConfig.quotas?.stateLimit, 1024);

    await Deno.remove(path(image.itemConfig.digest));
    await assert.rejects(source.manifests(item), (e: Error & { code?: string }) => {
      assert.equal(e.code, "notFound");
      assert.match(e.message, /Cannot run item svc 1\.0\.0: blob sha256:.* is not stored/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

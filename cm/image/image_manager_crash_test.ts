import assert from "node:assert/strict";
import { join } from "node:path";
import { openDatabase } from "@aos/shared/db";
import { desired, fileSha256, makePki, TestCloud } from "./_test_fixture.ts";
import { CM_IMAGE_MIGRATIONS, ImageItemTable } from "./mod.ts";

const pki = await makePki();

Deno.test("image manager: after kill -9 mid-download, finished blobs are not fetched again and the layer resumes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cm-image-crash-" });
  try {
    await using cloud = new TestCloud(pki);
    const image = await cloud.publishImage(1, { layerSizes: [5_000, 300_000] });
    const big = image.layers[1]!;
    const first = 100_000;
    cloud.gate(big.digest, first);
    const spec = join(dir, "spec.json");
    await Deno.writeTextFile(
      spec,
      JSON.stringify({
        infos: cloud.infos,
        trust: pki.trust,
        rootPem: pki.rootPem,
        items: [desired("svc", "1.0.0", image)],
      }),
    );
    const script = new URL("./testdata/download_child.ts", import.meta.url).pathname;
    const spawn = () =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--allow-net=127.0.0.1:${new URL(cloud.base).port}`,
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          // The space allocator reads free space with statfs.
          "--allow-sys=statfs",
          script,
          dir,
          spec,
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();

    const part = join(dir, "download", "blobs", "sha256", `${big.digest.slice(7)}.part`);
    const child = spawn();
    let exited = false;
    child.status.then(() => (exited = true));
    let got = 0;
    for (let i = 0; i < 3000 && got < first && !exited; i++) {
      await new Promise((r) => setTimeout(r, 10));
      got = (await Deno.stat(part).catch(() => null))?.size ?? 0;
    }
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone: the output below says why.
    }
    const killed = await child.output();
    assert.equal(
      got,
      first,
      `the first process received the first part of the big layer: ${
        new TextDecoder().decode(killed.stderr)
      }`,
    );
    assert.equal(killed.signal, "SIGKILL");

    // What the killed process left: the row says downloading, the finished blobs are installed.
    {
      using db = openDatabase({ path: join(dir, "cm.db"), migrations: CM_IMAGE_MIGRATIONS });
      const table = new ImageItemTable(db);
      assert.equal(table.get("svc", "1.0.0")?.state, "downloading");
    }
    const done = image.all.filter((b) => b !== big);
    for (const b of done) {
      const path = join(dir, "install", "blobs", "sha256", b.digest.slice(7));
      assert.equal(`sha256:${await fileSha256(path)}`, b.digest);
      assert.equal(cloud.count(b.digest), 1);
    }

    const out = await spawn().output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const statuses = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(statuses, [{
      id: "svc",
      type: "service",
      version: "1.0.0",
      state: "pending",
    }]);
    // Each finished blob was requested once in all; the layer continued where it stopped.
    for (const b of done) assert.equal(cloud.count(b.digest), 1, b.digest);
    assert.deepEqual(cloud.ranges(big.digest), [null, `bytes=${first}-`]);
    for (const b of image.all) {
      const path = join(dir, "install", "blobs", "sha256", b.digest.slice(7));
      assert.equal(`sha256:${await fileSha256(path)}`, b.digest);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { ImageTables } from "../db.ts";
import type { InstallRequest } from "./image_manager.ts";
import { listRegular, type TestEnv, testEnv } from "./testdata/env.ts";
import { buildImage, layer, randomBytes, rootfsLayer } from "./testdata/oci.ts";

const fixture = new URL("./testdata/install_child.ts", import.meta.url).pathname;

/**
 * Runs the install child and SIGKILLs it once `killWhen` resolves (it receives every event line
 * the child prints). Fails when the child ends on its own.
 */
async function runAndKill(
  env: TestEnv,
  args: { urls: Record<string, string[]>; request: InstallRequest; hangInMknod?: boolean },
  killWhen: (events: AsyncIterable<{ type: string; digest?: string }>) => Promise<void>,
): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      // Unscoped: Deno creates symlinks (layers have them) only with unscoped read and write.
      "--allow-read",
      "--allow-write",
      "--allow-net=127.0.0.1",
      "--allow-sys=statfs",
      fixture,
      JSON.stringify({ workingDir: env.workingDir, imagePath: env.imagePath, ...args }),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter());
  const events = (async function* () {
    for await (const line of lines) yield JSON.parse(line) as { type: string; digest?: string };
  })();
  let killed = false;
  try {
    await killWhen(events);
    child.kill("SIGKILL");
    killed = true;
  } finally {
    if (!killed) child.kill("SIGKILL");
    await events.return(undefined);
    const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
    assert.equal(status.signal, "SIGKILL", `the child ended on its own: ${stderr}`);
  }
}

function lineSplitter(): TransformStream<string, string> {
  let buf = "";
  return new TransformStream({
    transform(chunk, c) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        c.enqueue(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    },
  });
}

async function until(
  events: AsyncIterable<{ type: string; digest?: string }>,
  type: string,
  digest?: string,
): Promise<void> {
  for await (const e of events) {
    if (e.type === type && (digest === undefined || e.digest === digest)) return;
  }
  throw new Error(`the child ended without reporting "${type}"`);
}

/** Serves one blob: the first half at once, then nothing until the client goes away. */
function stallingServer(body: Uint8Array) {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    let sent = false;
    const stream = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (!sent) {
          sent = true;
          c.enqueue(body.subarray(0, body.length >> 1));
          return;
        }
        await released;
        c.close();
      },
      cancel: () => release(),
    });
    return new Response(stream, { headers: { "content-length": String(body.length) } });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/blob`,
    async [Symbol.asyncDispose]() {
      release();
      await server.shutdown();
    },
  };
}

/** The store must agree with the database: nothing on disk that is not registered. */
async function assertConsistent(env: TestEnv, expectItems: string[]): Promise<void> {
  const images = await env.open();
  const tables = new ImageTables(env.db);
  assert.deepEqual(images.listItems().map((r) => r.itemId), expectItems);
  assert.deepEqual(await listRegular(join(env.imagePath, "tmp")), []);
  const expected = new Set<string>();
  for (const b of tables.listBlobs()) expected.add(`blobs/sha256/${b.digest.slice(7)}`);
  const layerPrefixes = tables.listLayers().map((l) => `layers/sha256/${l.diffDigest.slice(7)}/`);
  for (const f of await listRegular(env.imagePath)) {
    if (expected.delete(f)) continue;
    assert.ok(layerPrefixes.some((p) => f.startsWith(p)), `unregistered file left: ${f}`);
  }
  assert.deepEqual([...expected], [], "registered blobs missing on disk");
  assert.deepEqual((await images.validate()).removed, []);
  await images[Symbol.asyncDispose]();
}

Deno.test("image crash: killed mid-download, a restart cleans up and a retry succeeds", async () => {
  await using env = await testEnv();
  const earlier = await buildImage(env.store, [await rootfsLayer("earlier")]);
  const small = await rootfsLayer("small");
  const big = await layer([{ path: "big.bin", data: randomBytes(512 * 1024) }]);
  const img = await buildImage(env.store, [small, big]);
  {
    const images = await env.open();
    await images.installItem({
      itemId: "earlier",
      version: "1",
      manifestDigest: earlier.manifestDigest,
    });
    await images[Symbol.asyncDispose]();
  }

  await using stall = stallingServer(big.blob);
  const urls: Record<string, string[]> = {};
  for (const d of [img.manifestDigest, img.configDigest, img.itemConfigDigest, small.digest]) {
    urls[d] = [env.server.urlFor(d)];
  }
  urls[big.digest] = [stall.url];
  const request = { itemId: "svc", version: "1", manifestDigest: img.manifestDigest };
  const part = join(env.imagePath, "tmp/downloads/sha256", `${big.digest.slice(7)}.part`);
  await runAndKill(env, { urls, request }, async (events) => {
    await until(events, "download", big.digest);
    // Bytes of the big layer on disk prove the child is mid-download.
    while ((await Deno.stat(part).then((s) => s.size, () => 0)) === 0) {
      await new Promise((r) => setTimeout(r, 5));
    }
  });

  // The kill left a partial download, placed blobs and an unpacked layer, none registered.
  assert.ok((await Deno.stat(part)).size > 0);
  assert.ok(
    (await Deno.stat(join(env.imagePath, "layers/sha256", small.diffId.slice(7)))).isDirectory,
  );
  assert.ok(
    (await Deno.stat(join(env.imagePath, "blobs/sha256", img.manifestDigest.slice(7)))).isFile,
  );
  assert.deepEqual(new ImageTables(env.db).listItems().map((r) => r.itemId), ["earlier"]);

  await assertConsistent(env, ["earlier"]);
  await assert.rejects(Deno.stat(join(env.imagePath, "layers/sha256", small.diffId.slice(7))));

  const images = await env.open();
  const item = await images.installItem(request);
  assert.equal(item.layerPaths.length, 2);
  assert.equal((await Deno.stat(join(item.layerPaths[1]!, "big.bin"))).size, 512 * 1024);
  await images[Symbol.asyncDispose]();
  await assertConsistent(env, ["earlier", "svc"]);
});

Deno.test("image crash: killed mid-extraction, a restart cleans up and a retry succeeds", async () => {
  await using env = await testEnv();
  const earlier = await buildImage(env.store, [await rootfsLayer("earlier")]);
  const files = Array.from({ length: 200 }, (_, i) => ({ path: `many/f${i}`, data: `file ${i}` }));
  // The whiteout comes last: the child hangs in its mknod hook after writing every file.
  const l = await layer([...files, { path: "many/.wh.gone", data: "" }]);
  const img = await buildImage(env.store, [l]);
  {
    const images = await env.open();
    await images.installItem({
      itemId: "earlier",
      version: "1",
      manifestDigest: earlier.manifestDigest,
    });
    await images[Symbol.asyncDispose]();
  }
  const urls: Record<string, string[]> = {};
  for (const d of [img.manifestDigest, img.configDigest, img.itemConfigDigest, l.digest]) {
    urls[d] = [env.server.urlFor(d)];
  }
  const request = { itemId: "svc", version: "1", manifestDigest: img.manifestDigest };
  await runAndKill(env, { urls, request, hangInMknod: true }, (events) => until(events, "mknod"));

  const partial = (await listRegular(join(env.imagePath, "tmp"))).filter((f) =>
    f.startsWith("extract-")
  );
  assert.equal(partial.length, 200, "the child was killed inside the extraction");

  await assertConsistent(env, ["earlier"]);
  const images = await env.open();
  const item = await images.installItem(request);
  assert.equal(
    (await Array.fromAsync(Deno.readDir(join(item.layerPaths[0]!, "many")))).length,
    201,
  );
  // The whiteout became an overlay whiteout: a 0/0 char device.
  const wh = await Deno.lstat(join(item.layerPaths[0]!, "many/gone"));
  assert.ok(wh.isCharDevice && wh.rdev === 0);
  await images[Symbol.asyncDispose]();
  await assertConsistent(env, ["earlier", "svc"]);
});

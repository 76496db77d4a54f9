import assert from "node:assert/strict";
import { gunzipInWorker } from "./gunzip_worker.ts";
import { entry, gzip, tar } from "./_tar_builder.ts";
import { extractLayer, openLayerFile } from "./extract.ts";
import { assertWorkersEnded, workerThreads } from "./_worker_threads.ts";

/** Mixed content: incompressible runs, text and zeros, so inflate output sizes vary. */
function sample(size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    const region = (i >> 16) % 3;
    if (region === 0) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      out[i] = x & 0xff;
    } else if (region === 1) out[i] = 0x61 + (i % 26);
  }
  return out;
}

/** Splits bytes into chunks of uneven sizes, some of them views into a shared buffer. */
function* unevenChunks(data: Uint8Array): Generator<Uint8Array> {
  const sizes = [1, 7, 4096, 333_333, 1 << 20, 3 << 20];
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - off);
    yield i % 2 === 0 ? data.subarray(off, off + n) : data.slice(off, off + n);
    off += n;
  }
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("gunzipInWorker inflates exactly what DecompressionStream does, whatever the chunking", async () => {
  const before = workerThreads();
  const data = sample(6 * 1024 * 1024 + 123);
  const gz = await gzip(data);
  const out = await collect(gunzipInWorker(ReadableStream.from(unevenChunks(gz))));
  assert.equal(out.length, data.length);
  assert.ok(out.every((b, i) => b === data[i]), "inflated bytes differ");
  // A caller's buffer is copied, never transferred (which would detach it)...
  assert.ok(gz.byteLength >= 1024 * 1024);
  const whole = await collect(gunzipInWorker(ReadableStream.from([gz])));
  assert.equal(whole.length, data.length);
  assert.ok(gz.byteLength > 0, "the caller's buffer was detached");
  // ...unless the caller hands its chunks over.
  const given = gz.slice();
  assert.equal(
    (await collect(gunzipInWorker(ReadableStream.from([given]), true))).length,
    data.length,
  );
  assert.equal(given.byteLength, 0);
  // An async iterable works as a source, and an empty gzip member gives no bytes.
  const empty = await collect(gunzipInWorker((async function* () {
    yield await gzip(new Uint8Array(0));
  })()));
  assert.equal(empty.length, 0);
  await assertWorkersEnded(before);
});

Deno.test("gunzipInWorker reports corrupt input and a failing source as stream errors", async () => {
  const before = workerThreads();
  const gz = await gzip(sample(200_000));
  const bad = gz.slice();
  bad[bad.length - 6]! ^= 0xff; // CRC of the trailer
  await assert.rejects(() => collect(gunzipInWorker(ReadableStream.from([bad]))), TypeError);
  await assert.rejects(
    () => collect(gunzipInWorker(ReadableStream.from([new TextEncoder().encode("not gzip")]))),
    TypeError,
  );
  const failing = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(gz.subarray(0, 1000));
    },
    pull(c) {
      c.error(new Error("disk gone"));
    },
  });
  await assert.rejects(() => collect(gunzipInWorker(failing)), /disk gone/);
  await assertWorkersEnded(before);
});

Deno.test("gunzipInWorker reads ahead only a bounded window, and cancel stops the source", async () => {
  const before = workerThreads();
  // Incompressible: input and output sizes are about equal.
  const words = new Uint32Array(4 * 1024 * 1024);
  let x = 99;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  const gz = await gzip(new Uint8Array(words.buffer));
  const piece = 64 * 1024;
  let pulled = 0;
  let cancelled: unknown;
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      if (pulled >= gz.length) return c.close();
      c.enqueue(gz.slice(pulled, pulled + piece));
      pulled += piece;
    },
    cancel(reason) {
      cancelled = reason;
    },
  }, { highWaterMark: 0 });
  const out = gunzipInWorker(source);
  const reader = out.getReader();
  const first = await reader.read();
  assert.ok(!first.done && first.value.length > 0);
  // Give the worker ample time to run ahead if it were unbounded.
  await new Promise((r) => setTimeout(r, 200));
  // In flight at most: a batch being gathered, one in the worker, a window of three out.
  assert.ok(pulled <= 6 * 1024 * 1024, `read ahead ${pulled} of ${gz.length} input bytes`);
  await reader.cancel("enough");
  assert.equal(cancelled, "enough");
  await assertWorkersEnded(before);
});

Deno.test("extractLayer inflates in this thread when no Worker can start", async () => {
  const dir = await Deno.makeTempDir();
  const original = globalThis.Worker;
  try {
    globalThis.Worker = class {
      constructor() {
        throw new Error("no workers here");
      }
    } as unknown as typeof Worker;
    assert.throws(() => gunzipInWorker(ReadableStream.from([new Uint8Array(1)])), /no workers/);
    const gz = await gzip(tar(entry({ name: "a.txt" }, "inflated anyway")));
    const res = await extractLayer(ReadableStream.from([gz]), dir, {
      inflateInWorker: true,
      chown: false,
    });
    assert.equal(res.entries, 1);
    assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "inflated anyway");
  } finally {
    globalThis.Worker = original;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gunzipInWorker: cancel ends promptly and cancels a source whose read is stalled", async () => {
  const before = workerThreads();
  const gz = await gzip(sample(64 * 1024));
  let cancelled: unknown;
  let pulls = 0;
  let stalled!: () => void;
  const stalling = new Promise<void>((r) => (stalled = r));
  // The first half of the layer, then the source never delivers again (a stalled network read).
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      if (++pulls === 1) {
        c.enqueue(gz.slice(0, gz.length >> 1));
        return;
      }
      stalled();
      return new Promise(() => {});
    },
    cancel(reason) {
      cancelled = reason;
    },
  }, { highWaterMark: 0 });
  const reader = gunzipInWorker(source).getReader();
  const pending = reader.read();
  await stalling;
  // Before, cancel waited behind the pending source read forever.
  await reader.cancel("stop");
  assert.equal((await pending).done, true);
  assert.equal(cancelled, "stop");
  await assertWorkersEnded(before);
});

Deno.test("openLayerFile: small and large gzip files and plain files give their bytes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aos_open_layer_" });
  try {
    const before = workerThreads();
    for (const size of [1000, 3 * 1024 * 1024]) {
      const data = sample(size);
      const packed = await gzip(data);
      await Deno.writeFile(`${dir}/l.gz`, packed);
      await Deno.writeFile(`${dir}/l.tar`, data);
      // 3 MiB of input compress to over 1 MiB here: the large one goes through a Worker.
      assert.equal(size < 1024 * 1024 || packed.byteLength >= 1024 * 1024, true);
      assert.deepEqual(await collect(await openLayerFile(`${dir}/l.gz`, "gzip")), data);
      assert.deepEqual(await collect(await openLayerFile(`${dir}/l.gz`, "auto")), data);
      assert.deepEqual(await collect(await openLayerFile(`${dir}/l.tar`, "none")), data);
    }
    await assertWorkersEnded(before);
    await assert.rejects(
      async () => await collect(await openLayerFile(`${dir}/l.tar`, "gzip")),
      /.+/,
      "plain bytes are not gzip",
    );
    await assert.rejects(openLayerFile(`${dir}/missing`, "gzip"), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { AosError, type ErrorCode } from "../core/errors.ts";
import { extractLayer, removeExtracted } from "./extract.ts";
import { entry, gzip, gzipZeroEntryStream, header, tar } from "./_tar_builder.ts";
import { assertWorkersEnded, workerThreads } from "./_worker_threads.ts";

interface Sandbox {
  base: string;
  target: string;
  outside: string;
  [Symbol.asyncDispose](): Promise<void>;
}

async function sandbox(): Promise<Sandbox> {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "layer_mal_" }));
  await Deno.mkdir(`${base}/target`);
  await Deno.mkdir(`${base}/outside`);
  return {
    base,
    target: `${base}/target`,
    outside: `${base}/outside`,
    [Symbol.asyncDispose]: () => Deno.remove(base, { recursive: true }),
  };
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** Every case runs with gzip inflated in this thread and in a Worker. */
const INFLATE_IN_WORKER = [false, true];

async function expectRejected(
  sb: Sandbox,
  data: Uint8Array | (() => ReadableStream<Uint8Array>),
  code: ErrorCode,
  message: RegExp,
  options: Parameters<typeof extractLayer>[2] = {},
): Promise<void> {
  for (const inflateInWorker of INFLATE_IN_WORKER) {
    const threads = workerThreads();
    let caught: unknown;
    try {
      const src = data instanceof Uint8Array ? ReadableStream.from([await gzip(data)]) : data();
      await extractLayer(src, sb.target, {
        label: "sha256:test",
        chown: false,
        inflateInWorker,
        ...options,
      });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof AosError, `expected an AosError, got ${caught}`);
    assert.equal(caught.code, code, caught.message);
    assert.match(caught.message, /^Cannot extract layer sha256:test: /);
    assert.match(caught.message, message);
    // Nothing ever lands outside the target.
    assert.deepEqual(await names(sb.outside), []);
    assert.deepEqual(await names(sb.base), ["outside", "target"]);
    // A failed extraction leaves no inflate worker behind.
    await assertWorkersEnded(threads);
  }
}

Deno.test("traversal with .. is rejected and writes nothing outside", async () => {
  await using sb = await sandbox();
  await expectRejected(
    sb,
    tar(entry({ name: "ok" }, "fine"), entry({ name: "../outside/evil" }, "x")),
    "invalidArgument",
    /entry "\.\.\/outside\/evil": path with '\.\.' escapes/,
  );
  await expectRejected(
    sb,
    tar(entry({ name: "a/b/../../../outside/evil" }, "x")),
    "invalidArgument",
    /escapes/,
  );
  // A partial extraction stays for the caller to clean up.
  assert.deepEqual(await names(sb.target), ["ok"]);
  await removeExtracted(sb.target);
  await removeExtracted(sb.target); // idempotent
  await Deno.mkdir(sb.target);
});

Deno.test("absolute paths are rejected", async () => {
  await using sb = await sandbox();
  await expectRejected(
    sb,
    tar(entry({ name: `${sb.outside}/evil` }, "x")),
    "invalidArgument",
    /absolute path is not allowed/,
  );
  await expectRejected(
    sb,
    tar(entry({ name: "evil", prefix: sb.outside }, "x")),
    "invalidArgument",
    /absolute path/,
  );
});

Deno.test("a symlink pointing outside cannot be written through", async () => {
  await using sb = await sandbox();
  // Absolute link target, then a file through it.
  await expectRejected(
    sb,
    tar(
      entry({ name: "link", type: "2", linkname: sb.outside }),
      entry({ name: "link/evil" }, "x"),
    ),
    "invalidArgument",
    /entry "link\/evil": path passes through symlink "link" -> ".*outside" which points outside/,
  );
  // Relative climbing link, also through a nested dir and a chain of links.
  await expectRejected(
    sb,
    tar(
      entry({ name: "d/", type: "5", mode: 0o755 }),
      entry({ name: "d/up", type: "2", linkname: "../../outside" }),
      entry({ name: "hop", type: "2", linkname: "d/up" }),
      entry({ name: "hop/evil" }, "x"),
    ),
    "invalidArgument",
    /entry "hop\/evil": .*points outside the target/,
  );
  // A symlink left in the target by a lower layer is treated the same way.
  await Deno.symlink(sb.outside, `${sb.target}/lower`);
  await expectRejected(
    sb,
    tar(entry({ name: "lower/evil" }, "x")),
    "invalidArgument",
    /symlink "lower"/,
  );
});

Deno.test("a file entry replaces a symlink instead of writing through it", async () => {
  await using sb = await sandbox();
  const data = await gzip(tar(
    entry({ name: "l", type: "2", linkname: `${sb.outside}/f` }),
    entry({ name: "l" }, "replaced"),
    entry({ name: "in", type: "2", linkname: "sub" }),
    entry({ name: "sub/", type: "5", mode: 0o755 }),
    entry({ name: "in/via" }, "inside"),
  ));
  for (const inflateInWorker of INFLATE_IN_WORKER) {
    await extractLayer(ReadableStream.from([data]), sb.target, { chown: false, inflateInWorker });
    assert.deepEqual(await names(sb.outside), []);
    assert.ok((await Deno.lstat(`${sb.target}/l`)).isFile);
    assert.equal(await Deno.readTextFile(`${sb.target}/l`), "replaced");
    // A symlink that stays inside the target is followed.
    assert.equal(await Deno.readTextFile(`${sb.target}/sub/via`), "inside");
  }
});

Deno.test("hardlinks to outside are rejected", async () => {
  await using sb = await sandbox();
  await Deno.writeTextFile(`${sb.outside}/secret`, "s");
  const before = await names(sb.outside);
  const check = async (data: Uint8Array, re: RegExp, code: ErrorCode = "invalidArgument") => {
    for (const inflateInWorker of INFLATE_IN_WORKER) {
      await assert.rejects(
        () =>
          extractLayer(ReadableStream.from([data]), sb.target, { chown: false, inflateInWorker }),
        (e) => e instanceof AosError && e.code === code && re.test(e.message),
      );
      assert.deepEqual(await names(sb.outside), before);
      assert.equal((await Deno.stat(`${sb.outside}/secret`)).nlink, 1);
    }
  };
  await check(
    await gzip(tar(entry({ name: "hl", type: "1", linkname: "../../etc/passwd" }))),
    /entry "hl": hardlink target "\.\.\/\.\.\/etc\/passwd" escapes/,
  );
  await check(
    await gzip(tar(entry({ name: "hl", type: "1", linkname: `${sb.outside}/secret` }))),
    /hardlink target .* escapes the target: absolute path/,
  );
  await check(
    await gzip(tar(
      entry({ name: "out", type: "2", linkname: sb.outside }),
      entry({ name: "hl", type: "1", linkname: "out/secret" }),
    )),
    /entry "hl": path passes through symlink "out"/,
  );
  await check(
    await gzip(tar(entry({ name: "hl", type: "1", linkname: "missing" }))),
    /hardlink target "missing" does not exist/,
    "notFound",
  );
});

Deno.test("device nodes need allowDevices", async () => {
  await using sb = await sandbox();
  await expectRejected(
    sb,
    tar(
      entry({ name: "dev/", type: "5" }),
      entry({ name: "dev/mem", type: "3", devmajor: 1, devminor: 1 }),
    ),
    "invalidArgument",
    /entry "dev\/mem": device nodes are not allowed/,
  );
  await expectRejected(
    sb,
    tar(entry({ name: "sda", type: "4", devmajor: 8, devminor: 0 })),
    "invalidArgument",
    /device nodes are not allowed/,
  );
  assert.deepEqual(await names(`${sb.target}/dev`), []);
});

Deno.test("decompression bombs stop early", async () => {
  await using sb = await sandbox();
  // One huge, highly compressible entry (64 MiB of zeros is ~64 KiB gzipped).
  await expectRejected(
    sb,
    () => gzipZeroEntryStream("bomb", 64 * 1024 * 1024),
    "noMemory",
    /entry "bomb": entry of 67108864 bytes exceeds the single-entry limit of 1048576/,
    { limits: { maxEntrySize: 1024 * 1024 } },
  );
  assert.deepEqual(await names(sb.target), []);
  // Many entries that together exceed the total.
  const chunk = new Uint8Array(300 * 1024);
  const many = Array.from({ length: 10 }, (_, i) => entry({ name: `f${i}` }, chunk));
  await expectRejected(
    sb,
    tar(...many),
    "noMemory",
    /entry "f3": .*exceeds the total limit of 1048576/,
    {
      limits: { maxTotalBytes: 1024 * 1024 },
    },
  );
  // Bodies of non-file entries are skipped, yet still bounded.
  await expectRejected(
    sb,
    tar(
      entry({ name: "a" }, "x"),
      entry({ name: "hl", type: "1", linkname: "a" }, new Uint8Array(2 << 20)),
    ),
    "noMemory",
    /entry "hl": entry of 2097152 bytes exceeds the single-entry limit/,
    { limits: { maxEntrySize: 1024 * 1024 } },
  );
  // Too many entries.
  const tiny = Array.from({ length: 200 }, (_, i) => entry({ name: `t${i}` }, ""));
  await expectRejected(sb, tar(...tiny), "outOfRange", /entry "t100": more than 100 entries/, {
    limits: { maxEntries: 100 },
  });
  // A long path.
  await expectRejected(sb, tar(entry({ name: "x".repeat(99) })), "outOfRange", /longer than 50/, {
    limits: { maxPathLength: 50 },
  });
});

Deno.test("malformed archives fail with a clear error", async () => {
  await using sb = await sandbox();
  const good = entry({ name: "a" }, "1");
  const bad = header({ name: "b", checksum: 1 });
  await expectRejected(
    sb,
    tar(good, [bad]),
    "invalidChecksum",
    /after entry "a": tar header checksum mismatch/,
  );
  await expectRejected(
    sb,
    tar(entry({ name: "s", type: "S" })),
    "notSupported",
    /unsupported tar entry type 'S'/,
  );
  const truncated = tar(entry({ name: "big" }, new Uint8Array(4096))).subarray(0, 2048);
  await expectRejected(sb, truncated, "eof", /entry "big": tar stream ends inside an entry body/);
  const gz = await gzip(tar(good));
  gz[gz.length - 5]! ^= 0xff;
  for (const inflateInWorker of INFLATE_IN_WORKER) {
    // Not gzip at all, though the caller said gzip.
    let caught: unknown;
    try {
      await extractLayer(ReadableStream.from([tar(good)]), sb.target, {
        compression: "gzip",
        label: "L",
        inflateInWorker,
      });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof AosError && caught.code === "invalidArgument", String(caught));
    assert.match(
      caught.message,
      /^Cannot extract layer L: at tar offset 0: cannot read the layer stream/,
    );
    // A corrupted gzip trailer is noticed because the stream is always read to its end.
    await assert.rejects(
      () => extractLayer(ReadableStream.from([gz]), sb.target, { chown: false, inflateInWorker }),
      AosError,
    );
  }
});

Deno.test("an aborted signal cancels the extraction", async () => {
  await using sb = await sandbox();
  const ac = new AbortController();
  ac.abort();
  for (const inflateInWorker of INFLATE_IN_WORKER) {
    await assert.rejects(
      async () =>
        extractLayer(
          ReadableStream.from([await gzip(tar(entry({ name: "a" }, "1")))]),
          sb.target,
          { signal: ac.signal, inflateInWorker },
        ),
      (e) => e instanceof AosError && e.code === "canceled",
    );
  }
});

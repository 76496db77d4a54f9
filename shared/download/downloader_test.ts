import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import { startFileServer } from "../fileserver/file_server.ts";
import {
  Downloader,
  type DownloaderOptions,
  downloadPaths,
  type DownloadProgress,
} from "./downloader.ts";
import {
  droppingBody,
  ETAG,
  gatedBody,
  makeBlob,
  rangeResponse,
  startServer,
} from "./testdata/server.ts";

const SIZE = 300_000;
const blob = makeBlob(SIZE);

interface Ctx {
  dir: string;
  delays: number[];
  events: DownloadProgress[];
  downloader: (extra?: DownloaderOptions) => Downloader;
}

async function withCtx(fn: (ctx: Ctx) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  const delays: number[] = [];
  const events: DownloadProgress[] = [];
  const made: Downloader[] = [];
  try {
    await fn({
      dir,
      delays,
      events,
      downloader: (extra = {}) => {
        const d = new Downloader({
          sleep: (ms) => {
            delays.push(ms);
            return Promise.resolve();
          },
          onProgress: (p) => events.push(p),
          ...extra,
        });
        made.push(d);
        return d;
      },
    });
  } finally {
    for (const d of made) await d[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
}

async function exists(path: string) {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function assertBlobFile(path: string, bytes = blob.bytes) {
  assert.deepEqual(await Deno.readFile(path), bytes);
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<AosError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AosError, `expected AosError, got ${err}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return err;
  }
  assert.fail(`expected rejection with ${code}`);
}

Deno.test("downloader: plain download streams, verifies, reports started and finished", async () => {
  await withCtx(async ({ dir, events, downloader }) => {
    await using srv = await startServer((req) => rangeResponse(req, blob.bytes));
    const d = downloader();
    const res = await d.download({ digest: blob.digest, url: srv.url(), dir, size: SIZE });
    assert.equal(res.path, join(dir, "sha256", blob.digest.slice(7)));
    assert.equal(res.size, SIZE);
    assert.equal(res.resumedFrom, 0);
    assert.equal(res.cached, false);
    await assertBlobFile(res.path);
    const paths = downloadPaths(dir, blob.digest);
    assert.equal(await exists(paths.part), false);
    assert.equal(await exists(paths.meta), false);
    assert.deepEqual(events.map((e) => e.state), ["started", "finished"]);
    assert.deepEqual(events.at(-1), {
      digest: blob.digest,
      url: srv.url(),
      downloadedBytes: SIZE,
      totalBytes: SIZE,
      state: "finished",
    });
    assert.equal(srv.seen.length, 1);
    assert.equal(srv.seen[0]?.range, null);

    // A second call finds the verified file and fetches nothing.
    const again = await d.download({ digest: blob.digest, url: srv.url(), dir, size: SIZE });
    assert.equal(again.cached, true);
    assert.equal(srv.seen.length, 1);
  });
});

Deno.test("downloader: connection dropped mid-body resumes with Range from the partial length", async () => {
  await withCtx(async ({ dir, downloader, delays }) => {
    const cut = 120_000;
    await using srv = await startServer((req, i) =>
      i === 0
        ? rangeResponse(req, blob.bytes, { body: () => droppingBody(blob.bytes.slice(0, cut)) })
        : rangeResponse(req, blob.bytes)
    );
    const res = await downloader().download({
      digest: blob.digest,
      url: srv.url(),
      dir,
      size: SIZE,
    });
    await assertBlobFile(res.path);
    assert.equal(srv.seen.length, 2);
    const m = /^bytes=(\d+)-$/.exec(srv.seen[1]?.range ?? "");
    assert.ok(m, `second request had Range ${srv.seen[1]?.range}`);
    const from = Number(m[1]);
    assert.ok(from > 0 && from <= cut, `resumed from ${from}`);
    assert.equal(res.resumedFrom, from);
    assert.equal(srv.seen[1]?.ifRange, ETAG);
    assert.deepEqual(delays, [1000]);
  });
});

Deno.test("downloader: a server that ignores Range gets a clean restart", async () => {
  await withCtx(async ({ dir, downloader }) => {
    await using srv = await startServer((req, i) =>
      i === 0
        ? rangeResponse(req, blob.bytes, { body: () => droppingBody(blob.bytes.slice(0, 50_000)) })
        : rangeResponse(req, blob.bytes, { ignoreRange: true })
    );
    const res = await downloader().download({ digest: blob.digest, url: srv.url(), dir });
    await assertBlobFile(res.path);
    assert.equal(srv.seen.length, 2);
    assert.match(srv.seen[1]?.range ?? "", /^bytes=\d+-$/);
    assert.equal(res.resumedFrom, 0);
  });
});

Deno.test("downloader: 500 then 200 retries after the back-off delay", async () => {
  await withCtx(async ({ dir, downloader, delays, events }) => {
    await using srv = await startServer((req, i) =>
      i === 0 ? new Response("boom", { status: 500 }) : rangeResponse(req, blob.bytes)
    );
    const res = await downloader().download({ digest: blob.digest, url: srv.url(), dir });
    await assertBlobFile(res.path);
    assert.equal(srv.seen.length, 2);
    assert.deepEqual(delays, [1000]);
    const interrupted = events.find((e) => e.state === "interrupted");
    assert.ok(interrupted?.error instanceof AosError);
    assert.match(interrupted.reason ?? "", /HTTP 500/);
  });
});

Deno.test("downloader: retries run out with the configured back-off", async () => {
  await withCtx(async ({ dir, downloader, delays, events }) => {
    await using srv = await startServer(() => new Response("busy", { status: 503 }));
    const d = downloader({ tries: 4, initialDelayMs: 100, maxDelayMs: 300 });
    await rejectsWith(d.download({ digest: blob.digest, url: srv.url(), dir }), "failed", /503/);
    assert.equal(srv.seen.length, 4);
    assert.deepEqual(delays, [100, 200, 300]);
    assert.equal(events.at(-1)?.state, "interrupted");
  });
});

Deno.test("downloader: 404 is not retried", async () => {
  await withCtx(async ({ dir, downloader }) => {
    await using srv = await startServer(() => new Response("no", { status: 404 }));
    await rejectsWith(
      downloader().download({ digest: blob.digest, url: srv.url(), dir }),
      "notFound",
    );
    assert.equal(srv.seen.length, 1);
  });
});

Deno.test("downloader: wrong bytes fail with invalidChecksum and leave nothing behind", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const other = makeBlob(SIZE, 2);
    await using srv = await startServer((req) => rangeResponse(req, other.bytes));
    await rejectsWith(
      downloader().download({ digest: blob.digest, url: srv.url(), dir, size: SIZE }),
      "invalidChecksum",
      /SHA-256/,
    );
    const paths = downloadPaths(dir, blob.digest);
    for (const p of Object.values(paths)) assert.equal(await exists(p), false, p);
    assert.equal(srv.seen.length, 1, "a checksum error is not retried");
  });
});

Deno.test("downloader: a source sending more than the expected size is cut off early", async () => {
  await withCtx(async ({ dir, downloader }) => {
    let sentChunks = 0;
    await using srv = await startServer(() =>
      // No Content-Length: the overflow shows only while streaming.
      new Response(
        new ReadableStream<Uint8Array>({
          pull(c) {
            sentChunks++;
            if (sentChunks > 1000) return c.close();
            c.enqueue(blob.bytes.slice(0, 64 * 1024));
          },
        }, { highWaterMark: 0 }),
      )
    );
    await rejectsWith(
      downloader().download({ digest: blob.digest, url: srv.url(), dir, size: SIZE }),
      "invalidChecksum",
      /more than 300000 bytes/,
    );
    assert.ok(sentChunks < 1000, `server sent ${sentChunks} chunks`);
    assert.equal(await exists(downloadPaths(dir, blob.digest).part), false);
  });
});

Deno.test("downloader: a size announced by the server that differs is refused", async () => {
  await withCtx(async ({ dir, downloader }) => {
    await using srv = await startServer((req) => rangeResponse(req, blob.bytes));
    await rejectsWith(
      downloader().download({ digest: blob.digest, url: srv.url(), dir, size: SIZE - 1 }),
      "invalidChecksum",
      /expected 299999/,
    );
  });
});

Deno.test("downloader: concurrent callers of one digest share one request", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const { promise: release, resolve: go } = Promise.withResolvers<void>();
    const { promise: firstSent, resolve: sent } = Promise.withResolvers<void>();
    await using srv = await startServer((req) =>
      rangeResponse(req, blob.bytes, {
        body: () => gatedBody(blob.bytes.slice(0, 1000), blob.bytes.slice(1000), release, sent),
      })
    );
    const d = downloader();
    const a = d.download({ digest: blob.digest, url: srv.url(), dir });
    const b = d.download({ digest: blob.digest, url: srv.url("/mirror"), dir });
    await firstSent;
    assert.deepEqual(d.active, [blob.digest]);
    go();
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.path, rb.path);
    await assertBlobFile(ra.path);
    assert.equal(srv.seen.length, 1);
    assert.deepEqual(d.active, []);
  });
});

Deno.test("downloader: cancel(digest) stops the transfer, keeps the part, resumes later", async () => {
  await withCtx(async ({ dir, downloader, events }) => {
    const { promise: firstSent, resolve: sent } = Promise.withResolvers<void>();
    const never = new Promise<void>(() => {});
    await using srv = await startServer((req, i) =>
      i === 0
        ? rangeResponse(req, blob.bytes, {
          body: () => gatedBody(blob.bytes.slice(0, 100_000), new Uint8Array(), never, sent),
        })
        : rangeResponse(req, blob.bytes)
    );
    const d = downloader();
    const paths = downloadPaths(dir, blob.digest);
    const p = d.download({ digest: blob.digest, url: srv.url(), dir });
    await firstSent;
    // Wait until the bytes are on disk so that the resume below has something to skip.
    for (
      let i = 0;
      i < 2000 && ((await Deno.stat(paths.part).catch(() => null))?.size ?? 0) <
        100_000;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(d.cancel(blob.digest), true);
    await rejectsWith(p, "canceled");
    assert.equal(d.cancel(blob.digest), false);
    assert.equal(events.at(-1)?.state, "paused");
    assert.equal((await Deno.stat(paths.part)).size, 100_000);

    const res = await d.download({ digest: blob.digest, url: srv.url(), dir });
    assert.equal(res.resumedFrom, 100_000);
    assert.equal(srv.seen[1]?.range, "bytes=100000-");
    await assertBlobFile(res.path);
  });
});

Deno.test("downloader: one caller aborting does not stop the download for another", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const { promise: release, resolve: go } = Promise.withResolvers<void>();
    const { promise: firstSent, resolve: sent } = Promise.withResolvers<void>();
    await using srv = await startServer((req) =>
      rangeResponse(req, blob.bytes, {
        body: () => gatedBody(blob.bytes.slice(0, 1000), blob.bytes.slice(1000), release, sent),
      })
    );
    const d = downloader();
    const ac = new AbortController();
    const a = d.download({ digest: blob.digest, url: srv.url(), dir, signal: ac.signal });
    const b = d.download({ digest: blob.digest, url: srv.url(), dir });
    await firstSent;
    ac.abort();
    await rejectsWith(a, "canceled", /by the caller/);
    go();
    await assertBlobFile((await b).path);
  });
});

Deno.test("downloader: progress repeats at the interval while bytes flow", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const { promise: sawProgress, resolve: progressed } = Promise.withResolvers<void>();
    await using srv = await startServer((req) =>
      rangeResponse(req, blob.bytes, {
        body: () => gatedBody(blob.bytes.slice(0, 5000), blob.bytes.slice(5000), sawProgress),
      })
    );
    const events: DownloadProgress[] = [];
    const d = downloader({ progressIntervalMs: 2 });
    const res = await d.download({
      digest: blob.digest,
      url: srv.url(),
      dir,
      onProgress: (e) => {
        events.push(e);
        // The server holds the rest back until a periodic report showed the first part.
        if (e.state === "started" && e.downloadedBytes === 5000) progressed();
      },
    });
    await assertBlobFile(res.path);
    assert.equal(events[0]?.state, "started");
    assert.equal(events[0]?.downloadedBytes, 0);
    assert.ok(
      events.some((e) => e.state === "started" && e.downloadedBytes === 5000 && e.totalBytes),
    );
    assert.equal(events.at(-1)?.state, "finished");
  });
});

Deno.test("downloader: 416 on a complete part file finishes without a body", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const paths = downloadPaths(dir, blob.digest);
    await Deno.mkdir(join(dir, "sha256"));
    await Deno.writeFile(paths.part, blob.bytes);
    await Deno.writeTextFile(paths.meta, JSON.stringify({ version: 1, validator: ETAG }));
    await using srv = await startServer((req) => rangeResponse(req, blob.bytes));
    const res = await downloader().download({ digest: blob.digest, url: srv.url(), dir });
    assert.equal(srv.seen[0]?.range, `bytes=${SIZE}-`);
    assert.equal(srv.seen.length, 1);
    await assertBlobFile(res.path);
  });
});

Deno.test("downloader: 416 for a part longer than the file restarts from zero", async () => {
  await withCtx(async ({ dir, downloader, delays }) => {
    const paths = downloadPaths(dir, blob.digest);
    await Deno.mkdir(join(dir, "sha256"));
    await Deno.writeFile(paths.part, new Uint8Array(SIZE + 10));
    await Deno.writeTextFile(paths.meta, JSON.stringify({ version: 1, validator: ETAG }));
    await using srv = await startServer((req) => rangeResponse(req, blob.bytes));
    const res = await downloader().download({ digest: blob.digest, url: srv.url(), dir });
    assert.deepEqual(srv.seen.map((s) => s.range), [`bytes=${SIZE + 10}-`, null]);
    assert.deepEqual(delays, [], "the restart does not spend a retry");
    await assertBlobFile(res.path);
  });
});

Deno.test("downloader: a stale resumed prefix fails verification once, then restarts clean", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const paths = downloadPaths(dir, blob.digest);
    await Deno.mkdir(join(dir, "sha256"));
    await Deno.writeFile(paths.part, new Uint8Array(1000)); // zeros: not the blob's prefix
    await Deno.writeTextFile(paths.meta, JSON.stringify({ version: 1, validator: ETAG }));
    await using srv = await startServer((req) => rangeResponse(req, blob.bytes));
    const res = await downloader().download({ digest: blob.digest, url: srv.url(), dir });
    assert.deepEqual(srv.seen.map((s) => s.range), ["bytes=1000-", null]);
    assert.equal(res.resumedFrom, 0);
    await assertBlobFile(res.path);
  });
});

Deno.test("downloader: file:// source is copied and verified; a missing file is notFound", async () => {
  await withCtx(async ({ dir, downloader, events }) => {
    const src = join(dir, "source.bin");
    await Deno.writeFile(src, blob.bytes);
    const d = downloader();
    const url = new URL(`file://${src}`).href;
    const res = await d.download({
      digest: blob.digest,
      url,
      dir: join(dir, "out"),
      size: SIZE,
      sha3_256: true,
    });
    await assertBlobFile(res.path);
    assert.equal(res.sha3_256, createHash("sha3-256").update(blob.bytes).digest("hex"));
    assert.deepEqual(events.map((e) => e.state), ["started", "finished"]);
    await rejectsWith(
      d.download({ digest: blob.digest, url: `file://${dir}/missing`, dir: join(dir, "o2") }),
      "notFound",
    );
    const restricted = downloader({ schemes: ["https:"] });
    await rejectsWith(
      restricted.download({ digest: blob.digest, url, dir: join(dir, "o3") }),
      "invalidArgument",
      /scheme "file:"/,
    );
  });
});

Deno.test("downloader: SHA3-256 check for blobs named by another digest", async () => {
  await withCtx(async ({ dir, downloader }) => {
    // CM case: the file is encrypted, its name is the digest of the decrypted content.
    const encrypted = makeBlob(10_000, 3).bytes;
    const sha3 = createHash("sha3-256").update(encrypted).digest("hex");
    await using srv = await startServer((req) => rangeResponse(req, encrypted));
    const d = downloader();
    const res = await d.download({
      digest: blob.digest,
      url: srv.url(),
      dir,
      verifyDigest: false,
      sha3_256: sha3.toUpperCase(),
    });
    assert.equal(res.sha3_256, sha3);
    await assertBlobFile(res.path, encrypted);
    await Deno.remove(res.path);
    await rejectsWith(
      d.download({
        digest: blob.digest,
        url: srv.url(),
        dir,
        verifyDigest: false,
        sha3_256: "0".repeat(64),
      }),
      "invalidChecksum",
      /SHA3-256/,
    );
  });
});

Deno.test("downloader: allow-list refuses hosts before any request, redirects included", async () => {
  await withCtx(async ({ dir, downloader }) => {
    await using target = await startServer((req) => rangeResponse(req, blob.bytes));
    await using redirector = await startServer(() =>
      new Response(null, { status: 302, headers: { location: target.url() } })
    );
    const allowed = new Set([`127.0.0.1:${redirector.port}`]);
    const d = downloader({ allowHost: (u) => allowed.has(u.host) });
    await rejectsWith(
      d.download({ digest: blob.digest, url: target.url(), dir }),
      "invalidArgument",
      /not on the allow-list/,
    );
    assert.equal(target.seen.length, 0);
    await rejectsWith(
      d.download({ digest: blob.digest, url: redirector.url(), dir }),
      "invalidArgument",
      /not on the allow-list/,
    );
    assert.equal(redirector.seen.length, 1);
    assert.equal(target.seen.length, 0);

    allowed.add(`127.0.0.1:${target.port}`);
    const res = await d.download({ digest: blob.digest, url: redirector.url(), dir });
    await assertBlobFile(res.path);
  });
});

Deno.test({
  name: "downloader: digests other than sha256:<64 hex> are refused",
  permissions: "none",
  fn() {
    for (
      const bad of [
        "sha256:../../etc/passwd",
        `sha256:${"A".repeat(64)}`,
        `sha512:${"a".repeat(64)}`,
        `sha256:${"a".repeat(63)}`,
        `sha256:${"a".repeat(64)}/x`,
        "",
      ]
    ) {
      assert.throws(() => downloadPaths("/d", bad), (e) => e instanceof AosError);
    }
    assert.deepEqual(downloadPaths("/d", `sha256:${"a".repeat(64)}`), {
      file: `/d/sha256/${"a".repeat(64)}`,
      part: `/d/sha256/${"a".repeat(64)}.part`,
      meta: `/d/sha256/${"a".repeat(64)}.part.json`,
    });
  },
});

Deno.test("downloader + file server: download resumes against the blob server", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const root = join(dir, "served");
    await Deno.mkdir(join(root, "sha256"), { recursive: true });
    const hex = blob.digest.slice(7);
    await Deno.writeFile(join(root, "sha256", hex), blob.bytes);
    await using fs = await startFileServer({ root, port: 0 });
    const url = fs.urlFor(blob.digest);

    // Half a file from an earlier run, with the validator the server gave then.
    const head = await fetch(url, { method: "HEAD" });
    const etag = head.headers.get("etag");
    assert.ok(etag);
    const out = join(dir, "download");
    const paths = downloadPaths(out, blob.digest);
    await Deno.mkdir(join(out, "sha256"), { recursive: true });
    await Deno.writeFile(paths.part, blob.bytes.slice(0, 123_456));
    await Deno.writeTextFile(paths.meta, JSON.stringify({ version: 1, validator: etag }));

    const events: DownloadProgress[] = [];
    const res = await downloader().download({
      digest: blob.digest,
      url,
      dir: out,
      size: SIZE,
      onProgress: (e) => events.push(e),
    });
    assert.equal(res.resumedFrom, 123_456);
    assert.equal(events[0]?.downloadedBytes, 123_456);
    assert.equal(events[0]?.totalBytes, SIZE);
    await assertBlobFile(res.path);
  });
});

Deno.test("downloader: a killed process is resumed by a new one without refetching the part", async () => {
  await withCtx(async ({ dir }) => {
    const first = 100_000;
    const never = new Promise<void>(() => {});
    await using srv = await startServer((req, i) =>
      i === 0
        ? rangeResponse(req, blob.bytes, {
          body: () => gatedBody(blob.bytes.slice(0, first), new Uint8Array(), never),
        })
        : rangeResponse(req, blob.bytes)
    );
    const script = new URL("./testdata/download_child.ts", import.meta.url).pathname;
    const spawn = () =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--allow-net=127.0.0.1:${srv.port}`,
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          script,
          srv.url(),
          dir,
          blob.digest,
          String(SIZE),
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();

    const paths = downloadPaths(dir, blob.digest);
    const child = spawn();
    let got = 0;
    for (let i = 0; i < 2000 && got < first; i++) {
      await new Promise((r) => setTimeout(r, 10));
      got = (await Deno.stat(paths.part).catch(() => null))?.size ?? 0;
    }
    assert.equal(got, first, "the first process received the first part");
    child.kill("SIGKILL");
    const status = await child.output();
    assert.equal(status.success, false);
    assert.equal(status.signal, "SIGKILL");

    const out = await spawn().output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(result.sha256, blob.digest.slice(7));
    assert.equal(result.resumedFrom, first);
    assert.equal(srv.seen.length, 2);
    assert.equal(srv.seen[1]?.range, `bytes=${first}-`);
    assert.equal(srv.seen[1]?.ifRange, ETAG);
    await assertBlobFile(paths.file);
  });
});

Deno.test("downloader: a stalled body and a silent server time out and are retried", async () => {
  await withCtx(async ({ dir, downloader, delays }) => {
    const never = new Promise<void>(() => {});
    await using srv = await startServer(async (req, i) => {
      if (i === 0) {
        return rangeResponse(req, blob.bytes, {
          body: () => gatedBody(blob.bytes.slice(0, 10_000), new Uint8Array(), never),
        });
      }
      if (i === 1) {
        // No headers until the client gives up.
        await new Promise((r) => req.signal.addEventListener("abort", r, { once: true }));
        return new Response(null, { status: 500 });
      }
      return rangeResponse(req, blob.bytes);
    });
    const events: DownloadProgress[] = [];
    const d = downloader({ tries: 3, stallTimeoutMs: 50, connectTimeoutMs: 50 });
    const res = await d.download({
      digest: blob.digest,
      url: srv.url(),
      dir,
      onProgress: (e) => events.push(e),
    });
    await assertBlobFile(res.path);
    assert.deepEqual(delays, [1000, 2000]);
    const reasons = events.filter((e) => e.state === "interrupted").map((e) => e.error?.code);
    assert.deepEqual(reasons, ["timeout", "timeout"]);
    assert.equal(srv.seen[2]?.range, "bytes=10000-");
  });
});

Deno.test("downloader: https with a custom CA", async () => {
  await withCtx(async ({ dir, downloader }) => {
    const key = join(dir, "key.pem"), cert = join(dir, "cert.pem");
    const caKey = join(dir, "ca.key"), caCert = join(dir, "ca.pem"), csr = join(dir, "leaf.csr");
    const ext = join(dir, "leaf.ext");
    await Deno.writeTextFile(ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    for (
      const args of [
        ["req", "-x509", ...ec, "-keyout", caKey, "-out", caCert, "-days", "1", "-subj", "/CN=t"],
        ["req", "-new", ...ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial"]
          .concat(["-out", cert, "-days", "1", "-extfile", ext]),
      ]
    ) {
      const gen = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
        .output();
      assert.equal(gen.code, 0, new TextDecoder().decode(gen.stderr));
    }
    const caPem = await Deno.readTextFile(caCert);
    const certPem = await Deno.readTextFile(cert);
    const { promise: listening, resolve } = Promise.withResolvers<number>();
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: certPem,
      key: await Deno.readTextFile(key),
      onListen: ({ port }) => resolve(port),
    }, (req) => rangeResponse(req, blob.bytes));
    try {
      const url = `https://127.0.0.1:${await listening}/blob`;
      const untrusting = downloader({ tries: 1 });
      await rejectsWith(untrusting.download({ digest: blob.digest, url, dir }), "failed");
      const res = await downloader({ caCerts: [caPem] }).download({
        digest: blob.digest,
        url,
        dir,
      });
      await assertBlobFile(res.path);
    } finally {
      await server.shutdown();
    }
  });
});

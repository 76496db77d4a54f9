import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseRange, startFileServer } from "./file_server.ts";

const BLOB = new Uint8Array(200_000).map((_, i) => (i * 7 + 3) & 0xff);
const HEX = createHash("sha256").update(BLOB).digest("hex");

async function withServer(fn: (base: string, root: string, port: number) => Promise<void>) {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(root, "sha256"));
    await Deno.writeFile(join(root, "sha256", HEX), BLOB);
    await using server = await startFileServer({ root, port: 0 });
    await fn(server.baseUrl, root, server.addr.port);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** Sends a request target verbatim (fetch would normalise "/../" before sending). */
async function rawStatus(port: number, target: string): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      ),
    );
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
    assert.ok(m, `no status line in ${JSON.stringify(text.slice(0, 80))}`);
    return Number(m[1]);
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "parseRange: forms, suffix, open end, unsatisfiable, ignored",
  permissions: "none",
  fn() {
    assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=90-500", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-500", 100), { start: 0, end: 99 });
    assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
    assert.equal(parseRange("bytes=-0", 100), "unsatisfiable");
    assert.equal(parseRange(null, 100), undefined);
    assert.equal(parseRange("bytes=0-1,5-6", 100), undefined);
    assert.equal(parseRange("bytes=5-1", 100), undefined);
    assert.equal(parseRange("items=0-1", 100), undefined);
    assert.equal(parseRange("bytes=-", 100), undefined);
  },
});

Deno.test("file server: full GET streams the blob with validators", async () => {
  await withServer(async (base) => {
    const res = await fetch(`${base}/sha256/${HEX}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.equal(res.headers.get("content-length"), String(BLOB.length));
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    assert.equal(res.headers.get("etag"), `"sha256:${HEX}"`);
    assert.ok(res.headers.get("last-modified"));
    const body = new Uint8Array(await res.arrayBuffer());
    assert.deepEqual(body, BLOB);
  });
});

Deno.test("file server: range GET, If-Range, HEAD and 416", async () => {
  await withServer(async (base) => {
    const url = `${base}/sha256/${HEX}`;
    let res = await fetch(url, { headers: { range: "bytes=1000-1999" } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get("content-range"), `bytes 1000-1999/${BLOB.length}`);
    assert.equal(res.headers.get("content-length"), "1000");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), BLOB.slice(1000, 2000));

    res = await fetch(url, { headers: { range: "bytes=150000-" } });
    assert.equal(res.status, 206);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), BLOB.slice(150000));

    res = await fetch(url, {
      headers: { range: "bytes=150000-", "if-range": `"sha256:${HEX}"` },
    });
    assert.equal(res.status, 206);
    await res.body?.cancel();

    res = await fetch(url, { headers: { range: "bytes=150000-", "if-range": `"other"` } });
    assert.equal(res.status, 200, "a stale validator gets the whole file");
    assert.equal((await res.arrayBuffer()).byteLength, BLOB.length);

    res = await fetch(url, { method: "HEAD" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), String(BLOB.length));
    assert.equal(await res.text(), "");

    res = await fetch(url, { headers: { range: `bytes=${BLOB.length}-` } });
    assert.equal(res.status, 416);
    assert.equal(res.headers.get("content-range"), `bytes */${BLOB.length}`);
    await res.body?.cancel();

    res = await fetch(url, { method: "POST", body: "x" });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "GET, HEAD");
    await res.body?.cancel();
  });
});

Deno.test("file server: unknown digest, bad names and traversal attempts are refused", async () => {
  await withServer(async (base, root, port) => {
    const outside = await Deno.makeTempFile();
    try {
      await Deno.writeTextFile(outside, "secret");
      const linkHex = "a".repeat(64);
      await Deno.symlink(outside, join(root, "sha256", linkHex));
      const dirHex = "b".repeat(64);
      await Deno.mkdir(join(root, "sha256", dirHex));

      for (
        const path of [
          `/sha256/${"c".repeat(64)}`, // unknown digest
          `/sha256/${linkHex}`, // symlink leaving the root
          `/sha256/${dirHex}`, // a directory
          `/sha256/${HEX.toUpperCase()}`, // only lowercase hex
          `/sha256/${HEX.slice(1)}`, // wrong length
          `/md5/${HEX}`, // unknown algorithm
          `/sha256/${HEX}/x`,
        ]
      ) {
        const res = await fetch(base + path);
        assert.equal(res.status, 404, path);
        await res.body?.cancel();
      }
      for (
        const target of [
          "/blobs/sha256/../../etc/passwd",
          "/blobs/sha256/%2e%2e/%2e%2e/etc/passwd",
          `/blobs/sha256%2f${HEX}`,
          `/blobs/sha256/..%2f..%2fetc%2fpasswd`,
          `/blobs/sha256/./${HEX}`,
          "/etc/passwd",
        ]
      ) {
        assert.equal(await rawStatus(port, target), 404, target);
      }
      // The real blob still answers through the raw path.
      assert.equal(await rawStatus(port, `/blobs/sha256/${HEX}`), 200);
    } finally {
      await Deno.remove(outside);
    }
  });
});

Deno.test("file server: urlFor and bound address", async () => {
  await withServer((base, _root, port) => {
    assert.equal(base, `http://127.0.0.1:${port}/blobs`);
    assert.ok(port > 0);
    return Promise.resolve();
  });
  const root = await Deno.makeTempDir();
  try {
    await using server = await startFileServer({ root, port: 0, prefix: "/b/" });
    assert.equal(server.urlFor(`sha256:${HEX}`), `${server.baseUrl}/sha256/${HEX}`);
    assert.throws(() => server.urlFor("sha256:../x"), /bad digest/);
    assert.ok(server.baseUrl.endsWith("/b"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { parsePaxRecords, type TarEntry, TarReader } from "./tar_reader.ts";
import { entry, header, pax, tar } from "./_tar_builder.ts";

async function readAll(data: Uint8Array, chunk = 7): Promise<(TarEntry & { body: string })[]> {
  // Tiny chunks exercise headers and bodies split across chunk boundaries.
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += chunk) chunks.push(data.subarray(i, i + chunk));
  const r = new TarReader(ReadableStream.from(chunks));
  const out: (TarEntry & { body: string })[] = [];
  for (;;) {
    const e = await r.next();
    if (!e) break;
    let body = "";
    if (e.path !== "skipped") {
      for await (const s of r.body()) body += new TextDecoder().decode(s);
    }
    out.push({ ...e, body });
  }
  return out;
}

Deno.test({
  name: "PAX (per-file and global), GNU long names and links, ustar prefix",
  permissions: "none",
  async fn() {
    const longName = "d/".repeat(80) + "file-with-a-long-name";
    const data = tar(
      pax({ uid: "4000000", mtime: "1600000000.5" }, "g"),
      pax({ path: longName, size: "5", linkpath: "ignored-for-files", gid: "77" }),
      entry({ name: "short", size: 5 }, "hello"),
      entry({ name: "././@LongLink", type: "L" }, "gnu/".repeat(40) + "name\0"),
      entry({ name: "././@LongLink", type: "K" }, "target/".repeat(30) + "t\0"),
      entry({ name: "trunc", type: "2", linkname: "trunc" }),
      entry({ name: "skipped" }, "unread body is skipped"),
      entry({ name: "name", prefix: "pre/fix", type: "5" }),
      entry({ name: "olddir/", type: "0" }),
      pax({ uid: "" }, "g"),
      entry({ name: "fifo", type: "6", uid: 9 }),
    );
    const es = await readAll(data);
    assert.equal(es.length, 6);
    assert.equal(es[0]!.path, longName);
    assert.equal(es[0]!.body, "hello");
    assert.equal(es[0]!.uid, 4000000);
    assert.equal(es[0]!.gid, 77);
    assert.equal(es[0]!.mtime, 1600000000.5);
    assert.equal(es[1]!.path, "gnu/".repeat(40) + "name");
    assert.equal(es[1]!.linkname, "target/".repeat(30) + "t");
    assert.equal(es[1]!.type, "symlink");
    assert.equal(es[2]!.path, "skipped");
    assert.equal(es[3]!.path, "pre/fix/name");
    assert.equal(es[3]!.type, "directory");
    assert.equal(es[4]!.type, "directory"); // pre-POSIX directory marker
    assert.equal(es[5]!.type, "fifo");
    assert.equal(es[5]!.uid, 9); // the global uid was deleted
  },
});

Deno.test({
  name: "base-256 numbers and a missing end marker are accepted",
  permissions: "none",
  async fn() {
    const h = header({ name: "big", size: 0 });
    // uid 2^32 in GNU base-256.
    h.fill(0, 108, 116);
    h[108] = 0x80;
    h[111] = 0x01;
    let sum = 0;
    h.fill(0x20, 148, 156);
    for (const b of h) sum += b;
    h.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    const es = await readAll(h, 512);
    assert.equal(es[0]!.uid, 2 ** 32);
  },
});

Deno.test({
  name: "malformed PAX records and garbage after the end are rejected",
  permissions: "none",
  async fn() {
    const enc = new TextEncoder();
    assert.deepEqual([...parsePaxRecords(enc.encode("11 path=ab\n"))], [["path", "ab"]]);
    for (const bad of ["12 path=ab\n", "5 a\n", "x path=a\n", "10 path=ab"]) {
      assert.throws(() => parsePaxRecords(enc.encode(bad)), AosError, bad);
    }
    await assert.rejects(
      () => readAll(tar(pax({ size: "-1" }), entry({ name: "a" }))),
      /invalid PAX size/,
    );
    const trailing = new Uint8Array([...tar(entry({ name: "a" })), 1, 2, 3]);
    await assert.rejects(() => readAll(trailing), /non-zero data after the end-of-archive/);
    const metaOnly = tar(...Array.from({ length: 70 }, () => pax({ comment: "x" })));
    await assert.rejects(() => readAll(metaOnly), /metadata headers in a row/);
  },
});

Deno.test({
  name: "UTF-8 names, signed-sum checksums and bodies read in one piece",
  permissions: "none",
  async fn() {
    const name = "données/ünïcode-名前.txt";
    const signedName = "é-signed";
    // A header whose checksum some old writers computed over signed bytes.
    const h = header({ name: signedName, size: 3 });
    let signed = 0;
    h.fill(0x20, 148, 156);
    for (const b of h) signed += b > 127 ? b - 256 : b;
    const signedHeader = header({ name: signedName, size: 3, checksum: signed });
    const data = tar(
      entry({ name, linkname: "" }, "utf"),
      [signedHeader, new TextEncoder().encode("sig"), new Uint8Array(509)],
      entry({ name: "big" }, "x".repeat(3000)),
    );
    for (const chunk of [7, 512, 100_000]) {
      const r = new TarReader(
        ReadableStream.from(
          Array.from(
            { length: Math.ceil(data.length / chunk) },
            (_, i) => data.subarray(i * chunk, (i + 1) * chunk),
          ),
        ),
      );
      const got: [string, string][] = [];
      for (;;) {
        const e = await r.next();
        if (!e) break;
        got.push([e.path, new TextDecoder().decode(await r.bodyBytes())]);
      }
      assert.deepEqual(got, [[name, "utf"], [signedName, "sig"], ["big", "x".repeat(3000)]]);
    }
    // A checksum that is neither sum is still refused.
    const bad = header({ name: signedName, size: 0, checksum: signed + 1 });
    await assert.rejects(
      () => new TarReader(ReadableStream.from([bad])).next(),
      (e) => e instanceof AosError && e.code === "invalidChecksum",
    );
  },
});

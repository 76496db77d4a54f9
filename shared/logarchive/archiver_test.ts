import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { archiveLog, DEFAULT_MAX_PART_SIZE, type LogArchive, LogArchiver } from "./mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Gunzips with the Web platform's decoder, independent of the fflate used for compressing. */
async function gunzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function unpack(archive: LogArchive): Promise<Uint8Array[]> {
  return await Promise.all(archive.parts.map((p) => gunzip(p.content)));
}

function journalLines(count: number): string[] {
  return Array.from(
    { length: count },
    (_, i) => `20240102030405Z aos-sm.service line ${i} ${"x".repeat(i % 97)} ünïcødé\n`,
  );
}

async function* asAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  for (const item of items) {
    await Promise.resolve();
    yield item;
  }
}

Deno.test({
  name: "logarchive: default limits, parts gunzip alone and concatenate to the input",
  permissions: "none",
  async fn() {
    const lines = journalLines(6000); // ~640 KiB
    const input = lines.join("");
    const archive = await archiveLog(asAsync(lines));
    assert.equal(archive.status, "ok");
    assert.equal(archive.size, enc.encode(input).length);
    assert.equal(archive.parts.length, Math.ceil(archive.size / DEFAULT_MAX_PART_SIZE));
    assert.deepEqual(archive.parts.map((p) => p.part), [1, 2, 3]);
    assert.ok(archive.parts.every((p) => p.partsCount === 3));
    const plain = await unpack(archive);
    for (const [i, part] of plain.entries()) {
      assert.ok(part.length <= DEFAULT_MAX_PART_SIZE);
      if (i < plain.length - 1) {
        assert.ok(part.length > DEFAULT_MAX_PART_SIZE - 300, "parts are filled up to the limit");
      }
      assert.match(dec.decode(part), /\n$/, "parts end at a line boundary");
    }
    assert.equal(plain.map((p) => dec.decode(p)).join(""), input);
    const compressed = archive.parts.reduce((n, p) => n + p.content.length, 0);
    assert.ok(compressed < archive.size / 4, `compressed ${compressed} of ${archive.size}`);
  },
});

Deno.test("logarchive: a single part decompresses with the gzip command", async () => {
  const archive = await archiveLog(journalLines(3000), { maxPartSize: 64 * 1024 });
  const second = archive.parts[1]!;
  const child = new Deno.Command("gzip", { args: ["-dc"], stdin: "piped", stdout: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(second.content);
  await writer.close();
  const out = await child.output();
  assert.ok(out.success);
  assert.deepEqual(out.stdout, await gunzip(second.content));
  assert.match(dec.decode(out.stdout), /^20240102030405Z aos-sm.service line \d+ /);
});

Deno.test({
  name: "logarchive: chunking of the source does not change the parts",
  permissions: "none",
  async fn() {
    const bytes = enc.encode(journalLines(500).join(""));
    const byLine = await archiveLog(journalLines(500), { maxPartSize: 4096 });
    // Odd-sized byte chunks cut lines and characters anywhere.
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += 333) chunks.push(bytes.subarray(at, at + 333));
    const byChunk = await archiveLog(chunks, { maxPartSize: 4096 });
    assert.deepEqual(await unpack(byChunk), await unpack(byLine));
    assert.ok(byLine.parts.length > 5);
  },
});

Deno.test({
  name: "logarchive: an over-long line is cut at a character boundary, never over the limit",
  permissions: "none",
  async fn() {
    const long = "€".repeat(100) + "\n"; // 301 bytes, 3-byte characters
    const archive = await archiveLog(["short\n", long, "tail"], { maxPartSize: 100 });
    const plain = await unpack(archive);
    assert.deepEqual(plain.map((p) => p.length), [6, 99, 99, 99, 4 + 4]);
    // Every part is valid UTF-8 on its own (fatal decoder).
    assert.equal(plain.map((p) => dec.decode(p)).join(""), "short\n" + long + "tail");
  },
});

Deno.test({
  name: "logarchive: more than maxPartCount parts is outOfRange; exactly the limit is fine",
  permissions: "none",
  async fn() {
    const line = "0123456789abcdefghi\n"; // 20 bytes
    const full = await archiveLog(Array(10).fill(line), { maxPartSize: 100, maxPartCount: 2 });
    assert.equal(full.parts.length, 2);
    await assert.rejects(
      archiveLog(Array(11).fill(line), { maxPartSize: 100, maxPartCount: 2 }),
      (err: unknown) => {
        assert.ok(err instanceof AosError);
        assert.equal(err.code, "outOfRange");
        assert.match(err.message, /exceeds 2 parts of 100 bytes/);
        return true;
      },
    );
  },
});

Deno.test({
  name: "logarchive: an empty log is one empty part with status empty",
  permissions: "none",
  async fn() {
    for (const source of [[], ["", new Uint8Array()]]) {
      const archive = await archiveLog(source);
      assert.deepEqual(archive, {
        status: "empty",
        parts: [{ part: 1, partsCount: 1, content: new Uint8Array() }],
        size: 0,
      });
    }
  },
});

Deno.test({
  name: "logarchive: push-style use, misuse and abort",
  permissions: "none",
  async fn() {
    const archiver = new LogArchiver({ maxPartSize: 16 });
    const buffer = enc.encode("reused buffer\n");
    archiver.add(buffer);
    buffer.fill(0x41); // the archiver copied what it kept
    archiver.add("no newline at end");
    const archive = archiver.finish();
    assert.equal(
      (await unpack(archive)).map((p) => dec.decode(p)).join(""),
      "reused buffer\nno newline at end",
    );
    assert.throws(() => archiver.add("x"), /finished/);
    assert.throws(() => new LogArchiver({ maxPartSize: 0 }), /too small/);

    const controller = new AbortController();
    controller.abort(new Error("request canceled"));
    await assert.rejects(archiveLog(["a\n"], { signal: controller.signal }), /request canceled/);
  },
});

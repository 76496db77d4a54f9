import assert from "node:assert/strict";
import { pipeLines, RotatingLog } from "./log_file.ts";

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const s of chunks) c.enqueue(enc.encode(s));
      c.close();
    },
  });
}

Deno.test("pipeLines splits chunks into timestamped lines, keeps a partial tail", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log = await RotatingLog.open(`${dir}/x.log`, { clock: { now: () => 0 } });
    await pipeLines(streamOf(["hel", "lo\nwor", "ld\n\ntail"]), log, "out");
    await log.close();
    assert.equal(
      await Deno.readTextFile(`${dir}/x.log`),
      "1970-01-01T00:00:00.000Z out hello\n" +
        "1970-01-01T00:00:00.000Z out world\n" +
        "1970-01-01T00:00:00.000Z out \n" +
        "1970-01-01T00:00:00.000Z out tail\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rotation keeps every file under the cap and at most `files` files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const log = await RotatingLog.open(`${dir}/x.log`, { maxBytes: 1024, files: 3 });
    const line = "x".repeat(100);
    // A line longer than the cap is split, never written whole.
    await pipeLines(streamOf([`${"y".repeat(5000)}\n`]), log, "err");
    for (let i = 0; i < 200; i++) await log.writeLine("out", `${i} ${line}`);
    await log.close();
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["x.log", "x.log.1", "x.log.2"]);
    for (const n of names) {
      const size = (await Deno.stat(`${dir}/${n}`)).size;
      assert.ok(size <= 1024 && size > 0, `${n} is ${size} bytes`);
    }
    const last = await Deno.readTextFile(`${dir}/x.log`);
    assert.ok(last.trimEnd().endsWith(`199 ${line}`));
    // Newest content is in .log, older in .log.1.
    const older = await Deno.readTextFile(`${dir}/x.log.1`);
    const firstNum = (t: string) => Number(/ out (\d+) /.exec(t)![1]);
    assert.ok(firstNum(older) < firstNum(last));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

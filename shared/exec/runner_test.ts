import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { DenoCommandRunner, RecordingRunner } from "./mod.ts";

const runner = () => new DenoCommandRunner({ allow: ["true", "false", "sh", "cat"] });

async function rejectsAos(p: Promise<unknown>, code: string): Promise<AosError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof AosError, `expected an AosError, got ${caught}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

Deno.test("runner: true succeeds with empty output", async () => {
  assert.deepEqual(await runner().run("true", []), { code: 0, stdout: "", stderr: "" });
});

Deno.test("runner: false throws failed with the exit code", async () => {
  const err = await rejectsAos(runner().run("false", []), "failed");
  assert.deepEqual(err.exitCode, 1);
  assert.match(err.message, /^false exited with 1: no output$/);
});

Deno.test("runner: allowFailure returns the result", async () => {
  const r = await runner().run("sh", ["-c", "echo out; echo bad >&2; exit 3"], {
    allowFailure: true,
  });
  assert.deepEqual(r, { code: 3, stdout: "out\n", stderr: "bad\n" });
});

Deno.test("runner: error message names the command and the first stderr line", async () => {
  const err = await rejectsAos(
    runner().run("sh", ["-c", "echo; echo 'first line' >&2; echo second >&2; exit 7"]),
    "failed",
  );
  assert.deepEqual(err.exitCode, 7);
  assert.match(err.message, /^sh -c ".*" exited with 7: first line$/);
});

Deno.test("runner: stdin text and bytes reach the child", async () => {
  const r = runner();
  assert.deepEqual((await r.run("cat", [], { stdin: "hello\n" })).stdout, "hello\n");
  const bytes = new Uint8Array(200_000).fill(0x61);
  assert.deepEqual((await r.run("cat", [], { stdin: bytes })).stdout.length, 200_000);
});

Deno.test("runner: refuses programs outside the allow-list before spawning", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const marker = `${dir}/spawned`;
    const r = new DenoCommandRunner({ allow: ["true"] });
    const err = await rejectsAos(r.run("sh", ["-c", `touch ${marker}`]), "notSupported");
    assert.match(err.message, /"sh" is not in this runner's allow-list \[true\]/);
    await assert.rejects(() => Deno.stat(marker), Deno.errors.NotFound);
    // Same name through another path is another program.
    await rejectsAos(r.run("/usr/bin/true", []), "notSupported");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runner: a missing program is notFound", async () => {
  const r = new DenoCommandRunner({ allow: ["/nonexistent/aos-tool"] });
  await rejectsAos(r.run("/nonexistent/aos-tool", []), "notFound");
});

Deno.test("runner: timeout kills the child even when a grandchild keeps the pipes", async () => {
  const dir = await Deno.makeTempDir();
  let orphan: number | undefined;
  try {
    // sh is killed; the backgrounded sleep survives it and still holds stdout/stderr open.
    const p = runner().run("sh", ["-c", `sleep 30 & echo $! > ${dir}/pid; wait`], {
      timeoutMs: 200,
    });
    const err = await rejectsAos(p, "timeout");
    assert.match(err.message, /did not exit within 200 ms/);
    orphan = Number(await Deno.readTextFile(`${dir}/pid`));
  } finally {
    if (orphan) {
      try {
        Deno.kill(orphan, "SIGKILL");
      } catch { /* already gone */ }
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runner: abort kills the child", async () => {
  const ac = new AbortController();
  const p = runner().run("sh", ["-c", "exec sleep 30"], { signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await rejectsAos(p, "canceled");
  await rejectsAos(runner().run("true", [], { signal: ac.signal }), "canceled");
});

Deno.test("runner: output over the cap kills the child", async () => {
  const r = new DenoCommandRunner({ allow: ["sh"], maxOutputBytes: 1000 });
  assert.deepEqual((await r.run("sh", ["-c", "head -c 1000 /dev/zero"])).stdout.length, 1000);
  const err = await rejectsAos(r.run("sh", ["-c", "exec cat /dev/zero"]), "outOfRange");
  assert.match(err.message, /more than 1000 bytes/);
});

Deno.test({
  name: "fake runner: records calls and fails like the real one",
  permissions: "none",
  fn: async () => {
    const fake = new RecordingRunner({
      allow: ["ip"],
      respond: (c) => c.args[0] === "bad" ? { code: 2, stderr: "nope\n" } : { stdout: "ok" },
    });
    assert.deepEqual((await fake.run("ip", ["link"], { stdin: "x" })).stdout, "ok");
    const err = await rejectsAos(fake.run("ip", ["bad"]), "failed");
    assert.deepEqual(err.message, "ip bad exited with 2: nope");
    assert.deepEqual((await fake.run("ip", ["bad"], { allowFailure: true })).code, 2);
    await rejectsAos(fake.run("nft", []), "notSupported");
    assert.deepEqual(fake.lines, ["ip link", "ip bad", "ip bad"]);
    assert.deepEqual(fake.calls[0]?.stdin, "x");
  },
});

import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { memoryLogger } from "../core/logger.ts";
import { type FileChange, watchFile } from "./mod.ts";

const DEBOUNCE = 150;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aos_fswatch_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Replaces a file the way state writers do: a temporary file renamed over the target. */
async function replaceAtomically(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(`${path}.tmp`, text);
  await Deno.rename(`${path}.tmp`, path);
}

async function readOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return null;
  }
}

Deno.test("fswatch: a burst of writes is one change; reads are not changes", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/state.json`;
    await Deno.writeTextFile(path, "0");
    const changes: { kinds: string; text: string | null }[] = [];
    let notify!: () => void;
    await using _watcher = watchFile(path, {
      debounceMs: 500,
      onChange: async (change) => {
        // Reading the file, as a reloading consumer does, must not produce a change itself.
        changes.push({ kinds: change.kinds.join(","), text: await readOrNull(path) });
        notify();
      },
    });
    let arrived = new Promise<void>((r) => (notify = r));
    // Writes spaced well inside the quiet period, each one restarting it.
    for (let i = 1; i <= 5; i++) {
      await Deno.writeTextFile(path, String(i));
      await new Promise((r) => setTimeout(r, 30));
    }
    await arrived;
    arrived = new Promise<void>((r) => (notify = r));

    // The next change reported is the marker replace: nothing was left over from the burst
    // or from the handler's read.
    await replaceAtomically(path, "marker");
    await arrived;
    assert.equal(changes.length, 2, JSON.stringify(changes));
    assert.equal(changes[0]?.text, "5");
    assert.match(changes[0]?.kinds ?? "", /modify/);
    assert.deepEqual(changes[1], { kinds: "rename", text: "marker" });
  });
});

Deno.test("fswatch: async iteration folds changes not yet consumed", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/state.json`;
    await using watcher = watchFile(path, { debounceMs: DEBOUNCE });
    await Deno.writeTextFile(path, "1");
    const first = await watcher.next();
    assert.equal(first?.exists, true);
    assert.equal(first?.path, path);
    await replaceAtomically(path, "2");
    assert.deepEqual((await watcher.next())?.kinds, ["rename"]);
  });
});

Deno.test("fswatch: a missing file that appears later, then disappears, is seen", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/nodeconfig.json`;
    const changes: (FileChange & { text: string | null })[] = [];
    let notify!: () => void;
    let arrived = new Promise<void>((r) => (notify = r));
    await using _watcher = watchFile(path, {
      debounceMs: DEBOUNCE,
      onChange: async (change) => {
        changes.push({ ...change, text: await readOrNull(path) });
        notify();
      },
    });

    // Other files in the directory are not reported.
    await Deno.writeTextFile(`${dir}/unrelated`, "x");
    await new Promise((r) => setTimeout(r, DEBOUNCE * 3));
    assert.equal(changes.length, 0);

    await replaceAtomically(path, '{"version":"1"}');
    await arrived;
    arrived = new Promise<void>((r) => (notify = r));
    assert.equal(changes.length, 1);
    assert.equal(changes[0]?.exists, true);
    assert.equal(changes[0]?.text, '{"version":"1"}');

    await Deno.remove(path);
    await arrived;
    assert.equal(changes.length, 2);
    assert.equal(changes[1]?.exists, false);
    assert.deepEqual(changes[1]?.kinds, ["remove"]);
  });
});

Deno.test("fswatch: abort ends iteration and closes everything; errors are clear", async () => {
  await withDir(async (dir) => {
    const controller = new AbortController();
    const watcher = watchFile(`${dir}/state`, { signal: controller.signal, debounceMs: DEBOUNCE });
    const collected: FileChange[] = [];
    const consumer = (async () => {
      for await (const change of watcher) {
        collected.push(change);
        controller.abort();
      }
    })();
    await Deno.writeTextFile(`${dir}/state`, "a");
    await consumer;
    assert.equal(collected.length, 1);
    await watcher.close(); // idempotent, waits for the watcher loop
    assert.equal(await watcher.next(), undefined);

    // A change pending in the debounce timer when closing is dropped, not leaked.
    const pending = watchFile(`${dir}/state`, { debounceMs: 60_000 });
    await Deno.writeTextFile(`${dir}/state`, "b");
    await new Promise((r) => setTimeout(r, 50));
    await pending.close();

    const aborted = new AbortController();
    aborted.abort();
    const dead = watchFile(`${dir}/state`, { signal: aborted.signal });
    assert.equal(await dead.next(), undefined);
    await dead.close();

    assert.throws(
      () => watchFile(`${dir}/missing-dir/state`),
      (err: unknown) => err instanceof AosError && err.code === "notFound",
    );
  });
});

Deno.test("fswatch: a failing handler is logged and later changes still arrive", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/state`;
    const logger = memoryLogger();
    let calls = 0;
    let notify!: () => void;
    let second = new Promise<void>((r) => (notify = r));
    await using _watcher = watchFile(path, {
      debounceMs: DEBOUNCE,
      logger,
      onChange: () => {
        calls++;
        if (calls === 1) throw new Error("bad config");
        notify();
      },
    });
    await Deno.writeTextFile(path, "1");
    while (!logger.records.length) await new Promise((r) => setTimeout(r, 20));
    assert.equal(logger.records[0]?.msg, "File change handler failed");
    await Deno.writeTextFile(path, "2");
    await second;
    second = Promise.resolve();
    assert.equal(calls, 2);
  });
});

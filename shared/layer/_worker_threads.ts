/**
 * Test helper: sees Worker threads of this process (Linux `/proc`), to prove none is left running.
 * @module
 */
import assert from "node:assert/strict";

/** Threads of this process running a Worker (Deno names them `worker-<n>`). */
export function workerThreads(): Set<string> {
  const out = new Set<string>();
  for (const t of Deno.readDirSync("/proc/self/task")) {
    try {
      const comm = Deno.readTextFileSync(`/proc/self/task/${t.name}/comm`).trim();
      if (comm.startsWith("worker-")) out.add(`${t.name}:${comm}`);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Fails unless every Worker thread started since `before` ends within a few seconds. */
export async function assertWorkersEnded(before: Set<string>): Promise<void> {
  let left: string[] = [];
  for (let i = 0; i < 100; i++) {
    left = [...workerThreads()].filter((t) => !before.has(t));
    if (left.length === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`worker threads still running: ${left.join(", ")}`);
}

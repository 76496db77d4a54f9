/**
 * The provision-state file: absent = `unprovisioned`, else `provisioned` or `paused`.
 * Written atomically (temp file + rename) so a crash leaves the old or the new state.
 * @module
 */
import { AosError } from "@aos/shared/errors";
import type { NodeState } from "./types.ts";

/** State read from the file, with the reason when it is unreadable. */
export interface StoredState {
  state: NodeState;
  error?: string;
}

/** Reads the provision-state file. */
export async function readNodeState(path: string): Promise<StoredState> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { state: "unprovisioned" };
    return {
      state: "error",
      error: `Cannot read provision state ${path}: ${(err as Error).message}`,
    };
  }
  const value = text.trim();
  if (value === "provisioned" || value === "paused") return { state: value };
  return { state: "error", error: `Provision state file ${path} holds "${value.slice(0, 40)}"` };
}

/** Persists `state`: `unprovisioned` removes the file. */
export async function writeNodeState(path: string, state: NodeState): Promise<void> {
  if (state === "error") throw new AosError("invalidArgument", "Cannot persist node state error");
  if (state === "unprovisioned") {
    await Deno.remove(path).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
    return;
  }
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, `${state}\n`);
  await Deno.rename(tmp, path);
}

/** Upstream transition rules (the request and the states it is allowed from). */
export const ALLOWED_FROM: Record<string, NodeState[]> = {
  startProvisioning: ["unprovisioned"],
  finishProvisioning: ["unprovisioned"],
  deprovision: ["provisioned", "paused"],
  pause: ["provisioned"],
  resume: ["paused"],
};

/** Throws `wrongState` when `op` is not allowed in `current`. */
export function checkTransition(op: keyof typeof ALLOWED_FROM, current: NodeState): void {
  const allowed = ALLOWED_FROM[op] ?? [];
  if (!allowed.includes(current)) {
    throw new AosError(
      "wrongState",
      `Cannot ${op}: node is ${current} (allowed from ${allowed.join(", ")})`,
    );
  }
}

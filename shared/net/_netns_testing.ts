/**
 * Helpers for tests that use real network namespaces (root only). Not exported by `mod.ts`.
 * @module
 */

import { DenoCommandRunner } from "../exec/runner.ts";
import { IpTool } from "./ip.ts";

function uid(): number | undefined {
  try {
    return Deno.uid() ?? undefined;
  } catch {
    return undefined;
  }
}

/** True when the tests run as root (namespaces, nft and tc need it). */
export const isRoot: boolean = uid() === 0;

/** True when `program` is found in `PATH`. */
export function hasProgram(program: string): boolean {
  const path = Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin";
  return path.split(":").some((dir) => {
    try {
      return Deno.statSync(`${dir}/${program}`).isFile;
    } catch {
      return false;
    }
  });
}

/** Prints why a test is skipped, so the skip is visible in the run's output. */
export function skipNotice(test: string, reason: string | undefined): boolean {
  if (reason) console.log(`[skip] ${test}: ${reason}`);
  return reason !== undefined;
}

/** `undefined` when namespace tests can run, else the reason they cannot. */
export function netnsSkipReason(...programs: string[]): string | undefined {
  if (!isRoot) return "needs root (network namespaces)";
  const missing = ["ip", ...programs].filter((p) => !hasProgram(p));
  return missing.length ? `missing programs: ${missing.join(", ")}` : undefined;
}

let counter = 0;

/** A namespace name unique to this run: `aostest-<pid>-<n>`. */
export function uniqueNetns(): string {
  return `aostest-${Deno.pid}-${++counter}`;
}

/** A real runner allowed `ip`, `nft`, `tc`. */
export function realRunner(): DenoCommandRunner {
  return new DenoCommandRunner({ allow: ["ip", "nft", "tc"] });
}

/**
 * Creates `count` fresh namespaces, runs `fn`, and deletes them in any case (deleting a
 * namespace also destroys the links inside it).
 */
export async function withNetns(
  count: number,
  fn: (names: string[], ip: IpTool) => Promise<void>,
): Promise<void> {
  const ip = new IpTool({ runner: realRunner() });
  const names: string[] = [];
  let outcome: { error: unknown } | undefined;
  try {
    for (let i = 0; i < count; i++) {
      const name = uniqueNetns();
      names.push(name);
      await ip.netnsAdd(name);
    }
    await fn(names, ip);
  } catch (error) {
    outcome = { error };
  }
  const failed: unknown[] = [];
  for (const name of names.reverse()) await ip.netnsDelete(name).catch((e) => failed.push(e));
  if (outcome) throw outcome.error;
  if (failed.length) throw new AggregateError(failed, "Cannot delete test namespaces");
}

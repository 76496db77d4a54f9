/**
 * Helpers every bench uses: `--name value` options, a process's memory from /proc, medians, the
 * module a component ships as.
 * @module
 */
import { bundlePath, writeBundle } from "../compile.ts";
import type { Component } from "../permissions/mod.ts";

/** The value after `--<name>` on the command line, or `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] ?? fallback : fallback;
}

/** A process's resident memory, MB: `VmRSS` and its anonymous and file-backed parts. */
export interface Rss {
  total: number;
  anon: number;
  file: number;
}

/** {@link Rss} of process `pid` (`/proc/<pid>/status`). */
export async function vmRss(pid: number): Promise<Rss> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const mb = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, "m").exec(status)?.[1] ?? NaN) / 1024;
  return { total: mb("VmRSS"), anon: mb("RssAnon"), file: mb("RssFile") };
}

/** `VmRSS` of process `pid`, MB. */
export async function rssMb(pid: number): Promise<number> {
  return (await vmRss(pid)).total;
}

/** "61.2 MB (anon 20.1, file-backed 41.1)". */
export function showRss(r: Rss): string {
  return `${r.total.toFixed(1)} MB (anon ${r.anon.toFixed(1)}, file-backed ${r.file.toFixed(1)})`;
}

/** Median (mean of the two middle values for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The module to run `component` from, as the `--bundles DIR` / `--source` options say: by
 * default its bundle, built into `scratchDir` as `compile.ts` builds it (what the binaries
 * embed); `undefined` for `--source` (its `main.ts`).
 *
 * The first `deno run` of a module file parses it to build the module graph (cached in
 * DENO_DIR afterwards) and keeps that memory: ~20 MB for a component's bundle. A compiled binary
 * has its graph built at compile time, so one short run (`--help`) primes the cache first.
 */
export async function shippedMain(
  component: Component,
  scratchDir: string,
): Promise<string | undefined> {
  if (Deno.args.includes("--source")) return undefined;
  const bundles = arg("bundles", "");
  const main = bundles ? bundlePath(bundles, component) : await writeBundle(component, scratchDir);
  await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", main, "--help"],
    stdout: "null",
    stderr: "null",
  }).output();
  return main;
}

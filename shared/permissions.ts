/**
 * Permission manifests: the exact Deno grants a component needs, rendered as CLI flags and
 * verified at start-up with `Deno.permissions.query`.
 *
 * A manifest is computed from the component's resolved config (see `permissions/`); the same
 * value feeds `deno task <component>`, the tests and `compile.ts`, so they cannot drift.
 * @module
 */
import { resolve } from "node:path";
import { AosError } from "./core/errors.ts";

/** The grants of one component. Every list is exact; an empty list means no grant. */
export interface PermissionManifest {
  /** Component name, for messages. */
  component: string;
  /** Paths readable (files or directories). */
  read: string[];
  /** Paths writable. */
  write: string[];
  /** `host:port` or `host` entries reachable (listen and dial). */
  net: string[];
  /** Program names or paths that may be spawned. */
  run: string[];
  /** Environment variables readable. */
  env: string[];
  /** `Deno.*`/`node:os` system-info APIs (e.g. `osRelease`). */
  sys: string[];
  /** Environment variables that read as `undefined` without a permission error. */
  ignoreEnv: string[];
}

/** Removes duplicates and empty entries, sorts for stable output. */
function tidy(list: string[]): string[] {
  return [...new Set(list.filter((item) => item !== ""))].sort();
}

/** Resolves paths and drops those already covered by a listed parent directory. */
function tidyPaths(list: string[]): string[] {
  const all = tidy(list.filter((p) => p !== "").map((p) => resolve(p)));
  return all.filter((p) => !all.some((parent) => parent !== p && p.startsWith(`${parent}/`)));
}

/** Normalises a manifest (absolute paths, no duplicates, sorted). */
export function normalizeManifest(m: PermissionManifest): PermissionManifest {
  return {
    component: m.component,
    read: tidyPaths(m.read),
    write: tidyPaths(m.write),
    net: tidy(m.net),
    run: tidy(m.run),
    env: tidy(m.env),
    sys: tidy(m.sys),
    ignoreEnv: tidy(m.ignoreEnv),
  };
}

function checkEntry(kind: string, entry: string) {
  if (entry.includes(",")) {
    throw new AosError("invalidArgument", `${kind} entry "${entry}" must not contain a comma`);
  }
}

/** Renders a manifest as `deno run` flags (never `-A`, never an unscoped grant). */
export function manifestToFlags(manifest: PermissionManifest): string[] {
  const m = normalizeManifest(manifest);
  const flags = ["--no-prompt"];
  const add = (flag: string, list: string[]) => {
    if (!list.length) return;
    list.forEach((e) => checkEntry(flag, e));
    flags.push(`${flag}=${list.join(",")}`);
  };
  add("--allow-read", m.read);
  add("--allow-write", m.write);
  add("--allow-net", m.net);
  add("--allow-run", m.run);
  add("--allow-env", m.env);
  add("--allow-sys", m.sys);
  add("--ignore-env", m.ignoreEnv);
  return flags;
}

/** Flags that must never appear. */
const FORBIDDEN = [
  /^-A$/,
  /^--allow-all$/,
  /^--allow-ffi/,
  /^--allow-(read|write|net|run|env|sys|import)$/,
  /^-[RWNES]$/,
];

/** Throws if `flags` contain a forbidden or unscoped grant. */
export function assertNoForbiddenFlags(flags: readonly string[]): void {
  for (const f of flags) {
    if (FORBIDDEN.some((re) => re.test(f))) {
      throw new AosError("wrongState", `forbidden permission flag ${f}`);
    }
  }
}

type Descriptor = Deno.PermissionDescriptor;

async function state(desc: Descriptor): Promise<Deno.PermissionState> {
  return (await Deno.permissions.query(desc)).state;
}

/**
 * Verifies at start-up that the running process has every grant of `manifest` and none of the
 * dangerous ones (unscoped read/write/net/env, `ffi`, `run` where the manifest has none).
 * Returns the list of problems (empty when all is well).
 */
export async function verifyGrants(manifest: PermissionManifest): Promise<string[]> {
  const m = normalizeManifest(manifest);
  const problems: string[] = [];
  for (const path of m.read) {
    if (await state({ name: "read", path }) !== "granted") {
      problems.push(`read ${path} not granted`);
    }
  }
  for (const path of m.write) {
    if (await state({ name: "write", path }) !== "granted") {
      problems.push(`write ${path} not granted`);
    }
  }
  for (const host of m.net) {
    if (
      await state({ name: "net", host: host.startsWith(":") ? `0.0.0.0${host}` : host }) !==
        "granted"
    ) {
      problems.push(`net ${host} not granted`);
    }
  }
  for (const command of m.run) {
    if (await state({ name: "run", command }) !== "granted") {
      problems.push(`run ${command} not granted`);
    }
  }
  for (const name of ["read", "write", "net", "env", "sys", "ffi", "run"] as const) {
    if (await state({ name }) === "granted") problems.push(`unscoped ${name} must not be granted`);
  }
  // Deno cannot report a partial run grant, so probe the programs an attacker would want.
  const probes = ["sh", "/bin/sh", "bash", "/bin/bash", "env", Deno.execPath()];
  for (const command of probes) {
    if (m.run.includes(command)) continue;
    if (await state({ name: "run", command }) === "granted") {
      problems.push(`running ${command} must not be granted`);
    }
  }
  return problems;
}

/** Throws one clear error when {@link verifyGrants} finds problems. */
export async function assertGrants(manifest: PermissionManifest): Promise<void> {
  const problems = await verifyGrants(manifest);
  if (problems.length) {
    throw new AosError(
      "wrongState",
      `permission set does not match its config: ${problems.join("; ")}` +
        ` (start it with 'deno task ${manifest.component}' to get the right flags)`,
    );
  }
}

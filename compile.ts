/**
 * Builds self-contained executables for a node role with each component's permission set
 * baked in: `deno run -A compile.ts --role main --config-dir /etc/aos [--out dist]`.
 *
 * The flags come from the same manifests as `deno task <component>` (computed from the
 * node's configs), so a compiled binary can do exactly what the launched process can. Each
 * component is first bundled into one minified module (`<out>/<component>.bundle.js`, `deno
 * bundle`; esbuild comes from the npm registry): at rest a bundled component needs 4–7 MB less
 * memory than its source module graph (bench/README.md), and the binary embeds that bundle.
 * `deno compile` needs the `denort` runtime: set `DENORT_BIN` to a local denort. Without it,
 * every artefact but the binaries is written (`<role>.manifest.json`, `build-<role>.sh` with
 * the exact commands) and the final step is reported as skipped.
 * @module
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AosError } from "@aos/shared/errors";
import { assertNoForbiddenFlags, manifestToFlags } from "@aos/shared/permissions";
import { mainModule } from "./permissions/launch.ts";
import {
  type Component,
  parseComponentArgs,
  resolveManifest,
  runtimeFlags,
} from "./permissions/mod.ts";

/** The repository (its deno.json maps the imports the bundles resolve). */
const REPO_ROOT = fileURLToPath(new URL(".", import.meta.url));

/** Where `compile.ts --out <outDir>` writes a component's bundle. */
export function bundlePath(outDir: string, component: Component): string {
  return join(resolve(outDir), `${component}.bundle.js`);
}

/** The `deno bundle` arguments that write `component`'s bundle into `outDir`. */
export function bundleArgs(component: Component, outDir: string): string[] {
  return [
    "bundle",
    "--platform",
    "deno",
    "--minify",
    mainModule(component),
    "-o",
    bundlePath(outDir, component),
  ];
}

/**
 * Writes `component`'s bundle into `outDir` exactly as compile.ts does (benches measure the
 * form the binaries embed); returns its path.
 */
export async function writeBundle(component: Component, outDir: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: bundleArgs(component, outDir),
    cwd: REPO_ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new AosError(
      "failed",
      `Cannot bundle ${component}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return bundlePath(outDir, component);
}

/** The bundles of a main node's components in `outDir`, as `startLocalUnit`'s `mains`. */
export function unitBundles(outDir: string): Record<"iam" | "sm" | "cm", string> {
  return {
    iam: bundlePath(outDir, "iam"),
    sm: bundlePath(outDir, "sm"),
    cm: bundlePath(outDir, "cm"),
  };
}

/** Components of each node role. */
export const ROLES: Record<string, Component[]> = {
  main: ["iam", "sm", "cm"],
  secondary: ["iam", "sm", "mp"],
};

/** One executable to build. */
export interface CompileTarget {
  component: Component;
  output: string;
  /** Arguments of `deno compile` (without the deno binary). */
  args: string[];
  /** The baked-in permission flags (also part of `args`). */
  flags: string[];
  /** The bundle the binary is compiled from. */
  bundle: string;
  /** Arguments of `deno bundle` that writes {@link bundle}. */
  bundleArgs: string[];
}

/** Computes the `deno compile` invocations for a role from the configs in `configDir`. */
export async function planCompile(
  role: string,
  configDir: string,
  outDir: string,
): Promise<CompileTarget[]> {
  const components = ROLES[role];
  if (!components) {
    throw new AosError(
      "invalidArgument",
      `unknown role "${role}" (${Object.keys(ROLES).join(", ")})`,
    );
  }
  const targets: CompileTarget[] = [];
  for (const component of components) {
    const config = resolve(configDir, `${component}.cfg`);
    const runArgs = ["-c", config];
    const resolved = await resolveManifest(component, parseComponentArgs(component, runArgs));
    if (resolved.iam) runArgs.push("--iam-config", resolved.iam.path);
    const flags = manifestToFlags(resolved.manifest);
    assertNoForbiddenFlags(flags);
    const output = join(resolve(outDir), `aos-${component}`);
    const bundle = bundlePath(outDir, component);
    targets.push({
      component,
      output,
      flags,
      bundle,
      bundleArgs: bundleArgs(component, outDir),
      args: [
        "compile",
        ...flags,
        ...runtimeFlags(component),
        "--output",
        output,
        bundle,
        ...runArgs,
      ],
    });
  }
  return targets;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

function option(argv: string[], name: string, fallback?: string): string {
  const i = argv.indexOf(name);
  const value = i >= 0 ? argv[i + 1] : fallback;
  if (value === undefined) throw new AosError("invalidArgument", `missing ${name} <value>`);
  return value;
}

async function main(argv: string[]): Promise<number> {
  try {
    const role = option(argv, "--role", "main");
    const configDir = option(argv, "--config-dir", "/etc/aos");
    const outDir = option(argv, "--out", "dist");
    const targets = await planCompile(role, configDir, outDir);
    await Deno.mkdir(outDir, { recursive: true });
    const manifestFile = join(outDir, `${role}.manifest.json`);
    await Deno.writeTextFile(
      manifestFile,
      JSON.stringify(
        Object.fromEntries(
          targets.map((t) => [t.component, { output: t.output, bundle: t.bundle, flags: t.flags }]),
        ),
        null,
        2,
      ) + "\n",
    );
    const script = join(outDir, `build-${role}.sh`);
    await Deno.writeTextFile(
      script,
      `#!/bin/sh\nset -e\ncd ${shellQuote(REPO_ROOT)}\n` +
        targets.flatMap((t) => [t.bundleArgs, t.args])
          .map((args) => ["deno", ...args].map(shellQuote).join(" ")).join("\n") +
        "\n",
      { mode: 0o755 },
    );
    console.log(`wrote ${manifestFile} and ${script}`);
    for (const t of targets) {
      const out = await new Deno.Command(Deno.execPath(), { args: t.bundleArgs, cwd: REPO_ROOT })
        .output();
      if (!out.success) {
        console.error(`deno bundle of ${t.component} failed (exit ${out.code})`);
        return 1;
      }
      console.log(`bundled ${t.bundle}`);
    }
    const denort = Deno.env.get("DENORT_BIN");
    if (!denort) {
      console.log(
        "DENORT_BIN is not set: skipping the final binary step (deno compile needs a local denort)",
      );
      return 0;
    }
    for (const t of targets) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: t.args,
        env: { DENORT_BIN: denort },
      }).output();
      if (!out.success) {
        console.error(`deno compile of ${t.component} failed (exit ${out.code})`);
        return 1;
      }
      console.log(`built ${t.output}`);
    }
    return 0;
  } catch (err) {
    console.error(err instanceof AosError ? err.message : String(err));
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

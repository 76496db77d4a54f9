/**
 * Per-component permission manifests: from a component's resolved config (and the node's
 * `iam.cfg` where its key files live) to the exact Deno flags it runs with.
 *
 * The launcher (`deno task <component>`), the audit printer (`deno task permissions`), each
 * `main.ts` start-up check, the tests and `compile.ts` all go through {@link resolveManifest}.
 * @module
 */
import { dirname, join } from "node:path";
import { type CliArgs, type CliSpec, parseCli } from "@aos/shared/cli";
import { loadConfigFile } from "@aos/shared/config";
import type { PermissionManifest } from "@aos/shared/permissions";
import { type CmConfig, cmConfigSchema } from "../cm/config.ts";
import { type IamConfig, iamConfigSchema } from "../iam/config.ts";
import { type MpConfig, mpConfigSchema } from "../mp/config.ts";
import { type SmConfig, smConfigSchema } from "../sm/config.ts";
import { cmManifest } from "./cm.ts";
import { iamManifest } from "./iam.ts";
import { mpManifest } from "./mp.ts";
import { smManifest } from "./sm.ts";

export { cmManifest, iamManifest, mpManifest, smManifest };

/**
 * Runtime flags every component runs with, `deno run` and compiled alike (bench/README.md):
 * - V8 grows the young generation to 16 MB per semi-space after bursts of allocation and keeps
 *   it; capped at 1 MB, idle VmRSS drops by 4–14 MB per component at no measurable cost in
 *   CreateKey, launch or cloud-message throughput;
 * - without the V8 code cache (an mmapped SQLite file) each component is ~4 MB smaller at rest
 *   and starts ~0.1 s slower, once: components are long-running.
 */
export const RUNTIME_FLAGS: readonly string[] = [
  "--v8-flags=--max-semi-space-size=1",
  "--no-code-cache",
];

/**
 * Extra V8 flags per component. `iam` is idle nearly all its life (a few calls at provisioning
 * and certificate renewal) and has the tightest memory budget, so it runs V8's lite mode: no
 * optimizing compilers and no JIT code: 3 MB less at rest in a running unit (62.3 -> 59.2 MB,
 * bundled) and ~10 MB less after a burst of provisioning, for ~8% fewer key/certificate round
 * trips per second (bench/README.md). No component uses WebAssembly, which lite mode rules out.
 */
const COMPONENT_V8_FLAGS: Partial<Record<Component, readonly string[]>> = {
  iam: ["--lite-mode"],
};

/** {@link RUNTIME_FLAGS} with `component`'s own V8 flags merged into the one `--v8-flags`. */
export function runtimeFlags(component: Component): string[] {
  const extra = COMPONENT_V8_FLAGS[component] ?? [];
  return RUNTIME_FLAGS.map((f) =>
    f.startsWith("--v8-flags=") && extra.length > 0 ? [f, ...extra].join(",") : f
  );
}

/** The components with a manifest. */
export const COMPONENTS = ["iam", "sm", "cm", "mp"] as const;
/** A component name. */
export type Component = typeof COMPONENTS[number];

/** Upstream default config paths. */
export const DEFAULT_CONFIG: Record<Component, string> = {
  iam: "/etc/aos/iam.cfg",
  sm: "/etc/aos/sm.cfg",
  cm: "/etc/aos/cm.cfg",
  mp: "/etc/aos/mp.cfg",
};

/** Whether a string names a component. */
export function isComponent(s: string): s is Component {
  return (COMPONENTS as readonly string[]).includes(s);
}

/** A component's command line: the upstream flags, `-p` for iam, `--iam-config` for the rest. */
export function componentCliSpec(component: Component): CliSpec {
  return {
    name: component,
    defaultConfig: DEFAULT_CONFIG[component],
    provisioning: component === "iam",
    iamConfig: component !== "iam",
  };
}

/** Parses a component's command line (the upstream flags plus ours). */
export function parseComponentArgs(component: Component, argv: string[]): CliArgs {
  return parseCli(argv, componentCliSpec(component));
}

/**
 * The node's `iam.cfg` for a component that uses IAM-issued keys: `--iam-config`, else an
 * `iam.cfg` beside the component's config when there is one. Errors when a named file is bad.
 */
export async function findIamConfig(args: CliArgs): Promise<LoadedIam | undefined> {
  const path = args.iamConfig ?? join(dirname(args.config), "iam.cfg");
  if (args.iamConfig === undefined) {
    try {
      await Deno.stat(path);
    } catch {
      return undefined;
    }
  }
  return { path, config: await loadConfigFile(path, iamConfigSchema) };
}

/** An `iam.cfg` and where it came from. */
export interface LoadedIam {
  path: string;
  config: IamConfig;
}

/** A component's loaded config, its manifest and the IAM config used for it. */
export interface ResolvedManifest {
  manifest: PermissionManifest;
  config: IamConfig | SmConfig | CmConfig | MpConfig;
  iam?: LoadedIam;
}

/** Adds read access to the `iam.cfg` the component itself must parse at start-up. */
function withIamConfig(m: PermissionManifest, iam: LoadedIam | undefined): PermissionManifest {
  return iam ? { ...m, read: [...m.read, iam.path] } : m;
}

/** Loads the config named by `args` and computes the manifest of `component`. */
export async function resolveManifest(
  component: Component,
  args: CliArgs,
): Promise<ResolvedManifest> {
  switch (component) {
    case "iam": {
      const config = await loadConfigFile(args.config, iamConfigSchema);
      return { config, manifest: iamManifest(config, args.config) };
    }
    case "sm": {
      const config = await loadConfigFile(args.config, smConfigSchema);
      const iam = await findIamConfig(args);
      const manifest = withIamConfig(smManifest(config, args.config, iam?.config), iam);
      return { config, manifest, ...(iam ? { iam } : {}) };
    }
    case "cm": {
      const config = await loadConfigFile(args.config, cmConfigSchema);
      const iam = await findIamConfig(args);
      const manifest = withIamConfig(cmManifest(config, args.config, iam?.config), iam);
      return { config, manifest, ...(iam ? { iam } : {}) };
    }
    case "mp": {
      const config = await loadConfigFile(args.config, mpConfigSchema);
      const iam = await findIamConfig(args);
      const manifest = withIamConfig(mpManifest(config, args.config, iam?.config), iam);
      return { config, manifest, ...(iam ? { iam } : {}) };
    }
  }
}

/**
 * `deno task <component> -- -c <config> [args]`: computes the component's flags from its
 * config and runs it with `--no-prompt` and exactly those flags.
 *
 * `deno task permissions -- <component> -c <config>` prints the flags for audit instead.
 * @module
 */
import { fileURLToPath } from "node:url";
import { assertNoForbiddenFlags, manifestToFlags } from "@aos/shared/permissions";
import { AosError } from "@aos/shared/errors";
import {
  COMPONENTS,
  isComponent,
  parseComponentArgs,
  resolveManifest,
  runtimeFlags,
} from "./mod.ts";

/** The member entry point of each component. */
export function mainModule(component: string): string {
  return fileURLToPath(new URL(`../${component}/main.ts`, import.meta.url));
}

/** Options of {@link commandFor}. */
export interface CommandOptions {
  /** The module to run instead of the member's `main.ts`, e.g. a bundle `compile.ts` wrote. */
  main?: string | undefined;
}

/** The full `deno run` command line for a component (without the deno binary). */
export async function commandFor(component: string, argv: string[], options: CommandOptions = {}) {
  if (!isComponent(component)) {
    throw new AosError(
      "invalidArgument",
      `unknown component "${component}" (${COMPONENTS.join(", ")})`,
    );
  }
  const rest = argv[0] === "--" ? argv.slice(1) : argv;
  const args = parseComponentArgs(component, rest);
  const resolved = await resolveManifest(component, args);
  const flags = manifestToFlags(resolved.manifest);
  assertNoForbiddenFlags(flags);
  // Pass the IAM config that was used for the grants explicitly, so the component sees the same.
  const extra = resolved.iam && args.iamConfig === undefined
    ? ["--iam-config", resolved.iam.path]
    : [];
  return {
    flags,
    manifest: resolved.manifest,
    args: [
      "run",
      ...flags,
      ...runtimeFlags(component),
      options.main ?? mainModule(component),
      ...rest,
      ...extra,
    ],
  };
}

async function main(argv: string[]): Promise<number> {
  const [mode, ...rest] = argv;
  try {
    if (mode === "print") {
      const [component, ...args] = rest[0] === "--" ? rest.slice(1) : rest;
      const { flags } = await commandFor(component ?? "", args);
      console.log(flags.join(" \\\n  "));
      return 0;
    }
    const { args } = await commandFor(mode ?? "", rest);
    const child = new Deno.Command(Deno.execPath(), { args, stdin: "inherit" }).spawn();
    const forward = (sig: Deno.Signal) => () => child.kill(sig);
    const onInt = forward("SIGINT");
    const onTerm = forward("SIGTERM");
    Deno.addSignalListener("SIGINT", onInt);
    Deno.addSignalListener("SIGTERM", onTerm);
    const status = await child.status;
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
    return status.code;
  } catch (err) {
    console.error(err instanceof AosError ? err.message : String(err));
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

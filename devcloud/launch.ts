/**
 * `deno task devcloud -- <command> [-c devcloud.cfg] …`: computes devcloud's grants from its
 * config (the server's for `serve`, the narrow client's for `deploy`/`remove`/`status`/`alerts`)
 * and runs `devcloud/main.ts` with `--no-prompt` and exactly those flags.
 * @module
 */
import { fileURLToPath } from "node:url";
import { loadConfigFile } from "@aos/shared/config";
import { AosError } from "@aos/shared/core";
import { assertNoForbiddenFlags, manifestToFlags } from "@aos/shared/permissions";
import { isClientCommand } from "./cli.ts";
import { devcloudConfigSchema, devcloudManifest } from "./config.ts";

/** The config path named by `-c`/`--config` (default `devcloud.cfg`). */
export function configArg(argv: readonly string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if ((a === "-c" || a === "--config") && argv[i + 1] !== undefined) return argv[i + 1]!;
    if (a.startsWith("--config=")) return a.slice("--config=".length);
  }
  return "devcloud.cfg";
}

/** The `deno run` arguments (without the deno binary) for a devcloud command line. */
export async function devcloudCommand(argv: readonly string[]): Promise<string[]> {
  const args = argv[0] === "--" ? argv.slice(1) : [...argv];
  const main = fileURLToPath(new URL("./main.ts", import.meta.url));
  if (args.includes("-h") || args.includes("--help") || args[0] === "help") {
    return ["run", "--no-prompt", main, ...args];
  }
  const path = configArg(args);
  const config = await loadConfigFile(path, devcloudConfigSchema);
  const mode = isClientCommand(args[0]) ? "client" : "serve";
  const flags = manifestToFlags(devcloudManifest(config, path, mode));
  assertNoForbiddenFlags(flags);
  return ["run", ...flags, main, ...args];
}

if (import.meta.main) {
  let code: number;
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: await devcloudCommand(Deno.args),
      stdin: "inherit",
    }).spawn();
    const forward = (sig: Deno.Signal) => () => child.kill(sig);
    const onInt = forward("SIGINT");
    const onTerm = forward("SIGTERM");
    Deno.addSignalListener("SIGINT", onInt);
    Deno.addSignalListener("SIGTERM", onTerm);
    code = (await child.status).code;
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  } catch (err) {
    console.error(`devcloud: ${err instanceof AosError ? err.message : String(err)}`);
    code = 2;
  }
  Deno.exit(code);
}

/**
 * The start-up sequence every component `main.ts` shares: parse the upstream CLI, load and
 * validate the config, verify the permission set, start, and stop cleanly on SIGINT/SIGTERM.
 * @module
 */
import { type CliArgs, type CliSpec, parseCli, usage } from "./cli.ts";
import { AosError } from "./core/errors.ts";
import { createLogger, type Logger } from "./core/logger.ts";
import { assertGrants, type PermissionManifest } from "./permissions.ts";
import { VERSION } from "./version.ts";

/** What a component's `start` receives. */
export interface StartContext<C> {
  config: C;
  args: CliArgs;
  logger: Logger;
  /** Aborted when the process is asked to stop. */
  signal: AbortSignal;
}

/** Describes a component for {@link runComponent}. */
export interface ComponentSpec<C> {
  cli: CliSpec;
  /** Loads the resolved config (errors name file and key). */
  loadConfig: (args: CliArgs) => Promise<C>;
  /** The grants this config needs (checked before anything starts). */
  manifest: (config: C, args: CliArgs) => Promise<PermissionManifest> | PermissionManifest;
  /** Starts the component; the returned value is disposed on stop. */
  start: (ctx: StartContext<C>) => Promise<AsyncDisposable | undefined>;
}

function fail(name: string, err: unknown): number {
  const msg = err instanceof AosError
    ? err.message
    : `unexpected error: ${(err as Error)?.message ?? err}`;
  console.error(`${name}: ${msg}`);
  return err instanceof AosError && err.code === "invalidArgument" ? 2 : 1;
}

/** Runs a component to completion; resolves to the process exit code. */
export async function runComponent<C>(spec: ComponentSpec<C>, argv: string[]): Promise<number> {
  const name = spec.cli.name;
  let args: CliArgs;
  try {
    args = parseCli(argv, spec.cli);
  } catch (err) {
    return fail(name, err);
  }
  if (args.help) {
    console.log(usage(spec.cli));
    return 0;
  }
  if (args.version) {
    console.log(`${name} ${VERSION}`);
    return 0;
  }
  const logger = createLogger({
    level: args.logLevel,
    format: args.logFormat,
    fields: { component: name },
  });
  let config: C;
  try {
    config = await spec.loadConfig(args);
    await assertGrants(await spec.manifest(config, args));
  } catch (err) {
    return fail(name, err);
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort(new AosError("canceled", "stop requested"));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const running = await spec.start({ config, args, logger, signal: stop.signal });
    logger.info(`${name} started`, { version: VERSION, config: args.config });
    if (!stop.signal.aborted) {
      await new Promise<void>((r) =>
        stop.signal.addEventListener("abort", () => r(), { once: true })
      );
    }
    logger.info(`${name} stopping`);
    await running?.[Symbol.asyncDispose]();
    logger.info(`${name} stopped`);
    return 0;
  } catch (err) {
    logger.error(`${name} failed`, { error: err });
    return fail(name, err);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

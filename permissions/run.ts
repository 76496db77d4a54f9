/**
 * The entry point every managed component shares: the upstream CLI, its config resolved into a
 * permission manifest (checked at start-up), then the component's `start`.
 * @module
 */
import { runComponent, type StartContext } from "@aos/shared/component";
import type { PermissionManifest } from "@aos/shared/permissions";
import { type Component, componentCliSpec, type ResolvedManifest, resolveManifest } from "./mod.ts";

/** A component's composition root, loaded only once config and grants are checked. */
export type StartModule<C> = {
  start: (ctx: StartContext<C>) => Promise<AsyncDisposable | undefined>;
};

/**
 * Runs `component` to completion; resolves to the exit code. `load` imports the composition
 * root lazily: its libraries (grpc-js, ws) probe the environment at import time, and a bad
 * config or grant must be reported in one line before any of that happens.
 */
export async function runManaged<C>(
  component: Component,
  load: () => Promise<StartModule<C>>,
  argv: string[] = Deno.args,
): Promise<number> {
  let manifest: PermissionManifest | undefined;
  return await runComponent<C>({
    cli: componentCliSpec(component),
    loadConfig: async (args) => {
      const resolved: ResolvedManifest = await resolveManifest(component, args);
      manifest = resolved.manifest;
      return resolved.config as C;
    },
    manifest: () => manifest!,
    start: async (ctx) => (await load()).start(ctx),
  }, argv);
}

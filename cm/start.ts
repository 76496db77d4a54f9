/**
 * Composition root of `cm`: builds the adapters from the resolved config, wires them in start
 * order and stops them in reverse.
 * @module
 */
import type { StartContext } from "@aos/shared/component";
import { CleanupStack } from "@aos/shared/core";
import type { CmConfig } from "./config.ts";

/** Starts `cm`; the result stops everything it started. */
export function start(ctx: StartContext<CmConfig>): Promise<AsyncDisposable> {
  const stack = new CleanupStack();
  ctx.logger.debug("configuration loaded", { workingDir: ctx.config.workingDir });
  return Promise.resolve(stack);
}

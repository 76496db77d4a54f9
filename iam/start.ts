/**
 * Composition root of `iam`: builds the adapters from the resolved config, wires them in start
 * order and stops them in reverse.
 * @module
 */
import type { StartContext } from "@aos/shared/component";
import { CleanupStack } from "@aos/shared/core";
import type { IamConfig } from "./config.ts";

/** Starts `iam`; the result stops everything it started. */
export function start(ctx: StartContext<IamConfig>): Promise<AsyncDisposable> {
  const stack = new CleanupStack();
  ctx.logger.debug("configuration loaded", { workingDir: ctx.config.workingDir });
  return Promise.resolve(stack);
}

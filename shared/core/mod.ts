/**
 * Shared core: errors, logging, retry, channel, cleanup stack, time.
 * @module
 */
export * from "./errors.ts";
export * from "./logger.ts";
export * from "./retry.ts";
export * from "./channel.ts";
export * from "./cleanup.ts";
export * from "./time.ts";
export * from "./mutex.ts";
export * from "./semver.ts";
export * from "./bytes.ts";

/**
 * Config loading for upstream-compatible JSON files.
 * @module
 */
export * from "./duration.ts";
export * from "./schema.ts";
export * from "./load.ts";

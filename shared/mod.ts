/**
 * `@aos/shared`: infrastructure used by several AosCore components: errors, logging, retry,
 * channels, config loading, the upstream CLI, permission manifests and the component runner.
 * Subpath exports (`@aos/shared/config`, `@aos/shared/errors`, …) keep imports narrow.
 * @module
 */
export * from "./core/mod.ts";
export * from "./config/mod.ts";
export * from "./cli.ts";
export * from "./permissions.ts";
export * from "./component.ts";
export * from "./version.ts";

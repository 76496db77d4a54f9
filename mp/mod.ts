/**
 * `@aos/mp`: Message Proxy: bridges a secondary node's SM and IAM to the main node over one multiplexed transport.
 * @module
 */
export * from "./config.ts";
export { start } from "./start.ts";

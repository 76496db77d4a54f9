/**
 * `@aos/cm`: Communication Manager: cloud link (protocol v7), desired-status pipeline, SM controller, image manager, placement.
 * @module
 */
export * from "./config.ts";
export { start } from "./start.ts";

/**
 * `@aos/sm`: Service Manager: service images, OCI containers through runc, resources, CM session (servicemanager.v5).
 * @module
 */
export * from "./config.ts";
export { start } from "./start.ts";

/**
 * `@aos/iam`: Identity and Access Manager: identity, keys and certificates, provisioning, node registry, instance permissions (iamanager.v6).
 * @module
 */
export * from "./config.ts";
export { start } from "./start.ts";

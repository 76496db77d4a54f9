/**
 * `@aos/cm`: Communication Manager: cloud link (protocol v7), desired-status pipeline, SM
 * controller, image manager, placement.
 *
 * {@link start} is the composition root (IAM client → `cm.db` → image manager and blob file
 * server → node info provider → SM server → unit config → launcher → update manager → unit
 * status → cloud link). {@link openCmDatabase} opens `cm.db` with every table set in one
 * migration list ({@link CM_MIGRATIONS}); {@link NodeInfoProvider} merges IAM's node registry
 * with the SMs' announcements under upstream's connectivity rules.
 * @module
 */
export * from "./config.ts";
export { start } from "./start.ts";
export {
  CM_DB_FILE,
  CM_MIGRATIONS,
  openCmDatabase,
  type OpenCmDatabaseOptions,
  SqliteLauncherStore,
  SqliteUpdateStateStore,
} from "./db.ts";
export {
  MAX_NODES,
  nodeHasSm,
  NodeInfoProvider,
  type NodeInfoProviderOptions,
  type NodeRegistryPort,
  SM_CONNECTION_TIMEOUT_MS,
} from "./adapters/node_info.ts";
export { ImageManifestSource } from "./adapters/manifests.ts";
export { AlertSender, type AlertSenderOptions } from "./adapters/alerts.ts";
export { UnitConfigFile } from "./adapters/unit_config_file.ts";

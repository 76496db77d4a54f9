/**
 * `@aos/iam`: Identity and Access Manager: identity, keys and certificates, provisioning, node
 * registry, instance permissions (iamanager.v6).
 *
 * {@link start} is the composition root `main.ts` runs: it opens `iamanager.db`, builds this
 * node's info, the identifier, the cert handler and the provision manager, serves the public
 * and the protected gRPC server (plaintext with `-p`, TLS/mTLS otherwise, rebuilt when IAM's
 * own certificate changes), keeps the node registry on the main node and, on a secondary node,
 * a `RegisterNode` stream to the main IAM.
 * @module
 */
export * from "./config.ts";
export { commandPrograms, type IamInstance, type IamStartOptions, start } from "./start.ts";
export {
  type NodeEntry,
  nodeInfoFromJson,
  nodeInfoToJson,
  NodeManager,
} from "./core/node_manager.ts";
export { IAM_API_VERSION } from "./adapters/grpc_services.ts";
export {
  DEFAULT_FORWARD_TIMEOUTS,
  type ForwardTimeouts,
  NodeUnreachableError,
} from "./adapters/node_controller.ts";
export { LIMITS, MAX_MESSAGE_BYTES } from "./adapters/validation.ts";

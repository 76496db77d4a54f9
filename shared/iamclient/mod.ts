/**
 * Client of the node's IAM (`iamanager.v6`) for SM, CM and MP.
 *
 * {@link createIamClient} first asks IAM's public server (server-only TLS, verified against
 * `caCert`) for the component's own certificate (`GetCert(certStorage)`, `file://` URLs into
 * IAM's storage), then talks mTLS with it to the protected server. The same files serve the
 * component's other mTLS links: {@link IamClient.tlsFiles},
 * {@link IamClient.clientCredentials}, {@link IamClient.serverCredentials}.
 *
 * IAM's servers end every stream when they restart, so all `subscribe*` streams re-subscribe
 * with back-off until unsubscribed or closed. When IAM reports a new certificate of the
 * component's type, the client waits (10 s like upstream, configurable), re-reads `GetCert`,
 * rebuilds its credentials and protected channel, then calls the
 * {@link IamClient.onCredentialsChanged} listeners so callers reconnect their own channels.
 *
 * Failures are `AosError`s: `ErrorInfo` in a response through `fromErrorInfo`, non-OK
 * gRPC status through `aosErrorFromGrpc`. Deadlines: 10 s, and 10 min for Start/Finish
 * provisioning and Deprovision.
 * @module
 */
export {
  createIamClient,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_CERT_RECONNECT_DELAY_MS,
  DEFAULT_PROVISIONING_TIMEOUT_MS,
  IamClient,
  type IamClientOptions,
  type InstancePermissions,
  isUnreachable,
  type NodeInfo,
  type SystemInfo,
  type Unsubscribe,
} from "./client.ts";
export {
  type CertInfo,
  certInfoFromMessage,
  pathFromCertUrl,
  type TlsFiles,
  tlsFilesFromCertInfo,
} from "./cert_info.ts";
export {
  DEFAULT_RESUBSCRIBE_DELAY,
  keepSubscribed,
  type KeepSubscribedOptions,
  type KeptSubscription,
  type ResubscribeDelay,
} from "./subscription.ts";

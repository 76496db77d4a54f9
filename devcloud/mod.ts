/**
 * `@aos/devcloud`: a local stand-in for AosCloud for development, demos and tests. Not a
 * production cloud.
 *
 * - {@link DevPki}: a dev root CA under the working dir (the unit's `caCert`), the server
 *   certificate, the RSA chain that signs blobs, and signing of unit CSRs.
 * - {@link packService}: rootfs + `service.json` → Aos service image blobs (layer, OCI config,
 *   item config, manifest with `aosItemConfig`, index).
 * - {@link startDevcloud}: mTLS discovery + WSS protocol v7 with acks, encrypted and signed
 *   blobs for `requestBlobUrls`, desired status from `deploy`/`remove`, merged unit status,
 *   alerts and monitoring, an event stream.
 * - {@link startAdminServer} and the CLI (`deno task devcloud -- serve|deploy|remove|status|alerts`).
 * - {@link provisionNode}: provisions a real `iam -p` with certificates of the dev CA.
 *
 * ```ts
 * await using cloud = await startDevcloud({ workingDir, cloudListen: "localhost:9000",
 *   blobsListen: "localhost:9001" });
 * await provisionNode({ iamUrl: "localhost:8089", pki: cloud.pki, password,
 *   discoveryUrl: cloud.cloudBaseUrl });
 * await cloud.deploy("hello", { instances: 2 });
 * cloud.subscribe((e) => console.log(e.type));
 * ```
 * @module
 */
export * from "./config.ts";
export * from "./pki.ts";
export * from "./packer.ts";
export * from "./blobs.ts";
export * from "./unit_state.ts";
export * from "./cloud.ts";
export * from "./admin.ts";
export * from "./provision.ts";
export {
  AdminClient,
  CLIENT_COMMANDS,
  type ClientArgs,
  type ClientCommand,
  clientFromConfig,
  type CliIo,
  type DeploymentOutcome,
  followDeployment,
  type FollowOptions,
  formatAlerts,
  formatStatus,
  parseClientArgs,
  runClient,
} from "./cli.ts";
export * from "./dashboard.ts";
export * from "./dashboard_state.ts";

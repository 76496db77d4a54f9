/**
 * `devcloud.cfg`: where the local cloud stand-in keeps its data and listens.
 * @module
 */
import type { z } from "zod";
import { ciObject, hostPort, path } from "@aos/shared/config";
import type { PermissionManifest } from "@aos/shared/permissions";

/** Schema of `devcloud.cfg`. */
export const devcloudConfigSchema = ciObject({
  /** Data: dev PKI, blobs, received unit status, alerts and monitoring. */
  workingDir: path,
  /** Discovery and WebSocket endpoint (TLS). */
  cloudUrl: hostPort.default("localhost:9000"),
  /** Blob server for `requestBlobUrls` answers. */
  blobsUrl: hostPort.default("localhost:9001"),
  /** Dashboard (plain HTTP, loopback). */
  dashboardUrl: hostPort.default("localhost:9080"),
});

/** Resolved `devcloud.cfg`. */
export type DevcloudConfig = z.output<typeof devcloudConfigSchema>;

/** The grants of devcloud: its working dir and its three listen addresses. */
export function devcloudManifest(config: DevcloudConfig, configPath: string): PermissionManifest {
  return {
    component: "devcloud",
    read: [configPath, config.workingDir],
    write: [config.workingDir],
    net: [config.cloudUrl, config.blobsUrl, config.dashboardUrl],
    run: [],
    env: [],
    sys: [],
    ignoreEnv: [],
  };
}

/**
 * `devcloud.cfg`: where the local cloud stand-in keeps its data and listens.
 * @module
 */
import { join } from "node:path";
import * as z from "zod/mini";
import { ciObject, hostPort, path, splitHostPort } from "@aos/shared/config";
import type { PermissionManifest } from "@aos/shared/permissions";

/** Schema of `devcloud.cfg`. */
export const devcloudConfigSchema = ciObject({
  /** Data: dev PKI, blobs, received unit status, alerts and monitoring. */
  workingDir: path,
  /** Discovery and WebSocket endpoint (TLS). */
  cloudUrl: z._default(hostPort, "localhost:9000"),
  /** Blob server for `requestBlobUrls` answers. */
  blobsUrl: z._default(hostPort, "localhost:9001"),
  /** Dashboard (plain HTTP, loopback). */
  dashboardUrl: z._default(hostPort, "localhost:9080"),
  /** Admin API the CLI talks to (plain HTTP, loopback, token in the working dir). */
  adminUrl: z._default(hostPort, "localhost:9081"),
  /** Service sources `deploy <name>` packs: `<servicesDir>/<name>/service.json` + `rootfs`. */
  servicesDir: z.optional(z.string()),
  /** The `tar` program the packer runs to archive a rootfs directory. */
  tar: z._default(z.string().check(z.minLength(1)), "tar"),
});

/** Resolved `devcloud.cfg`. */
export type DevcloudConfig = z.output<typeof devcloudConfigSchema>;

/** Where devcloud keeps its files under `workingDir`. */
export interface DevcloudPaths {
  /** Dev PKI (root CA, server cert, signing chain). */
  pki: string;
  /** Plain blobs by digest: `<blobs>/sha256/<hex>`. */
  blobs: string;
  /** Encrypted blobs as served: `<served>/sha256/<hex>` (named by the plain digest). */
  served: string;
  /** Per blob: AES key, IV, SHA3-256 and signature of the served file. */
  servedMeta: string;
  /** Services, instance counts and item ids (`state.json`). */
  state: string;
  /** Latest status, alerts and monitoring per unit (`units.json`). */
  units: string;
  /** The admin API token (mode 0600). */
  adminToken: string;
  /** Service sources. */
  services: string;
}

/** The file layout of a working dir. */
export function devcloudPaths(
  config: { workingDir: string; servicesDir?: string | undefined },
): DevcloudPaths {
  const w = config.workingDir;
  return {
    pki: join(w, "pki"),
    blobs: join(w, "blobs"),
    served: join(w, "served"),
    servedMeta: join(w, "served-meta"),
    state: join(w, "state.json"),
    units: join(w, "units.json"),
    adminToken: join(w, "admin-token"),
    services: config.servicesDir ?? join(w, "services"),
  };
}

/** Variables `ws` and Node compat probe at import: read as unset instead of being granted. */
const LIBRARY_ENV = [
  "WS_NO_BUFFER_UTIL",
  "WS_NO_UTF_8_VALIDATE",
  "NODE_DEBUG",
  "NODE_EXTRA_CA_CERTS",
];

/** `localhost:p` is listened on as `127.0.0.1:p`: grant both spellings. */
function netEntries(addr: string): string[] {
  const { host, port } = splitHostPort(addr);
  return host === "localhost" ? [addr, `127.0.0.1:${port}`] : [addr];
}

/** What a devcloud process does: run the server, or talk to it as the CLI. */
export type DevcloudMode = "serve" | "client";

/**
 * The grants of devcloud. `serve`: its working dir, the service sources, its four listen
 * addresses and `tar` for the packer. `client`: the config, the admin token and the admin API.
 */
export function devcloudManifest(
  config: DevcloudConfig,
  configPath: string,
  mode: DevcloudMode = "serve",
): PermissionManifest {
  const paths = devcloudPaths(config);
  if (mode === "client") {
    return {
      component: "devcloud",
      read: [configPath, paths.adminToken],
      write: [],
      net: netEntries(config.adminUrl),
      run: [],
      env: [],
      sys: [],
      ignoreEnv: [],
    };
  }
  return {
    component: "devcloud",
    read: [configPath, config.workingDir, paths.services],
    write: [config.workingDir],
    net: [config.cloudUrl, config.blobsUrl, config.dashboardUrl, config.adminUrl].flatMap(
      netEntries,
    ),
    run: [config.tar],
    env: [],
    sys: [],
    ignoreEnv: LIBRARY_ENV,
  };
}

/**
 * Permission manifest of `cm`: no `run`, only its own `cm`/`online` key files; the network to
 * its two listeners, IAM, discovery and the `allowedHosts` patterns exactly as written (Deno
 * reads `*.example.com` as every sub-domain, the same rule CM's own allow-list applies).
 * @module
 */
import type { PermissionManifest } from "@aos/shared/permissions";
import type { CmConfig } from "../cm/config.ts";
import type { IamConfig } from "../iam/config.ts";
import { ID_FILES } from "../cm/id_files.ts";
import { certStorageDirs, dialEntries, LIBRARY_ENV, listenEntry } from "./common.ts";

/** Host entries for a URL (`https://h:9000/x` → `h:9000`). */
function urlHost(url: string): string[] {
  if (!url) return [];
  const u = new URL(url);
  const port = u.port || (u.protocol === "https:" || u.protocol === "wss:" ? "443" : "80");
  return [`${u.hostname}:${port}`];
}

/** Listen entries: CM binds `localhost` as `127.0.0.1` (grpc-js would need a DNS grant). */
function listenEntries(url: string): string[] {
  const entry = listenEntry(url);
  return entry.startsWith("localhost:")
    ? [entry, entry.replace(/^localhost/, "127.0.0.1")]
    : [entry];
}

/** The exact grants of `cm`; `iam` (the node's IAM config) locates its `cm`/`online` keys. */
export function cmManifest(
  config: CmConfig,
  configPath: string,
  iam?: IamConfig,
): PermissionManifest {
  const own = [
    config.workingDir,
    config.storageDir,
    config.stateDir,
    config.unitConfigFile,
    config.imageManager.installPath,
    config.imageManager.downloadPath,
  ];
  return {
    component: "cm",
    read: [
      configPath,
      config.caCert,
      ...own,
      ...certStorageDirs(iam, [config.certStorage, "online"]),
      // Host UIDs/GIDs the launcher must not hand to instances.
      ...Object.values(ID_FILES),
    ],
    write: own,
    net: [
      ...listenEntries(config.cmServerUrl),
      ...listenEntries(config.fileServerUrl),
      ...dialEntries(config.iamPublicServerUrl),
      ...dialEntries(config.iamProtectedServerUrl),
      ...urlHost(config.serviceDiscoveryUrl),
      ...urlHost(config.overrideServiceDiscoveryUrl),
      ...config.allowedHosts,
    ],
    run: [],
    env: [],
    // The space allocator reads partition sizes.
    sys: ["statfs"],
    ignoreEnv: LIBRARY_ENV,
  };
}

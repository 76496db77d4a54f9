/**
 * Permission manifest of `cm`: no `run`, only its own `cm`/`online` key files.
 * @module
 */
import type { PermissionManifest } from "@aos/shared/permissions";
import type { CmConfig } from "../cm/config.ts";
import type { IamConfig } from "../iam/config.ts";
import { certStorageDirs, dialEntries, LIBRARY_ENV, listenEntry } from "./common.ts";

/** Host entries for a URL (`https://h:9000/x` → `h:9000`). */
function urlHost(url: string): string[] {
  if (!url) return [];
  const u = new URL(url);
  const port = u.port || (u.protocol === "https:" || u.protocol === "wss:" ? "443" : "80");
  return [`${u.hostname}:${port}`];
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
    ],
    write: own,
    net: [
      listenEntry(config.cmServerUrl),
      listenEntry(config.fileServerUrl),
      ...dialEntries(config.iamPublicServerUrl),
      ...dialEntries(config.iamProtectedServerUrl),
      ...urlHost(config.serviceDiscoveryUrl),
      ...urlHost(config.overrideServiceDiscoveryUrl),
      ...config.allowedHosts,
    ],
    run: [],
    env: [],
    sys: [],
    ignoreEnv: LIBRARY_ENV,
  };
}

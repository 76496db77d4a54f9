/**
 * Permission manifest of `mp`: no `run`.
 * @module
 */
import type { PermissionManifest } from "@aos/shared/permissions";
import type { IamConfig } from "../iam/config.ts";
import type { MpConfig } from "../mp/config.ts";
import { certStorageDirs, dialEntries, LIBRARY_ENV, listenEntry } from "./common.ts";

/** The exact grants of `mp`; `iam` (the node's IAM config) locates its `sm`/`iam` keys. */
export function mpManifest(
  config: MpConfig,
  configPath: string,
  iam?: IamConfig,
): PermissionManifest {
  const own = [config.workingDir, config.imageStoreDir, config.downloader.downloadDir];
  return {
    component: "mp",
    read: [
      configPath,
      config.caCert,
      ...own,
      ...certStorageDirs(iam, [config.certStorage, config.iamConfig.certStorage]),
    ],
    write: own,
    net: [
      listenEntry(config.listenUrl),
      ...dialEntries(config.iamConfig.iamPublicServerUrl),
      ...dialEntries(config.iamConfig.iamMainPublicServerUrl),
      ...dialEntries(config.iamConfig.iamMainProtectedServerUrl),
      ...dialEntries(config.cmConfig.cmServerUrl),
    ],
    run: [],
    env: [],
    sys: [],
    ignoreEnv: LIBRARY_ENV,
  };
}

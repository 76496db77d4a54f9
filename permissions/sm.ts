/**
 * Permission manifest of `sm`.
 * @module
 */
import type { PermissionManifest } from "@aos/shared/permissions";
import type { IamConfig } from "../iam/config.ts";
import type { SmConfig } from "../sm/config.ts";
import { certStorageDirs, dialEntries, LIBRARY_ENV } from "./common.ts";

/** The exact grants of `sm`; `iam` (the node's IAM config) locates its own `sm` key files. */
export function smManifest(
  config: SmConfig,
  configPath: string,
  iam?: IamConfig,
): PermissionManifest {
  const runtimeDirs = config.runtimes.flatMap((r) => [
    r.config.runtimeDir,
    r.config.storageDir,
    r.config.stateDir,
    r.config.hostWhiteoutsDir,
    r.config.crunStateRoot,
  ]);
  const own = [
    config.workingDir,
    config.imageManager.imagePath,
    config.nodeConfigFile,
    ...runtimeDirs,
  ];
  return {
    component: "sm",
    read: [
      configPath,
      config.caCert,
      config.resourcesConfigFile,
      ...own,
      ...certStorageDirs(iam, [config.certStorage]),
      "/sys/fs/cgroup",
    ],
    write: own,
    net: [
      ...dialEntries(config.cmServerUrl),
      ...dialEntries(config.iamPublicServerUrl),
      ...dialEntries(config.iamProtectedServerUrl),
    ],
    run: config.runtimes.map((r) => r.config.crunExecutable),
    env: [],
    sys: [],
    ignoreEnv: LIBRARY_ENV,
  };
}

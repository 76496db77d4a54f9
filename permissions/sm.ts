/**
 * Permission manifest of `sm`.
 * @module
 */
import type { PermissionManifest } from "@aos/shared/permissions";
import type { IamConfig } from "../iam/config.ts";
import { SM_HELPER_PROGRAMS, type SmConfig } from "../sm/config.ts";
import { certStorageDirs, dialEntries, LIBRARY_ENV } from "./common.ts";

/** Host files the runtime binds read-only into containers when they exist. */
const HOST_ETC = ["/etc/nsswitch.conf", "/etc/ssl"];

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
      // Deno denies /proc and /sys to anything but --allow-all, so none is listed: mounts are
      // found by device numbers and the cgroup layout through `stat -f`.
      ...HOST_ETC,
    ],
    write: own,
    net: [
      ...dialEntries(config.cmServerUrl),
      ...dialEntries(config.cmFileServerUrl),
      ...dialEntries(config.iamPublicServerUrl),
      ...dialEntries(config.iamProtectedServerUrl),
    ],
    // runc and the helper programs (see SM_HELPER_PROGRAMS for why each one is needed); ln
    // because Deno creates symlinks only with unscoped read+write, which SM must not have.
    run: [...config.runtimes.map((r) => r.config.crunExecutable), ...SM_HELPER_PROGRAMS],
    env: [],
    // The space allocator reads partition sizes.
    sys: ["statfs"],
    ignoreEnv: LIBRARY_ENV,
  };
}

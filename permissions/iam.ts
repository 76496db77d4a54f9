/**
 * Permission manifest of `iam`.
 * @module
 */
import { dirname } from "node:path";
import type { PermissionManifest } from "@aos/shared/permissions";
import { type IamConfig, isSecondaryIam } from "../iam/config.ts";
import { dialEntries, LIBRARY_ENV, listenEntry } from "./common.ts";

/**
 * Listen entries of a server URL. IAM binds `localhost` as `127.0.0.1` (grpc-js would resolve
 * the name through `node:dns`, which needs a grant for every port of the host), so that
 * address is granted as well.
 */
function listenEntries(url: string): string[] {
  const entry = listenEntry(url);
  return entry.startsWith("localhost:")
    ? [entry, entry.replace(/^localhost/, "127.0.0.1")]
    : [entry];
}

/** The exact grants of `iam` for `config` loaded from `configPath`. */
export function iamManifest(config: IamConfig, configPath: string): PermissionManifest {
  const storages = config.certModules.filter((m) => !m.disabled).map((m) => m.params.storagePath);
  const ident = config.identifier.params;
  const stateFile = config.nodeInfo.provisioningStatePath;
  const commands = [
    config.startProvisioningCmdArgs,
    config.diskEncryptionCmdArgs,
    config.finishProvisioningCmdArgs,
    config.deprovisionCmdArgs,
  ].map((args) => args[0] ?? "").filter((c) => c !== "");
  return {
    component: "iam",
    read: [
      configPath,
      config.caCert,
      config.workingDir,
      ...storages,
      stateFile,
      config.nodeInfo.nodeIdPath,
      config.nodeInfo.cpuInfoPath,
      config.nodeInfo.memInfoPath,
      ...config.nodeInfo.partitions.map((p) => p.path),
      ...(config.identifier.plugin === "fileidentifier"
        ? [
          ident.systemIdPath ?? "",
          ident.unitModelPath ?? "",
          ident.subjectsPath ?? "",
          // Subject changes are watched through the file's directory (so that an atomic
          // replace is seen); Deno.watchFs needs read access to that directory.
          ident.subjectsPath ? dirname(ident.subjectsPath) : "",
        ]
        : []),
    ],
    // The provision-state file is replaced atomically, so its directory must be writable.
    write: [config.workingDir, ...storages, stateFile, `${stateFile}.tmp`],
    net: [
      ...[config.iamPublicServerUrl, config.iamProtectedServerUrl].flatMap(listenEntries),
      ...(isSecondaryIam(config)
        ? [
          ...dialEntries(config.mainIamPublicServerUrl),
          ...dialEntries(config.mainIamProtectedServerUrl),
        ]
        : []),
    ],
    run: commands,
    env: [],
    // Deno grants /proc only to --allow-all: RAM and CPUs come from these APIs instead, and
    // partition sizes from statfs.
    sys: ["systemMemoryInfo", "cpus", "statfs"],
    ignoreEnv: LIBRARY_ENV,
  };
}

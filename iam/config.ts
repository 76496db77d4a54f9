/**
 * `iam.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import * as z from "zod/mini";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

const certModule = ciObject({
  id: z.string().check(z.minLength(1)),
  plugin: z.string().check(z.refine((p) => p === "filemodule", {
    message: 'unsupported cert module plugin: use "filemodule" (pkcs11module is not available yet)',
  })),
  algorithm: z._default(z.enum(["ecc", "rsa"]), "ecc"),
  maxItems: z._default(z.number().check(z.int(), z.gte(1), z.lte(5)), 2),
  extendedKeyUsage: z._default(
    z.array(z.enum(["clientAuth", "serverAuth"])).check(z.maxLength(2)),
    [],
  ),
  alternativeNames: z._default(z.array(z.string()), []),
  disabled: z._default(z.boolean(), false),
  skipValidation: z._default(z.boolean(), false),
  selfSigned: z._default(z.boolean(), false),
  params: ciObject({ storagePath: path }),
});

const nodeInfo = ciObject({
  nodeIdPath: z._default(z.string(), "/etc/machine-id"),
  nodeId: z.optional(z.string()),
  nodeName: z._default(z.string(), ""),
  nodeType: z._default(z.string(), ""),
  maxDmips: z._default(z.number().check(z.nonnegative()), 0),
  cpuInfoPath: z._default(z.string(), "/proc/cpuinfo"),
  memInfoPath: z._default(z.string(), "/proc/meminfo"),
  provisioningStatePath: z._default(z.string(), "/var/aos/.provisionstate"),
  attrs: z._default(z.record(z.string(), z.string()), {}),
  partitions: z._default(
    z.array(ciObject({
      name: z.string(),
      types: z._default(z.array(z.string()), []),
      path: z.string(),
    })),
    [],
  ),
  architecture: z.optional(z.string()),
  architectureVariant: z.optional(z.string()),
  os: z.optional(z.string()),
  osVersion: z.optional(z.string()),
});

const identifier = ciObject({
  plugin: z._default(z.enum(["fileidentifier", "none", ""]), "none"),
  params: z.prefault(
    ciObject({
      systemIdPath: z.optional(z.string()),
      unitModelPath: z.optional(z.string()),
      subjectsPath: z.optional(z.string()),
    }),
    {},
  ),
}).check(z.superRefine((v, ctx) => {
  if (v.plugin !== "fileidentifier") return;
  for (const key of ["systemIdPath", "unitModelPath", "subjectsPath"] as const) {
    if (!v.params[key]) {
      ctx.addIssue({
        code: "custom",
        path: ["params", key],
        message: "required by the fileidentifier plugin",
      });
    }
  }
}));

/** Schema of `iam.cfg`. */
export const iamConfigSchema = ciObject({
  caCert: path,
  certStorage: z._default(z.string(), "iam"),
  iamPublicServerUrl: z._default(hostPort, ":8090"),
  iamProtectedServerUrl: z._default(hostPort, ":8089"),
  mainIamPublicServerUrl: z._default(hostPort, ""),
  mainIamProtectedServerUrl: z._default(hostPort, ""),
  nodeReconnectInterval: durationOr("10s"),
  workingDir: path,
  enablePermissionsHandler: z._default(z.boolean(), false),
  startProvisioningCmdArgs: z._default(z.array(z.string()), []),
  diskEncryptionCmdArgs: z._default(z.array(z.string()), []),
  finishProvisioningCmdArgs: z._default(z.array(z.string()), []),
  deprovisionCmdArgs: z._default(z.array(z.string()), []),
  nodeInfo: nodeInfo,
  identifier: z.prefault(identifier, {}),
  certModules: z.array(certModule).check(z.minLength(1)),
}).check(z.superRefine((cfg, ctx) => {
  const ids = new Set<string>();
  cfg.certModules.forEach((m, i) => {
    if (ids.has(m.id)) {
      ctx.addIssue({ code: "custom", path: ["certModules", i, "id"], message: "duplicate id" });
    }
    ids.add(m.id);
  });
}));

/** Resolved `iam.cfg`. */
export type IamConfig = z.output<typeof iamConfigSchema>;
/** One resolved cert module. */
export type CertModuleConfig = IamConfig["certModules"][number];

/** Whether this IAM is a secondary node (it dials a main IAM). */
export function isSecondaryIam(cfg: IamConfig): boolean {
  return cfg.mainIamPublicServerUrl !== "" || cfg.mainIamProtectedServerUrl !== "";
}

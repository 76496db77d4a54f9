/**
 * `iam.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import { z } from "zod";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

const certModule = ciObject({
  id: z.string().min(1),
  plugin: z.string().refine((p) => p === "filemodule", {
    message: 'unsupported cert module plugin: use "filemodule" (pkcs11module is not available yet)',
  }),
  algorithm: z.enum(["ecc", "rsa"]).default("ecc"),
  maxItems: z.number().int().min(1).max(5).default(2),
  extendedKeyUsage: z.array(z.enum(["clientAuth", "serverAuth"])).max(2).default([]),
  alternativeNames: z.array(z.string()).default([]),
  disabled: z.boolean().default(false),
  skipValidation: z.boolean().default(false),
  selfSigned: z.boolean().default(false),
  params: ciObject({ storagePath: path }),
});

const nodeInfo = ciObject({
  nodeIdPath: z.string().default("/etc/machine-id"),
  nodeId: z.string().optional(),
  nodeName: z.string().default(""),
  nodeType: z.string().default(""),
  maxDmips: z.number().nonnegative().default(0),
  cpuInfoPath: z.string().default("/proc/cpuinfo"),
  memInfoPath: z.string().default("/proc/meminfo"),
  provisioningStatePath: z.string().default("/var/aos/.provisionstate"),
  attrs: z.record(z.string(), z.string()).default({}),
  partitions: z.array(ciObject({
    name: z.string(),
    types: z.array(z.string()).default([]),
    path: z.string(),
  })).default([]),
  architecture: z.string().optional(),
  architectureVariant: z.string().optional(),
  os: z.string().optional(),
  osVersion: z.string().optional(),
});

const identifier = ciObject({
  plugin: z.enum(["fileidentifier", "none", ""]).default("none"),
  params: ciObject({
    systemIdPath: z.string().optional(),
    unitModelPath: z.string().optional(),
    subjectsPath: z.string().optional(),
  }).prefault({}),
}).superRefine((v, ctx) => {
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
});

/** Schema of `iam.cfg`. */
export const iamConfigSchema = ciObject({
  caCert: path,
  certStorage: z.string().default("iam"),
  iamPublicServerUrl: hostPort.default(":8090"),
  iamProtectedServerUrl: hostPort.default(":8089"),
  mainIamPublicServerUrl: hostPort.default(""),
  mainIamProtectedServerUrl: hostPort.default(""),
  nodeReconnectInterval: durationOr("10s"),
  workingDir: path,
  enablePermissionsHandler: z.boolean().default(false),
  startProvisioningCmdArgs: z.array(z.string()).default([]),
  diskEncryptionCmdArgs: z.array(z.string()).default([]),
  finishProvisioningCmdArgs: z.array(z.string()).default([]),
  deprovisionCmdArgs: z.array(z.string()).default([]),
  nodeInfo: nodeInfo,
  identifier: identifier.prefault({}),
  certModules: z.array(certModule).min(1),
}).superRefine((cfg, ctx) => {
  const ids = new Set<string>();
  cfg.certModules.forEach((m, i) => {
    if (ids.has(m.id)) {
      ctx.addIssue({ code: "custom", path: ["certModules", i, "id"], message: "duplicate id" });
    }
    ids.add(m.id);
  });
});

/** Resolved `iam.cfg`. */
export type IamConfig = z.output<typeof iamConfigSchema>;
/** One resolved cert module. */
export type CertModuleConfig = IamConfig["certModules"][number];

/** Whether this IAM is a secondary node (it dials a main IAM). */
export function isSecondaryIam(cfg: IamConfig): boolean {
  return cfg.mainIamPublicServerUrl !== "" || cfg.mainIamProtectedServerUrl !== "";
}

/**
 * `cm.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import { z } from "zod";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

/** A host pattern of the egress allow-list: `host`, `*.domain`, optionally with `:port`. */
const hostPattern = z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$/, {
  message: 'expected a host name like "cloud.example.com", "*.example.com" or "host:port"',
});

const cmConfigBase = ciObject({
  caCert: path,
  certStorage: z.string().default("cm"),
  serviceDiscoveryUrl: z.string().url(),
  overrideServiceDiscoveryUrl: z.string().default(""),
  iamProtectedServerUrl: hostPort.default("localhost:8089"),
  iamPublicServerUrl: hostPort.default("localhost:8090"),
  cmServerUrl: hostPort.default(":8093"),
  fileServerUrl: hostPort.default("localhost:8094"),
  workingDir: path,
  storageDir: z.string().optional(),
  stateDir: z.string().optional(),
  unitConfigFile: z.string().optional(),
  dnsStoragePath: z.string().default("/var/aos/dns"),
  dnsIp: z.string().default("10.0.0.100"),
  cloudMessageLog: z.string().default(""),
  unitStatusSendTimeout: durationOr("10s"),
  cloudResponseWaitTimeout: durationOr("10s"),
  /** Ours: hosts CM may dial besides discovery (cloud and blob hosts). */
  allowedHosts: z.array(hostPattern).default([]),
  /** Ours: serve SMs and dial IAM without TLS (tests and provisioning-mode units only). */
  insecure: z.boolean().default(false),
  imageManager: ciObject({
    installPath: z.string().optional(),
    downloadPath: z.string().optional(),
    updateItemTtl: durationOr("30d"),
    removeOutdatedPeriod: durationOr("24h"),
  }).prefault({}),
  launcher: ciObject({
    nodesConnectionTimeout: durationOr("10m"),
    instanceTtl: durationOr("30d"),
    checkOverrideEnvVarsPeriod: durationOr("1m"),
  }).prefault({}),
  nodeInfoProvider: ciObject({ smConnectionTimeout: durationOr("1m") }).prefault({}),
  monitoring: ciObject({
    sendPeriod: durationOr("1m"),
    pollPeriod: durationOr("35s"),
    averageWindow: durationOr("35s"),
  }).prefault({}),
  alerts: ciObject({ sendPeriod: durationOr("10s") }).prefault({}),
});

/** Schema of `cm.cfg` with path defaults derived from `workingDir`. */
export const cmConfigSchema = cmConfigBase.transform((c) => ({
  ...c,
  storageDir: c.storageDir ?? `${c.workingDir}/storages`,
  stateDir: c.stateDir ?? `${c.workingDir}/states`,
  unitConfigFile: c.unitConfigFile ?? `${c.workingDir}/aos_unit.cfg`,
  imageManager: {
    ...c.imageManager,
    installPath: c.imageManager.installPath ?? `${c.workingDir}/install`,
    downloadPath: c.imageManager.downloadPath ?? `${c.workingDir}/download`,
  },
}));

/** Resolved `cm.cfg`. */
export type CmConfig = z.output<typeof cmConfigSchema>;

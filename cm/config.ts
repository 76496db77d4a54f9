/**
 * `cm.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import * as z from "zod/mini";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

/** A host pattern of the egress allow-list: `host`, `*.domain`, optionally with `:port`. */
const hostPattern = z.string().check(z.regex(/^(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$/, {
  message: 'expected a host name like "cloud.example.com", "*.example.com" or "host:port"',
}));

const cmConfigBase = ciObject({
  caCert: path,
  certStorage: z._default(z.string(), "cm"),
  serviceDiscoveryUrl: z.string().check(z.url()),
  overrideServiceDiscoveryUrl: z._default(z.string(), ""),
  iamProtectedServerUrl: z._default(hostPort, "localhost:8089"),
  iamPublicServerUrl: z._default(hostPort, "localhost:8090"),
  cmServerUrl: z._default(hostPort, ":8093"),
  fileServerUrl: z._default(hostPort, "localhost:8094"),
  workingDir: path,
  storageDir: z.optional(z.string()),
  stateDir: z.optional(z.string()),
  unitConfigFile: z.optional(z.string()),
  dnsStoragePath: z._default(z.string(), "/var/aos/dns"),
  dnsIp: z._default(z.string(), "10.0.0.100"),
  cloudMessageLog: z._default(z.string(), ""),
  unitStatusSendTimeout: durationOr("10s"),
  cloudResponseWaitTimeout: durationOr("10s"),
  /** Ours: hosts CM may dial besides discovery (cloud and blob hosts). */
  allowedHosts: z._default(z.array(hostPattern), []),
  /** Ours: serve SMs and dial IAM without TLS (tests and provisioning-mode units only). */
  insecure: z._default(z.boolean(), false),
  imageManager: z.prefault(
    ciObject({
      installPath: z.optional(z.string()),
      downloadPath: z.optional(z.string()),
      updateItemTtl: durationOr("30d"),
      removeOutdatedPeriod: durationOr("24h"),
    }),
    {},
  ),
  launcher: z.prefault(
    ciObject({
      nodesConnectionTimeout: durationOr("10m"),
      instanceTtl: durationOr("30d"),
      checkOverrideEnvVarsPeriod: durationOr("1m"),
    }),
    {},
  ),
  nodeInfoProvider: z.prefault(ciObject({ smConnectionTimeout: durationOr("1m") }), {}),
  monitoring: z.prefault(
    ciObject({
      sendPeriod: durationOr("1m"),
      pollPeriod: durationOr("35s"),
      averageWindow: durationOr("35s"),
    }),
    {},
  ),
  alerts: z.prefault(ciObject({ sendPeriod: durationOr("10s") }), {}),
});

/** Schema of `cm.cfg` with path defaults derived from `workingDir`. */
export const cmConfigSchema = z.pipe(
  cmConfigBase,
  z.transform((c) => ({
    ...c,
    storageDir: c.storageDir ?? `${c.workingDir}/storages`,
    stateDir: c.stateDir ?? `${c.workingDir}/states`,
    unitConfigFile: c.unitConfigFile ?? `${c.workingDir}/aos_unit.cfg`,
    imageManager: {
      ...c.imageManager,
      installPath: c.imageManager.installPath ?? `${c.workingDir}/install`,
      downloadPath: c.imageManager.downloadPath ?? `${c.workingDir}/download`,
    },
  })),
);

/** Resolved `cm.cfg`. */
export type CmConfig = z.output<typeof cmConfigSchema>;

/**
 * `sm.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import { z } from "zod";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

const containerRuntime = ciObject({
  plugin: z.literal("container"),
  type: z.string().default("runc"),
  isComponent: z.boolean().default(false),
  config: ciObject({
    runtimeDir: z.string().default("/run/aos/runtime"),
    hostWhiteoutsDir: z.string().optional(),
    storageDir: z.string().optional(),
    stateDir: z.string().optional(),
    hostBinds: z.array(z.string()).default(["bin", "sbin", "lib", "lib64", "usr"]),
    /** Upstream name kept; for runc it is the `--root` of the runtime state. */
    crunStateRoot: z.string().default("/run/runc"),
    /** Upstream name kept; the OCI runtime binary (runc here, crun upstream). */
    crunExecutable: z.string().default("/usr/sbin/runc"),
  }).prefault({}),
});

const smConfigBase = ciObject({
  workingDir: path,
  caCert: z.string().default(""),
  certStorage: z.string().default("sm"),
  iamProtectedServerUrl: hostPort.default("localhost:8089"),
  iamPublicServerUrl: hostPort.default("localhost:8090"),
  cmServerUrl: hostPort.default("localhost:8093"),
  cmReconnectTimeout: durationOr("10s"),
  /**
   * Ours: the CM blob file server (`fileServerUrl` in cm.cfg). SM dials it for image blobs; the
   * default is the CM's host with the upstream port 8094. URLs from the CM naming another host
   * are refused, and the permission manifest grants exactly this address.
   */
  cmFileServerUrl: hostPort.optional(),
  /** Ours: dial CM and IAM without TLS (tests and provisioning-mode units only). */
  insecure: z.boolean().default(false),
  nodeConfigFile: z.string().optional(),
  resourcesConfigFile: z.string().default("/etc/aos/resources.cfg"),
  monitoring: ciObject({
    pollPeriod: durationOr("35s"),
    averageWindow: durationOr("35s"),
  }).prefault({}),
  imageManager: ciObject({
    imagePath: z.string().optional(),
    imagesPartLimit: z.number().min(0).max(100).default(0),
    updateItemTtl: durationOr("30d"),
    removeOutdatedPeriod: durationOr("24h"),
  }).prefault({}),
  logging: ciObject({
    maxPartSize: z.number().int().positive().default(262144),
    maxPartCount: z.number().int().positive().default(80),
  }).prefault({}),
  runtimes: z.array(containerRuntime).default([]),
});

/** Schema of `sm.cfg` with path defaults derived from `workingDir`. */
export const smConfigSchema = smConfigBase.transform((c) => ({
  ...c,
  cmFileServerUrl: c.cmFileServerUrl ??
    `${c.cmServerUrl.slice(0, c.cmServerUrl.lastIndexOf(":")) || "localhost"}:8094`,
  nodeConfigFile: c.nodeConfigFile ?? `${c.workingDir}/aos_node.cfg`,
  imageManager: {
    ...c.imageManager,
    imagePath: c.imageManager.imagePath ?? `${c.workingDir}/images`,
  },
  runtimes: c.runtimes.map((r) => ({
    ...r,
    config: {
      ...r.config,
      hostWhiteoutsDir: r.config.hostWhiteoutsDir ?? `${c.workingDir}/whiteouts`,
      storageDir: r.config.storageDir ?? `${c.workingDir}/storages`,
      stateDir: r.config.stateDir ?? `${c.workingDir}/states`,
    },
  })),
}));

/** Resolved `sm.cfg`. */
export type SmConfig = z.output<typeof smConfigSchema>;

/**
 * Programs SM runs besides the OCI runtime: overlay rootfs (mount, umount), overlay whiteouts
 * (mknod, setfattr), layer symlinks (ln), the cgroup file system type (stat), since Deno
 * lets only fully privileged processes read /sys, and the names in host `/` for the host
 * whiteouts (ls), since Deno grants reading `/` only together with every file below it.
 */
export const SM_HELPER_PROGRAMS = [
  "mount",
  "umount",
  "mknod",
  "setfattr",
  "ln",
  "stat",
  "ls",
] as const;

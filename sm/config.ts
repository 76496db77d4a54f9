/**
 * `sm.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import * as z from "zod/mini";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

const containerRuntime = ciObject({
  plugin: z.literal("container"),
  type: z._default(z.string(), "runc"),
  isComponent: z._default(z.boolean(), false),
  config: z.prefault(
    ciObject({
      runtimeDir: z._default(z.string(), "/run/aos/runtime"),
      hostWhiteoutsDir: z.optional(z.string()),
      storageDir: z.optional(z.string()),
      stateDir: z.optional(z.string()),
      hostBinds: z._default(z.array(z.string()), ["bin", "sbin", "lib", "lib64", "usr"]),
      /** Upstream name kept; for runc it is the `--root` of the runtime state. */
      crunStateRoot: z._default(z.string(), "/run/runc"),
      /** Upstream name kept; the OCI runtime binary (runc here, crun upstream). */
      crunExecutable: z._default(z.string(), "/usr/sbin/runc"),
    }),
    {},
  ),
});

const smConfigBase = ciObject({
  workingDir: path,
  caCert: z._default(z.string(), ""),
  certStorage: z._default(z.string(), "sm"),
  iamProtectedServerUrl: z._default(hostPort, "localhost:8089"),
  iamPublicServerUrl: z._default(hostPort, "localhost:8090"),
  cmServerUrl: z._default(hostPort, "localhost:8093"),
  cmReconnectTimeout: durationOr("10s"),
  /**
   * Ours: the CM blob file server (`fileServerUrl` in cm.cfg). SM dials it for image blobs; the
   * default is the CM's host with the upstream port 8094. URLs from the CM naming another host
   * are refused, and the permission manifest grants exactly this address.
   */
  cmFileServerUrl: z.optional(hostPort),
  /** Ours: dial CM and IAM without TLS (tests and provisioning-mode units only). */
  insecure: z._default(z.boolean(), false),
  nodeConfigFile: z.optional(z.string()),
  resourcesConfigFile: z._default(z.string(), "/etc/aos/resources.cfg"),
  monitoring: z.prefault(
    ciObject({
      pollPeriod: durationOr("35s"),
      averageWindow: durationOr("35s"),
    }),
    {},
  ),
  imageManager: z.prefault(
    ciObject({
      imagePath: z.optional(z.string()),
      imagesPartLimit: z._default(z.number().check(z.gte(0), z.lte(100)), 0),
      updateItemTtl: durationOr("30d"),
      removeOutdatedPeriod: durationOr("24h"),
    }),
    {},
  ),
  logging: z.prefault(
    ciObject({
      maxPartSize: z._default(z.number().check(z.int(), z.positive()), 262144),
      maxPartCount: z._default(z.number().check(z.int(), z.positive()), 80),
    }),
    {},
  ),
  runtimes: z._default(z.array(containerRuntime), []),
});

/** Schema of `sm.cfg` with path defaults derived from `workingDir`. */
export const smConfigSchema = z.pipe(
  smConfigBase,
  z.transform((c) => ({
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
  })),
);

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

/**
 * zod schema of the OCI runtime spec `config.json`: the subset a container runtime needs, with
 * every object loose so keys we do not model (hooks, annotations, seccomp details…) survive a
 * load → save round trip.
 * @module
 */
import * as z from "zod/mini";

const u32 = z.number().check(z.int(), z.nonnegative(), z.lte(0xffff_ffff));
const int = z.number().check(z.int());

/** A process rlimit. */
export const rlimitSchema = z.looseObject({ type: z.string(), hard: int, soft: int });
/** A process rlimit. */
export type Rlimit = z.infer<typeof rlimitSchema>;

/** Capability sets of the container process. */
export const capabilitiesSchema = z.looseObject({
  bounding: z.optional(z.array(z.string())),
  effective: z.optional(z.array(z.string())),
  permitted: z.optional(z.array(z.string())),
  inheritable: z.optional(z.array(z.string())),
  ambient: z.optional(z.array(z.string())),
});

/** The container process. */
export const processSchema = z.looseObject({
  terminal: z.optional(z.boolean()),
  user: z.looseObject({
    uid: u32,
    gid: u32,
    umask: z.optional(u32),
    additionalGids: z.optional(z.array(u32)),
  }),
  args: z.optional(z.array(z.string())),
  env: z.optional(z.array(z.string())),
  cwd: z.string(),
  capabilities: z.optional(capabilitiesSchema),
  rlimits: z.optional(z.array(rlimitSchema)),
  noNewPrivileges: z.optional(z.boolean()),
});
/** The container process. */
export type Process = z.infer<typeof processSchema>;

/** A mount. */
export const mountSchema = z.looseObject({
  destination: z.string(),
  type: z.optional(z.string()),
  source: z.optional(z.string()),
  options: z.optional(z.array(z.string())),
});
/** A mount. */
export type Mount = z.infer<typeof mountSchema>;

/** A Linux namespace. */
export const namespaceSchema = z.looseObject({ type: z.string(), path: z.optional(z.string()) });

/** A uid/gid mapping of a user namespace. */
export const idMappingSchema = z.looseObject({
  containerID: u32,
  hostID: u32,
  size: u32,
});

/** A device node created in the container. */
export const deviceSchema = z.looseObject({
  type: z.string(),
  path: z.string(),
  major: z.optional(int),
  minor: z.optional(int),
  fileMode: z.optional(int),
  uid: z.optional(u32),
  gid: z.optional(u32),
});

/** A device cgroup rule. */
export const deviceCgroupSchema = z.looseObject({
  allow: z.boolean(),
  type: z.optional(z.string()),
  major: z.optional(z.nullable(int)),
  minor: z.optional(z.nullable(int)),
  access: z.optional(z.string()),
});

/** cgroup resources. */
export const resourcesSchema = z.looseObject({
  memory: z.optional(z.looseObject({ limit: z.optional(int) })),
  cpu: z.optional(z.looseObject({
    quota: z.optional(int),
    period: z.optional(int.check(z.nonnegative())),
    shares: z.optional(int.check(z.nonnegative())),
  })),
  pids: z.optional(z.looseObject({ limit: int })),
  devices: z.optional(z.array(deviceCgroupSchema)),
});
/** cgroup resources. */
export type Resources = z.infer<typeof resourcesSchema>;

/** The `linux` section. */
export const linuxSchema = z.looseObject({
  namespaces: z.optional(z.array(namespaceSchema)),
  resources: z.optional(resourcesSchema),
  cgroupsPath: z.optional(z.string()),
  uidMappings: z.optional(z.array(idMappingSchema)),
  gidMappings: z.optional(z.array(idMappingSchema)),
  maskedPaths: z.optional(z.array(z.string())),
  readonlyPaths: z.optional(z.array(z.string())),
  devices: z.optional(z.array(deviceSchema)),
  sysctl: z.optional(z.record(z.string(), z.string())),
  /** Passed through to the runtime untouched. */
  seccomp: z.optional(z.unknown()),
});
/** The `linux` section. */
export type Linux = z.infer<typeof linuxSchema>;

/** OCI runtime spec `config.json`. */
export const runtimeSpecSchema = z.looseObject({
  ociVersion: z.string().check(z.minLength(1)),
  process: z.optional(processSchema),
  root: z.optional(z.looseObject({ path: z.string(), readonly: z.optional(z.boolean()) })),
  hostname: z.optional(z.string()),
  mounts: z.optional(z.array(mountSchema)),
  linux: z.optional(linuxSchema),
});
/** OCI runtime spec `config.json`. */
export type RuntimeSpec = z.infer<typeof runtimeSpecSchema>;

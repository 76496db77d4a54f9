/**
 * zod schema of the OCI runtime spec `config.json`: the subset a container runtime needs, with
 * every object loose so keys we do not model (hooks, annotations, seccomp details…) survive a
 * load → save round trip.
 * @module
 */
import { z } from "zod";

const u32 = z.number().int().nonnegative().max(0xffff_ffff);
const int = z.number().int();

/** A process rlimit. */
export const rlimitSchema = z.looseObject({ type: z.string(), hard: int, soft: int });
/** A process rlimit. */
export type Rlimit = z.infer<typeof rlimitSchema>;

/** Capability sets of the container process. */
export const capabilitiesSchema = z.looseObject({
  bounding: z.array(z.string()).optional(),
  effective: z.array(z.string()).optional(),
  permitted: z.array(z.string()).optional(),
  inheritable: z.array(z.string()).optional(),
  ambient: z.array(z.string()).optional(),
});

/** The container process. */
export const processSchema = z.looseObject({
  terminal: z.boolean().optional(),
  user: z.looseObject({
    uid: u32,
    gid: u32,
    umask: u32.optional(),
    additionalGids: z.array(u32).optional(),
  }),
  args: z.array(z.string()).optional(),
  env: z.array(z.string()).optional(),
  cwd: z.string(),
  capabilities: capabilitiesSchema.optional(),
  rlimits: z.array(rlimitSchema).optional(),
  noNewPrivileges: z.boolean().optional(),
});
/** The container process. */
export type Process = z.infer<typeof processSchema>;

/** A mount. */
export const mountSchema = z.looseObject({
  destination: z.string(),
  type: z.string().optional(),
  source: z.string().optional(),
  options: z.array(z.string()).optional(),
});
/** A mount. */
export type Mount = z.infer<typeof mountSchema>;

/** A Linux namespace. */
export const namespaceSchema = z.looseObject({ type: z.string(), path: z.string().optional() });

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
  major: int.optional(),
  minor: int.optional(),
  fileMode: int.optional(),
  uid: u32.optional(),
  gid: u32.optional(),
});

/** A device cgroup rule. */
export const deviceCgroupSchema = z.looseObject({
  allow: z.boolean(),
  type: z.string().optional(),
  major: int.nullable().optional(),
  minor: int.nullable().optional(),
  access: z.string().optional(),
});

/** cgroup resources. */
export const resourcesSchema = z.looseObject({
  memory: z.looseObject({ limit: int.optional() }).optional(),
  cpu: z.looseObject({
    quota: int.optional(),
    period: int.nonnegative().optional(),
    shares: int.nonnegative().optional(),
  }).optional(),
  pids: z.looseObject({ limit: int }).optional(),
  devices: z.array(deviceCgroupSchema).optional(),
});
/** cgroup resources. */
export type Resources = z.infer<typeof resourcesSchema>;

/** The `linux` section. */
export const linuxSchema = z.looseObject({
  namespaces: z.array(namespaceSchema).optional(),
  resources: resourcesSchema.optional(),
  cgroupsPath: z.string().optional(),
  uidMappings: z.array(idMappingSchema).optional(),
  gidMappings: z.array(idMappingSchema).optional(),
  maskedPaths: z.array(z.string()).optional(),
  readonlyPaths: z.array(z.string()).optional(),
  devices: z.array(deviceSchema).optional(),
  sysctl: z.record(z.string(), z.string()).optional(),
  /** Passed through to the runtime untouched. */
  seccomp: z.unknown().optional(),
});
/** The `linux` section. */
export type Linux = z.infer<typeof linuxSchema>;

/** OCI runtime spec `config.json`. */
export const runtimeSpecSchema = z.looseObject({
  ociVersion: z.string().min(1),
  process: processSchema.optional(),
  root: z.looseObject({ path: z.string(), readonly: z.boolean().optional() }).optional(),
  hostname: z.string().optional(),
  mounts: z.array(mountSchema).optional(),
  linux: linuxSchema.optional(),
});
/** OCI runtime spec `config.json`. */
export type RuntimeSpec = z.infer<typeof runtimeSpecSchema>;

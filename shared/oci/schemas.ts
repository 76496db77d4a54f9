/**
 * zod schemas of the OCI image index, manifest, image config and the Aos item config.
 *
 * Every object keeps unknown keys (loose), so load → save loses nothing. Keys that AosCore reads
 * case-insensitively (manifest, index, item config, image config `config`) are matched
 * case-insensitively here too and renamed to their canonical spelling.
 * @module
 */
import * as z from "zod/mini";
import { digestSchema } from "./digest.ts";

function canonicalKeys(value: unknown, canonical: readonly string[]): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const byLower = new Map(canonical.map((k) => [k.toLowerCase(), k]));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const name = byLower.get(key.toLowerCase()) ?? key;
    // An exact-case key wins over a differently cased duplicate.
    if (Object.hasOwn(out, name) && key !== name) continue;
    out[name] = v;
  }
  return out;
}

/**
 * A loose object schema whose known keys match case-insensitively; unknown keys are kept as is.
 */
export function ciLooseObject<T extends z.core.$ZodLooseShape>(shape: T) {
  const keys = Object.keys(shape);
  return z.pipe(z.transform((v) => canonicalKeys(v, keys)), z.looseObject(shape));
}

const u64 = z.number().check(z.int(), z.nonnegative());
const stringMap = z.record(z.string(), z.string());

/** OCI platform of an index entry. */
export const platformSchema = z.looseObject({
  architecture: z.string(),
  os: z.string(),
  "os.version": z.optional(z.string()),
  "os.features": z.optional(z.array(z.string())),
  variant: z.optional(z.string()),
  features: z.optional(z.array(z.string())),
});
/** OCI platform. */
export type Platform = z.infer<typeof platformSchema>;

/** OCI content descriptor. */
export const descriptorSchema = ciLooseObject({
  mediaType: z.string().check(z.minLength(1)),
  digest: digestSchema,
  size: u64,
  urls: z.optional(z.array(z.string())),
  annotations: z.optional(stringMap),
  data: z.optional(z.string()),
  artifactType: z.optional(z.string()),
  platform: z.optional(platformSchema),
});
/** OCI content descriptor. */
export type Descriptor = z.infer<typeof descriptorSchema>;

/** OCI image index. */
export const imageIndexSchema = ciLooseObject({
  schemaVersion: z.literal(2),
  mediaType: z.optional(z.string()),
  artifactType: z.optional(z.string()),
  manifests: z.array(descriptorSchema),
  subject: z.optional(descriptorSchema),
  annotations: z.optional(stringMap),
});
/** OCI image index. */
export type ImageIndex = z.infer<typeof imageIndexSchema>;

/**
 * OCI image manifest with the Aos extension `aosItemConfig` (AosCore 9.x). `aosService` is the
 * same descriptor under its pre-9.x name; it is kept when present.
 */
export const imageManifestSchema = ciLooseObject({
  schemaVersion: z.literal(2),
  mediaType: z.optional(z.string()),
  artifactType: z.optional(z.string()),
  config: descriptorSchema,
  layers: z._default(z.array(descriptorSchema), []),
  subject: z.optional(descriptorSchema),
  annotations: z.optional(stringMap),
  aosItemConfig: z.optional(descriptorSchema),
  aosService: z.optional(descriptorSchema),
});
/** OCI image manifest (+ `aosItemConfig`). */
export type ImageManifest = z.infer<typeof imageManifestSchema>;

/** The item config descriptor of a manifest: `aosItemConfig`, else the legacy `aosService`. */
export function manifestItemConfig(manifest: ImageManifest): Descriptor | undefined {
  return manifest.aosItemConfig ?? manifest.aosService;
}

const nullableStrings = z.nullable(z.array(z.string()));

/** The `config` member of an OCI image config (Docker-style capitalised keys). */
export const containerConfigSchema = ciLooseObject({
  User: z.optional(z.string()),
  ExposedPorts: z.optional(z.nullable(z.record(z.string(), z.unknown()))),
  Env: z.optional(nullableStrings),
  Entrypoint: z.optional(nullableStrings),
  Cmd: z.optional(nullableStrings),
  Volumes: z.optional(z.nullable(z.record(z.string(), z.unknown()))),
  WorkingDir: z.optional(z.string()),
  Labels: z.optional(z.nullable(stringMap)),
  StopSignal: z.optional(z.string()),
  ArgsEscaped: z.optional(z.boolean()),
});
/** Execution parameters of an image. */
export type ContainerConfig = z.infer<typeof containerConfigSchema>;

/** OCI image config. `architecture`/`os` are optional: Aos service images may omit them. */
export const imageConfigSchema = ciLooseObject({
  created: z.optional(z.string()),
  author: z.optional(z.string()),
  architecture: z.optional(z.string()),
  os: z.optional(z.string()),
  "os.version": z.optional(z.string()),
  "os.features": z.optional(z.array(z.string())),
  variant: z.optional(z.string()),
  config: z.optional(containerConfigSchema),
  rootfs: ciLooseObject({
    type: z.string(),
    diff_ids: z.array(digestSchema),
  }),
  history: z.optional(z.array(z.looseObject({
    created: z.optional(z.string()),
    author: z.optional(z.string()),
    created_by: z.optional(z.string()),
    comment: z.optional(z.string()),
    empty_layer: z.optional(z.boolean()),
  }))),
});
/** OCI image config. */
export type ImageConfig = z.infer<typeof imageConfigSchema>;

/** A duration as AosCore writes it (Go-style string such as `"10s"`; numbers are tolerated). */
const durationText = z.union([z.string(), z.number()]);

const percentsRule = ciLooseObject({
  minTimeout: z.optional(durationText),
  minThreshold: z.number(),
  maxThreshold: z.number(),
});
const pointsRule = ciLooseObject({
  minTimeout: z.optional(durationText),
  minThreshold: u64,
  maxThreshold: u64,
});

/** Alert rules of an item config. */
export const alertRulesSchema = ciLooseObject({
  ram: z.optional(percentsRule),
  cpu: z.optional(percentsRule),
  partitions: z.optional(z.array(ciLooseObject({
    name: z.string(),
    minTimeout: z.optional(durationText),
    minThreshold: z.number(),
    maxThreshold: z.number(),
  }))),
  download: z.optional(pointsRule),
  upload: z.optional(pointsRule),
});
/** Alert rules of an item config. */
export type AlertRules = z.infer<typeof alertRulesSchema>;

/** Resource quotas of an item config. */
export const quotasSchema = ciLooseObject({
  cpuDMIPSLimit: z.optional(u64),
  ramLimit: z.optional(u64),
  pidsLimit: z.optional(u64),
  noFileLimit: z.optional(u64),
  tmpLimit: z.optional(u64),
  stateLimit: z.optional(u64),
  storageLimit: z.optional(u64),
  uploadSpeed: z.optional(u64),
  downloadSpeed: z.optional(u64),
  uploadLimit: z.optional(u64),
  downloadLimit: z.optional(u64),
});
/** Resource quotas of an item config. */
export type Quotas = z.infer<typeof quotasSchema>;

/**
 * The Aos item config (the blob the manifest's `aosItemConfig` points to), with the key names
 * AosCore writes. Durations stay as written (strings), so a round trip is exact.
 */
export const itemConfigSchema = ciLooseObject({
  created: z.optional(z.string()),
  author: z.optional(z.string()),
  skipResourceLimits: z.optional(z.boolean()),
  hostname: z.optional(z.string()),
  balancingPolicy: z.optional(z.enum(["enabled", "disabled"])),
  runtimes: z.optional(z.array(ciLooseObject({ codename: z.string() }))),
  runParameters: z.optional(ciLooseObject({
    startInterval: z.optional(durationText),
    startBurst: z.optional(u64),
    restartInterval: z.optional(durationText),
  })),
  sysctl: z.optional(stringMap),
  offlineTTL: z.optional(durationText),
  quotas: z.optional(quotasSchema),
  requestedResources: z.optional(ciLooseObject({
    cpu: z.optional(u64),
    ram: z.optional(u64),
    storage: z.optional(u64),
    state: z.optional(u64),
  })),
  /** Keys `"<itemID>/<port>[/<proto>]"`; values are empty objects (only keys are used). */
  allowedConnections: z.optional(z.record(z.string(), z.unknown())),
  resources: z.optional(z.array(ciLooseObject({ name: z.string(), mode: z.optional(z.string()) }))),
  /** `{ "<funcServiceName>": { "<function>": "<permission>" } }`. */
  permissions: z.optional(z.record(z.string(), z.record(z.string(), z.string()))),
  alertRules: z.optional(alertRulesSchema),
});
/** The Aos item config. */
export type ItemConfig = z.infer<typeof itemConfigSchema>;

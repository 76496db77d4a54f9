/**
 * zod schemas of the OCI image index, manifest, image config and the Aos item config.
 *
 * Every object keeps unknown keys (loose), so load → save loses nothing. Keys that AosCore reads
 * case-insensitively (manifest, index, item config, image config `config`) are matched
 * case-insensitively here too and renamed to their canonical spelling.
 * @module
 */
import { z } from "zod";
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
export function ciLooseObject<T extends z.ZodRawShape>(shape: T) {
  const keys = Object.keys(shape);
  return z.preprocess((v) => canonicalKeys(v, keys), z.looseObject(shape));
}

const u64 = z.number().int().nonnegative();
const stringMap = z.record(z.string(), z.string());

/** OCI platform of an index entry. */
export const platformSchema = z.looseObject({
  architecture: z.string(),
  os: z.string(),
  "os.version": z.string().optional(),
  "os.features": z.array(z.string()).optional(),
  variant: z.string().optional(),
  features: z.array(z.string()).optional(),
});
/** OCI platform. */
export type Platform = z.infer<typeof platformSchema>;

/** OCI content descriptor. */
export const descriptorSchema = ciLooseObject({
  mediaType: z.string().min(1),
  digest: digestSchema,
  size: u64,
  urls: z.array(z.string()).optional(),
  annotations: stringMap.optional(),
  data: z.string().optional(),
  artifactType: z.string().optional(),
  platform: platformSchema.optional(),
});
/** OCI content descriptor. */
export type Descriptor = z.infer<typeof descriptorSchema>;

/** OCI image index. */
export const imageIndexSchema = ciLooseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(descriptorSchema),
  subject: descriptorSchema.optional(),
  annotations: stringMap.optional(),
});
/** OCI image index. */
export type ImageIndex = z.infer<typeof imageIndexSchema>;

/**
 * OCI image manifest with the Aos extension `aosItemConfig` (AosCore 9.x). `aosService` is the
 * same descriptor under its pre-9.x name; it is kept when present.
 */
export const imageManifestSchema = ciLooseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema).default([]),
  subject: descriptorSchema.optional(),
  annotations: stringMap.optional(),
  aosItemConfig: descriptorSchema.optional(),
  aosService: descriptorSchema.optional(),
});
/** OCI image manifest (+ `aosItemConfig`). */
export type ImageManifest = z.infer<typeof imageManifestSchema>;

/** The item config descriptor of a manifest: `aosItemConfig`, else the legacy `aosService`. */
export function manifestItemConfig(manifest: ImageManifest): Descriptor | undefined {
  return manifest.aosItemConfig ?? manifest.aosService;
}

const nullableStrings = z.array(z.string()).nullable();

/** The `config` member of an OCI image config (Docker-style capitalised keys). */
export const containerConfigSchema = ciLooseObject({
  User: z.string().optional(),
  ExposedPorts: z.record(z.string(), z.unknown()).nullable().optional(),
  Env: nullableStrings.optional(),
  Entrypoint: nullableStrings.optional(),
  Cmd: nullableStrings.optional(),
  Volumes: z.record(z.string(), z.unknown()).nullable().optional(),
  WorkingDir: z.string().optional(),
  Labels: stringMap.nullable().optional(),
  StopSignal: z.string().optional(),
  ArgsEscaped: z.boolean().optional(),
});
/** Execution parameters of an image. */
export type ContainerConfig = z.infer<typeof containerConfigSchema>;

/** OCI image config. `architecture`/`os` are optional: Aos service images may omit them. */
export const imageConfigSchema = ciLooseObject({
  created: z.string().optional(),
  author: z.string().optional(),
  architecture: z.string().optional(),
  os: z.string().optional(),
  "os.version": z.string().optional(),
  "os.features": z.array(z.string()).optional(),
  variant: z.string().optional(),
  config: containerConfigSchema.optional(),
  rootfs: ciLooseObject({
    type: z.string(),
    diff_ids: z.array(digestSchema),
  }),
  history: z.array(z.looseObject({
    created: z.string().optional(),
    author: z.string().optional(),
    created_by: z.string().optional(),
    comment: z.string().optional(),
    empty_layer: z.boolean().optional(),
  })).optional(),
});
/** OCI image config. */
export type ImageConfig = z.infer<typeof imageConfigSchema>;

/** A duration as AosCore writes it (Go-style string such as `"10s"`; numbers are tolerated). */
const durationText = z.union([z.string(), z.number()]);

const percentsRule = ciLooseObject({
  minTimeout: durationText.optional(),
  minThreshold: z.number(),
  maxThreshold: z.number(),
});
const pointsRule = ciLooseObject({
  minTimeout: durationText.optional(),
  minThreshold: u64,
  maxThreshold: u64,
});

/** Alert rules of an item config. */
export const alertRulesSchema = ciLooseObject({
  ram: percentsRule.optional(),
  cpu: percentsRule.optional(),
  partitions: z.array(ciLooseObject({
    name: z.string(),
    minTimeout: durationText.optional(),
    minThreshold: z.number(),
    maxThreshold: z.number(),
  })).optional(),
  download: pointsRule.optional(),
  upload: pointsRule.optional(),
});
/** Alert rules of an item config. */
export type AlertRules = z.infer<typeof alertRulesSchema>;

/** Resource quotas of an item config. */
export const quotasSchema = ciLooseObject({
  cpuDMIPSLimit: u64.optional(),
  ramLimit: u64.optional(),
  pidsLimit: u64.optional(),
  noFileLimit: u64.optional(),
  tmpLimit: u64.optional(),
  stateLimit: u64.optional(),
  storageLimit: u64.optional(),
  uploadSpeed: u64.optional(),
  downloadSpeed: u64.optional(),
  uploadLimit: u64.optional(),
  downloadLimit: u64.optional(),
});
/** Resource quotas of an item config. */
export type Quotas = z.infer<typeof quotasSchema>;

/**
 * The Aos item config (the blob the manifest's `aosItemConfig` points to), with the key names
 * AosCore writes. Durations stay as written (strings), so a round trip is exact.
 */
export const itemConfigSchema = ciLooseObject({
  created: z.string().optional(),
  author: z.string().optional(),
  skipResourceLimits: z.boolean().optional(),
  hostname: z.string().optional(),
  balancingPolicy: z.enum(["enabled", "disabled"]).optional(),
  runtimes: z.array(ciLooseObject({ codename: z.string() })).optional(),
  runParameters: ciLooseObject({
    startInterval: durationText.optional(),
    startBurst: u64.optional(),
    restartInterval: durationText.optional(),
  }).optional(),
  sysctl: stringMap.optional(),
  offlineTTL: durationText.optional(),
  quotas: quotasSchema.optional(),
  requestedResources: ciLooseObject({
    cpu: u64.optional(),
    ram: u64.optional(),
    storage: u64.optional(),
    state: u64.optional(),
  }).optional(),
  /** Keys `"<itemID>/<port>[/<proto>]"`; values are empty objects (only keys are used). */
  allowedConnections: z.record(z.string(), z.unknown()).optional(),
  resources: z.array(ciLooseObject({ name: z.string(), mode: z.string().optional() })).optional(),
  /** `{ "<funcServiceName>": { "<function>": "<permission>" } }`. */
  permissions: z.record(z.string(), z.record(z.string(), z.string())).optional(),
  alertRules: alertRulesSchema.optional(),
});
/** The Aos item config. */
export type ItemConfig = z.infer<typeof itemConfigSchema>;

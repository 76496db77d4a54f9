/**
 * Bounded, validated JSON load/save for OCI documents; saves are atomic (temp file + rename).
 * @module
 */
import type * as z from "zod/mini";
import "../core/zod_en.ts";
import { dirname } from "node:path";
import { AosError } from "../core/errors.ts";
import {
  imageConfigSchema,
  imageIndexSchema,
  imageManifestSchema,
  itemConfigSchema,
} from "./schemas.ts";
import type { ImageConfig, ImageIndex, ImageManifest, ItemConfig } from "./schemas.ts";
import { runtimeSpecSchema } from "./runtime_spec.ts";
import type { RuntimeSpec } from "./runtime_spec.ts";

/** Largest OCI JSON document accepted by default (bytes). */
export const MAX_OCI_JSON_BYTES = 4 * 1024 * 1024;

/** Options of the load helpers. */
export interface LoadJsonOptions {
  /** Size limit in bytes (default {@link MAX_OCI_JSON_BYTES}). */
  maxBytes?: number;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.map(String).join(".");
  return key ? `key "${key}": ${issue.message}` : issue.message;
}

/**
 * Parses JSON text or bytes with `schema`. `what` names the document in errors
 * (e.g. `image manifest sha256:ab…`).
 */
export function parseOciJson<S extends z.ZodMiniType>(
  what: string,
  data: string | Uint8Array,
  schema: S,
  options: LoadJsonOptions = {},
): z.output<S> {
  const maxBytes = options.maxBytes ?? MAX_OCI_JSON_BYTES;
  const size = typeof data === "string" ? data.length : data.byteLength;
  if (size > maxBytes) {
    throw new AosError("outOfRange", `Cannot parse ${what}: ${size} bytes exceeds ${maxBytes}`);
  }
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AosError(
      "invalidArgument",
      `Cannot parse ${what}: malformed JSON: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const issues = result.error.issues;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : "";
    throw new AosError("invalidArgument", `Invalid ${what}: ${describeIssue(issues[0]!)}${more}`);
  }
  return result.data;
}

/** Reads and validates a JSON file, refusing files larger than the limit before reading them. */
export async function loadJsonFile<S extends z.ZodMiniType>(
  path: string,
  schema: S,
  options: LoadJsonOptions = {},
): Promise<z.output<S>> {
  const maxBytes = options.maxBytes ?? MAX_OCI_JSON_BYTES;
  let bytes: Uint8Array;
  try {
    using file = await Deno.open(path, { read: true });
    const info = await file.stat();
    if (!info.isFile) throw new AosError("invalidArgument", `Cannot load ${path}: not a file`);
    if (info.size > maxBytes) {
      throw new AosError(
        "outOfRange",
        `Cannot load ${path}: ${info.size} bytes exceeds the ${maxBytes} byte limit`,
      );
    }
    // Read at most maxBytes + 1 so a file growing after stat() is still caught.
    const buf = new Uint8Array(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      const r = await file.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    bytes = buf.subarray(0, n);
  } catch (err) {
    if (err instanceof AosError) throw err;
    const code = err instanceof Deno.errors.NotFound ? "notFound" : "failed";
    throw new AosError(code, `Cannot load ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseOciJson(path, bytes, schema, { maxBytes });
}

/** Options of {@link saveJsonFile}. */
export interface SaveJsonOptions {
  /** File mode of the saved file (default 0o644). */
  mode?: number;
  /** Indentation (default 2 spaces). */
  indent?: number;
}

/**
 * Validates `value` with `schema` and writes it atomically: a temp file in the same directory,
 * fsync, then rename over `path`, so readers see the old or the new document, never a torn one.
 */
export async function saveJsonFile<S extends z.ZodMiniType>(
  path: string,
  value: z.input<S>,
  schema: S,
  options: SaveJsonOptions = {},
): Promise<void> {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new AosError(
      "invalidArgument",
      `Cannot save ${path}: ${describeIssue(result.error.issues[0]!)}`,
    );
  }
  const text = JSON.stringify(result.data, null, options.indent ?? 2) + "\n";
  const tmp = `${dirname(path)}/.${path.split("/").pop()}.${crypto.randomUUID()}.tmp`;
  try {
    using file = await Deno.open(tmp, {
      write: true,
      createNew: true,
      mode: options.mode ?? 0o644,
    });
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    await file.sync();
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new AosError("failed", `Cannot save ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new AosError("failed", `Cannot save ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Loads an OCI image index. */
export function loadImageIndex(path: string, options?: LoadJsonOptions): Promise<ImageIndex> {
  return loadJsonFile(path, imageIndexSchema, options);
}
/** Saves an OCI image index atomically. */
export function saveImageIndex(path: string, value: ImageIndex): Promise<void> {
  return saveJsonFile(path, value, imageIndexSchema);
}
/** Loads an OCI image manifest. */
export function loadImageManifest(path: string, options?: LoadJsonOptions): Promise<ImageManifest> {
  return loadJsonFile(path, imageManifestSchema, options);
}
/** Saves an OCI image manifest atomically. */
export function saveImageManifest(path: string, value: ImageManifest): Promise<void> {
  return saveJsonFile(path, value, imageManifestSchema);
}
/** Loads an OCI image config. */
export function loadImageConfig(path: string, options?: LoadJsonOptions): Promise<ImageConfig> {
  return loadJsonFile(path, imageConfigSchema, options);
}
/** Saves an OCI image config atomically. */
export function saveImageConfig(path: string, value: ImageConfig): Promise<void> {
  return saveJsonFile(path, value, imageConfigSchema);
}
/** Loads an Aos item config. */
export function loadItemConfig(path: string, options?: LoadJsonOptions): Promise<ItemConfig> {
  return loadJsonFile(path, itemConfigSchema, options);
}
/** Saves an Aos item config atomically. */
export function saveItemConfig(path: string, value: ItemConfig): Promise<void> {
  return saveJsonFile(path, value, itemConfigSchema);
}
/** Loads an OCI runtime spec `config.json`. */
export function loadRuntimeSpec(path: string, options?: LoadJsonOptions): Promise<RuntimeSpec> {
  return loadJsonFile(path, runtimeSpecSchema, options);
}
/** Saves an OCI runtime spec `config.json` atomically. */
export function saveRuntimeSpec(path: string, value: RuntimeSpec): Promise<void> {
  return saveJsonFile(path, value, runtimeSpecSchema);
}

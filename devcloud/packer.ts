/**
 * The image packer: a rootfs (directory or tarball) plus a small service manifest become an
 * Aos service image: a gzip layer, the OCI image config, the Aos item config, the image
 * manifest (with its `aosItemConfig` descriptor) and the image index, each stored as a blob
 * under `<blobsDir>/sha256/<hex>`.
 *
 * A directory is archived with GNU `tar` (sorted names, owner 0:0), so the same inputs give
 * the same digests and a re-deploy of an unchanged service changes nothing on the unit.
 * @module
 */
import { basename, join } from "node:path";
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { AosError } from "@aos/shared/core";
import { hashingStream, sha256Hex } from "@aos/shared/crypto";
import {
  type Descriptor,
  type ImageConfig,
  imageConfigSchema,
  type ImageIndex,
  imageIndexSchema,
  type ImageManifest,
  imageManifestSchema,
  type ItemConfig,
  itemConfigSchema,
  MediaType,
} from "@aos/shared/oci";

/** A service name: also a directory name and an OCI title. */
export const SERVICE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * `service.json`: what the image runs and how. Any other key is an Aos item config key
 * (`quotas`, `runParameters`, `permissions`, `allowedConnections`, `resources`, `alertRules`,
 * `sysctl`, `offlineTTL`, `hostname`, `balancingPolicy`, `requestedResources`, …) and is copied
 * into the item config as written.
 */
export const serviceManifestSchema = z.looseObject({
  name: z.string().check(
    z.regex(SERVICE_NAME_RE, { message: "must be 1-64 of A-Z a-z 0-9 . _ -" }),
  ),
  version: z.string().check(z.minLength(1), z.maxLength(32)),
  cmd: z.array(z.string()).check(z.minLength(1)),
  entrypoint: z.optional(z.array(z.string())),
  env: z._default(z.array(z.string()), []),
  workingDir: z.optional(z.string()),
  author: z.optional(z.string()),
  /** RFC 3339; absent keeps the image reproducible. */
  created: z.optional(z.string()),
  /** OCI platform (`amd64`, `arm64`…); absent: any platform. */
  architecture: z.optional(z.string()),
  os: z._default(z.string(), "linux"),
  /** Runtime types allowed (item config `runtimes[].codename`). */
  runtimes: z.optional(z.array(z.string())),
  /** Stable item id (UUID); devcloud assigns one when absent. */
  id: z.optional(z.string().check(z.uuid())),
});

/** A parsed `service.json`. */
export type ServiceManifest = z.output<typeof serviceManifestSchema>;

/** Keys of `service.json` that are not item config keys. */
const IMAGE_KEYS = new Set([
  "name",
  "version",
  "cmd",
  "entrypoint",
  "env",
  "workingDir",
  "architecture",
  "os",
  "runtimes",
  "id",
]);

/** Options of {@link packService}. */
export interface PackOptions {
  /** A rootfs directory, or a `.tar`, `.tar.gz` or `.tgz` archive of one. */
  source: string;
  /** What to run. */
  manifest: ServiceManifest;
  /** Blob store root: blobs go to `<blobsDir>/sha256/<hex>`. */
  blobsDir: string;
  /** The `tar` program (default `tar`). */
  tar?: string;
  /**
   * More layers (directories or archives, like `source`), each its own gzip blob listed after
   * the rootfs layer in the manifest (fault tests want images of several large blobs).
   */
  layers?: readonly string[];
}

/** The blobs of a packed image. */
export interface PackedImage {
  /** Service name. */
  name: string;
  /** Service version. */
  version: string;
  /** The image index: `indexDigest` of the desired status. */
  index: Descriptor;
  /** The image manifest. */
  manifest: Descriptor;
  /** The OCI image config. */
  config: Descriptor;
  /** The Aos item config. */
  itemConfig: Descriptor;
  /** The gzip layer. */
  layer: Descriptor;
  /** SHA-256 of the uncompressed layer (`rootfs.diff_ids[0]`). */
  diffId: string;
  /** Every layer in manifest order: `layer` first, then those of `options.layers`. */
  layers: Descriptor[];
}

/** Writes `bytes` as a blob; returns its descriptor. */
export async function writeBlob(
  blobsDir: string,
  bytes: Uint8Array,
  mediaType: string,
): Promise<Descriptor> {
  const hex = sha256Hex(bytes);
  const dir = join(blobsDir, "sha256");
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, hex);
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.byteLength };
}

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

type Kind = "dir" | "tar" | "tgz";

async function sourceKind(source: string): Promise<Kind> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(source);
  } catch (err) {
    throw new AosError("notFound", `Cannot pack ${source}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (info.isDirectory) return "dir";
  if (/\.(tar\.gz|tgz)$/.test(source)) return "tgz";
  if (source.endsWith(".tar")) return "tar";
  throw new AosError(
    "invalidArgument",
    `Cannot pack ${source}: not a directory, .tar, .tar.gz or .tgz`,
  );
}

/** Runs tar over the top-level entries of `dir` (sorted, owner 0:0); returns its stdout. */
async function tarDirectory(
  dir: string,
  tar: string,
): Promise<{ stream: ReadableStream<Uint8Array>; done: Promise<void> }> {
  const entries: string[] = [];
  for await (const e of Deno.readDir(dir)) entries.push(e.name);
  if (entries.length === 0) {
    throw new AosError("invalidArgument", `Cannot pack ${dir}: the rootfs directory is empty`);
  }
  entries.sort();
  const child = new Deno.Command(tar, {
    // `--` and relative names: entry names cannot be read as options.
    args: [
      "-C",
      dir,
      "--sort=name",
      "--numeric-owner",
      "--owner=0",
      "--group=0",
      "-cf",
      "-",
      "--",
      ...entries,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const done = (async () => {
    const [status, stderr] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
    ]);
    if (!status.success) {
      throw new AosError(
        "failed",
        `Cannot pack ${dir}: ${tar} exited with ${status.code}: ${stderr.trim().slice(0, 500)}`,
      );
    }
  })();
  done.catch(() => {});
  return { stream: child.stdout, done };
}

/** Writes a stream to a blob file while hashing it. */
async function streamToBlob(
  blobsDir: string,
  stream: ReadableStream<Uint8Array>,
  mediaType: string,
): Promise<Descriptor> {
  const dir = join(blobsDir, "sha256");
  await Deno.mkdir(dir, { recursive: true });
  const tmp = join(dir, `layer.${crypto.randomUUID()}.tmp`);
  const h = hashingStream("sha256");
  let size = 0;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, c) {
      size += chunk.byteLength;
      c.enqueue(chunk);
    },
  });
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true });
    await stream.pipeThrough(h.stream).pipeThrough(counter).pipeTo(file.writable);
    const hex = await h.hex;
    await Deno.rename(tmp, join(dir, hex));
    return { mediaType, digest: `sha256:${hex}`, size };
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}

async function sha256OfStream(stream: ReadableStream<Uint8Array>): Promise<string> {
  const h = hashingStream("sha256");
  await stream.pipeThrough(h.stream).pipeTo(new WritableStream());
  return `sha256:${await h.hex}`;
}

// The DOM typings declare BufferSource on the writable side; these streams take Uint8Array.
function gzip(): TransformStream<Uint8Array, Uint8Array> {
  return new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>;
}
function gunzip(): TransformStream<Uint8Array, Uint8Array> {
  return new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>;
}

/** Builds the layer blob and the diff ID from a source. */
async function packLayer(
  source: string,
  blobsDir: string,
  tar: string,
): Promise<{ layer: Descriptor; diffId: string }> {
  const kind = await sourceKind(source);
  if (kind === "tgz") {
    const layer = await streamToBlob(
      blobsDir,
      (await Deno.open(source)).readable,
      MediaType.ociLayerTarGzip,
    );
    const file = await Deno.open(join(blobsDir, "sha256", layer.digest.slice(7)));
    let diffId: string;
    try {
      diffId = await sha256OfStream(file.readable.pipeThrough(gunzip()));
    } catch (err) {
      throw new AosError("invalidArgument", `Cannot pack ${source}: not a gzip tar archive`, {
        cause: err,
      });
    }
    return { layer, diffId };
  }
  const input = kind === "dir"
    ? await tarDirectory(source, tar)
    : { stream: (await Deno.open(source)).readable, done: Promise.resolve() };
  const [forDiff, forLayer] = input.stream.tee();
  const [diffId, layer] = await Promise.all([
    sha256OfStream(forDiff),
    streamToBlob(
      blobsDir,
      forLayer.pipeThrough(gzip()),
      MediaType.ociLayerTarGzip,
    ),
  ]);
  await input.done;
  return { layer, diffId };
}

/** The item config of a service manifest: its item config keys, validated. */
export function itemConfigOf(m: ServiceManifest): ItemConfig {
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) if (!IMAGE_KEYS.has(k)) rest[k] = v;
  if (m.runtimes) rest.runtimes = m.runtimes.map((codename) => ({ codename }));
  const parsed = itemConfigSchema.safeParse(rest);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AosError(
      "invalidArgument",
      `Invalid service manifest of "${m.name}": ${issue?.path.join(".")}: ${issue?.message}`,
    );
  }
  return parsed.data;
}

/** Packs a service: see the module notes. */
export async function packService(options: PackOptions): Promise<PackedImage> {
  const m = options.manifest;
  const tar = options.tar ?? "tar";
  const { layer, diffId } = await packLayer(options.source, options.blobsDir, tar);
  const layers = [layer];
  const diffIds = [diffId];
  for (const source of options.layers ?? []) {
    const extra = await packLayer(source, options.blobsDir, tar);
    layers.push(extra.layer);
    diffIds.push(extra.diffId);
  }

  const container: Record<string, unknown> = { Cmd: m.cmd, Env: m.env };
  if (m.entrypoint) container.Entrypoint = m.entrypoint;
  if (m.workingDir) container.WorkingDir = m.workingDir;
  const imageConfig: ImageConfig = imageConfigSchema.parse({
    ...(m.created ? { created: m.created } : {}),
    ...(m.author ? { author: m.author } : {}),
    ...(m.architecture ? { architecture: m.architecture } : {}),
    os: m.os,
    config: container,
    rootfs: { type: "layers", diff_ids: diffIds },
  });
  const config = await writeBlob(options.blobsDir, json(imageConfig), MediaType.ociConfig);
  const itemConfig = await writeBlob(
    options.blobsDir,
    json(itemConfigOf(m)),
    MediaType.aosItemConfig,
  );
  const manifestDoc: ImageManifest = imageManifestSchema.parse({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config,
    layers,
    aosItemConfig: itemConfig,
  });
  const manifest = await writeBlob(options.blobsDir, json(manifestDoc), MediaType.ociManifest);
  const indexDoc: ImageIndex = imageIndexSchema.parse({
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [{
      ...manifest,
      ...(m.architecture ? { platform: { architecture: m.architecture, os: m.os } } : {}),
    }],
    annotations: {
      "org.opencontainers.image.title": m.name,
      "org.opencontainers.image.version": m.version,
    },
  });
  const index = await writeBlob(options.blobsDir, json(indexDoc), MediaType.ociIndex);
  return {
    name: m.name,
    version: m.version,
    index,
    manifest,
    config,
    itemConfig,
    layer,
    diffId,
    layers,
  };
}

/** Names a service directory may hold its rootfs under, in order of preference. */
export const ROOTFS_NAMES = ["rootfs", "rootfs.tar.gz", "rootfs.tgz", "rootfs.tar"] as const;

/**
 * Reads a service directory: `service.json` and the first of {@link ROOTFS_NAMES} present.
 * @throws AosError notFound / invalidArgument naming the file and the problem.
 */
export async function loadServiceDir(
  dir: string,
): Promise<{ manifest: ServiceManifest; source: string }> {
  const file = join(dir, "service.json");
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    throw new AosError("notFound", `Cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (text.length > 1024 * 1024) throw new AosError("outOfRange", `${file} is larger than 1 MiB`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new AosError("invalidArgument", `Cannot parse ${file}: ${(err as Error).message}`);
  }
  if (raw && typeof raw === "object" && !("name" in raw)) {
    raw = { ...raw, name: basename(dir) };
  }
  const parsed = serviceManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AosError(
      "invalidArgument",
      `Invalid ${file}: ${issue?.path.join(".") || "(root)"}: ${issue?.message}`,
    );
  }
  for (const name of ROOTFS_NAMES) {
    const source = join(dir, name);
    try {
      await Deno.stat(source);
      return { manifest: parsed.data, source };
    } catch {
      // Try the next name.
    }
  }
  throw new AosError(
    "notFound",
    `Cannot pack service in ${dir}: none of ${ROOTFS_NAMES.join(", ")} exists`,
  );
}

/**
 * Test helpers: build OCI images (ustar layers, image config, Aos item config, manifest, index)
 * into a CM-like blob store (`<root>/sha256/<hex>`) and serve it as a {@link BlobSource}.
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { FileServer } from "@aos/shared/fileserver";
import { MediaType } from "@aos/shared/oci";
import type { BlobSource } from "../image_manager.ts";

/** One tar entry to build. */
export interface TarSpec {
  path: string;
  type?: "file" | "dir" | "symlink";
  data?: string | Uint8Array;
  mode?: number;
  linkname?: string;
}

const enc = new TextEncoder();

function field(h: Uint8Array, off: number, len: number, value: string): void {
  const b = enc.encode(value);
  if (b.length > len) throw new Error(`tar field too long: ${value}`);
  h.set(b, off);
}

function octal(n: number, len: number): string {
  return n.toString(8).padStart(len - 1, "0") + "\0";
}

/** A ustar archive with the given entries (paths written verbatim, `..` included). */
export function tar(entries: TarSpec[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const type = e.type ?? "file";
    const data = type === "file"
      ? (typeof e.data === "string" ? enc.encode(e.data) : e.data ?? new Uint8Array())
      : new Uint8Array();
    const h = new Uint8Array(512);
    field(h, 0, 100, e.path);
    field(h, 100, 8, octal(e.mode ?? (type === "dir" ? 0o755 : 0o644), 8));
    field(h, 108, 8, octal(0, 8));
    field(h, 116, 8, octal(0, 8));
    field(h, 124, 12, octal(data.length, 12));
    field(h, 136, 12, octal(1_700_000_000, 12));
    field(h, 148, 8, "        ");
    field(h, 156, 1, type === "dir" ? "5" : type === "symlink" ? "2" : "0");
    field(h, 157, 100, e.linkname ?? "");
    field(h, 257, 6, "ustar\0");
    field(h, 263, 2, "00");
    let sum = 0;
    for (const b of h) sum += b;
    field(h, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
    parts.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** gzip of `data`. */
export async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** `sha256:<hex>` of bytes. */
export function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Random bytes (incompressible), for space tests. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** A layer: its gzip blob and diffID. */
export interface BuiltLayer {
  blob: Uint8Array;
  digest: string;
  diffId: string;
  mediaType: string;
}

/** Builds a tar.gz layer. */
export async function layer(entries: TarSpec[]): Promise<BuiltLayer> {
  const t = tar(entries);
  const blob = await gzip(t);
  return { blob, digest: sha256(blob), diffId: sha256(t), mediaType: MediaType.ociLayerTarGzip };
}

/** A busybox-like rootfs layer; `tag` makes it unique. */
export function rootfsLayer(tag: string): Promise<BuiltLayer> {
  return layer([
    { path: "bin/", type: "dir" },
    { path: "bin/busybox", data: `#!/bin/sh\necho busybox ${tag}\n`, mode: 0o755 },
    { path: "bin/sh", type: "symlink", linkname: "busybox" },
    { path: "etc/", type: "dir" },
    { path: "etc/hostname", data: `${tag}\n` },
  ]);
}

/** A CM-like blob store: `<root>/sha256/<hex>`, what `startFileServer` serves. */
export class BlobStore {
  constructor(readonly root: string) {}

  /** Stores bytes under their digest (or under `as`, to simulate a lying server). */
  async put(data: Uint8Array, as?: string): Promise<string> {
    const digest = as ?? sha256(data);
    await Deno.mkdir(join(this.root, "sha256"), { recursive: true });
    await Deno.writeFile(join(this.root, "sha256", digest.slice(7)), data);
    return digest;
  }

  /** Stores a JSON document. */
  putJson(value: unknown): Promise<string> {
    return this.put(enc.encode(JSON.stringify(value)));
  }

  /** Path of a stored blob. */
  path(digest: string): string {
    return join(this.root, "sha256", digest.slice(7));
  }
}

/** What {@link buildImage} made. */
export interface BuiltImage {
  manifestDigest: string;
  manifest: Record<string, unknown>;
  configDigest: string;
  itemConfigDigest: string;
  layers: BuiltLayer[];
}

/** Stores layers, image config, item config and manifest; returns the manifest digest. */
export async function buildImage(
  store: BlobStore,
  layers: BuiltLayer[],
  options: {
    itemConfig?: Record<string, unknown>;
    diffIds?: string[];
    manifestPatch?: Record<string, unknown>;
    /** The image config's `config` member (Entrypoint, Cmd, Env, WorkingDir). */
    config?: Record<string, unknown>;
  } = {},
): Promise<BuiltImage> {
  for (const l of layers) await store.put(l.blob);
  const config = {
    architecture: "amd64",
    os: "linux",
    config: options.config ?? { Cmd: ["/bin/busybox"], Env: ["PATH=/bin"], WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: options.diffIds ?? layers.map((l) => l.diffId) },
  };
  const configBytes = enc.encode(JSON.stringify(config));
  const configDigest = await store.put(configBytes);
  const itemConfigBytes = enc.encode(JSON.stringify(
    options.itemConfig ??
      { hostname: "svc", quotas: { ramLimit: 1048576 }, runtimes: [{ codename: "runc" }] },
  ));
  const itemConfigDigest = await store.put(itemConfigBytes);
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBytes.length },
    aosItemConfig: {
      mediaType: MediaType.aosItemConfig,
      digest: itemConfigDigest,
      size: itemConfigBytes.length,
    },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.blob.length })),
    ...options.manifestPatch,
  };
  const manifestDigest = await store.putJson(manifest);
  return { manifestDigest, manifest, configDigest, itemConfigDigest, layers };
}

/** A CM stand-in: URLs of the file server for every digest the store holds. */
export class FileServerBlobSource implements BlobSource {
  /** Digests asked for, per call. */
  readonly calls: string[][] = [];

  constructor(readonly server: FileServer, readonly store: BlobStore) {}

  async getBlobsInfos(digests: string[]): Promise<Map<string, string[]>> {
    this.calls.push([...digests]);
    const out = new Map<string, string[]>();
    for (const d of digests) {
      try {
        await Deno.stat(this.store.path(d));
        out.set(d, [this.server.urlFor(d)]);
      } catch {
        // the CM answers an error for a missing blob; leaving it out has the same effect
      }
    }
    return out;
  }
}

/**
 * The launcher's {@link ManifestSource} over the image manager's blobs: an item's OCI index
 * (or a bare manifest) → each manifest's platform (from its image config) and Aos item config,
 * in index order. Every document is read from a verified blob, bounded and schema-checked.
 * @module
 */
import { AosError } from "@aos/shared/core";
import {
  imageConfigSchema,
  imageIndexSchema,
  imageManifestSchema,
  itemConfigSchema,
  manifestItemConfig,
} from "@aos/shared/oci";
import {
  itemRunConfigFrom,
  type ManifestCandidate,
  type ManifestSource,
  platformFrom,
} from "../core/mod.ts";
import { MAX_MANIFEST_SIZE, shortDigest } from "../image/mod.ts";

/** What the source reads from the image manager. */
export interface BlobReader {
  /** Whether a verified blob is stored. */
  hasBlob(digest: string): Promise<boolean>;
  /** Its file path. */
  blobPath(digest: string): string;
}

/** Most manifests taken from one index (a multi-platform index has a handful). */
const MAX_MANIFESTS = 64;

interface Schema<T> {
  safeParse(v: unknown): { success: true; data: T } | { success: false; error: Error };
}

/** Reads manifests of installed or pending items from the image manager's blob store. */
export class ImageManifestSource implements ManifestSource {
  readonly #blobs: BlobReader;

  /** Reads blobs through `blobs` (the image manager). */
  constructor(blobs: BlobReader) {
    this.#blobs = blobs;
  }

  /** Manifests of an item version's index, in index order. */
  async manifests(
    item: { itemId: string; version: string; indexDigest: string },
  ): Promise<readonly ManifestCandidate[]> {
    const what = `item ${item.itemId} ${item.version}`;
    const top = await this.#json(item.indexDigest, what);
    const digests: string[] = [];
    if (top && typeof top === "object" && "config" in top && !("manifests" in top)) {
      digests.push(item.indexDigest);
    } else {
      const index = this.#parse(imageIndexSchema, top, item.indexDigest, `${what}: image index`);
      for (const m of index.manifests.slice(0, MAX_MANIFESTS)) {
        // Nested indexes are not platforms of their own here: the image manager flattened them.
        if (m.mediaType.includes("index") || m.mediaType.includes("manifest.list")) continue;
        digests.push(m.digest);
      }
    }
    const out: ManifestCandidate[] = [];
    for (const digest of digests) {
      const manifest = this.#parse(
        imageManifestSchema,
        digest === item.indexDigest ? top : await this.#json(digest, what),
        digest,
        `${what}: image manifest`,
      );
      const config = this.#parse(
        imageConfigSchema,
        await this.#json(manifest.config.digest, what),
        manifest.config.digest,
        `${what}: image config`,
      );
      const itemDesc = manifestItemConfig(manifest);
      const itemConfig = itemDesc
        ? this.#parse(
          itemConfigSchema,
          await this.#json(itemDesc.digest, what),
          itemDesc.digest,
          `${what}: item config`,
        )
        : {};
      out.push({
        digest,
        platform: platformFrom(config),
        itemConfig: itemRunConfigFrom(itemConfig),
      });
    }
    if (out.length === 0) {
      throw new AosError("notFound", `Cannot run ${what}: its image index lists no manifest`);
    }
    return out;
  }

  async #json(digest: string, what: string): Promise<unknown> {
    if (!(await this.#blobs.hasBlob(digest))) {
      throw new AosError(
        "notFound",
        `Cannot run ${what}: blob ${shortDigest(digest)} is not stored`,
      );
    }
    const path = this.#blobs.blobPath(digest);
    const size = (await Deno.stat(path)).size;
    if (size > MAX_MANIFEST_SIZE) {
      throw new AosError(
        "outOfRange",
        `Cannot run ${what}: blob ${
          shortDigest(digest)
        } has ${size} bytes, at most ${MAX_MANIFEST_SIZE}`,
      );
    }
    try {
      return JSON.parse(await Deno.readTextFile(path));
    } catch (cause) {
      throw new AosError(
        "invalidArgument",
        `Cannot run ${what}: blob ${shortDigest(digest)} is not JSON`,
        { cause },
      );
    }
  }

  #parse<T>(schema: Schema<T>, doc: unknown, digest: string, what: string): T {
    const r = schema.safeParse(doc);
    if (r.success) return r.data;
    throw new AosError(
      "invalidArgument",
      `Cannot read ${what} ${shortDigest(digest)}: ${r.error.message.slice(0, 300)}`,
    );
  }
}

/**
 * First pass over a layer blob: the uncompressed digest (checked against the diffID) and the
 * unpacked size (to reserve space before extracting), without writing anything.
 * @module
 */
import { createHash } from "node:crypto";
import { AosError } from "@aos/shared/core";
import { type ExtractLimits, openLayerFile, TarReader } from "@aos/shared/layer";
import type { LayerCompression } from "@aos/shared/oci";

/** What {@link scanLayer} found. */
export interface LayerScan {
  /** `<alg>:<hex>` of the uncompressed tar stream. */
  diffDigest: string;
  /** Sum of regular file sizes. */
  fileBytes: number;
  /** Number of entries. */
  entries: number;
}

/**
 * Reads a layer blob once: hashes the uncompressed tar with `algorithm` and sums the entry
 * sizes, stopping early (`noMemory`/`outOfRange`) when `limits` are exceeded.
 */
export async function scanLayer(
  path: string,
  compression: LayerCompression,
  algorithm: "sha256" | "sha512",
  limits: Pick<ExtractLimits, "maxTotalBytes" | "maxEntries" | "maxPathLength">,
  signal?: AbortSignal,
): Promise<LayerScan> {
  // Large layers inflate in a Worker, like the extraction that follows.
  const stream = await openLayerFile(path, compression);
  const hash = createHash(algorithm);
  const raw = stream.getReader();
  // The reader sees the same bytes that are hashed; whatever it leaves unread is hashed below.
  const hashed: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      async next() {
        const r = await raw.read();
        if (r.done) return { done: true, value: undefined };
        hash.update(r.value);
        return { done: false, value: r.value };
      },
      async return() {
        await raw.cancel().catch(() => {});
        return { done: true, value: undefined };
      },
    }),
  };
  const reader = new TarReader(hashed, { maxPathLength: limits.maxPathLength });
  let fileBytes = 0;
  let entries = 0;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const e = await reader.next();
      if (e === null) break;
      entries++;
      if (entries > limits.maxEntries) {
        throw new AosError("outOfRange", `more than ${limits.maxEntries} entries`);
      }
      if (e.type === "file") {
        fileBytes += e.size;
        if (fileBytes > limits.maxTotalBytes) {
          throw new AosError("noMemory", `unpacks to more than ${limits.maxTotalBytes} bytes`);
        }
      }
    }
    // Padding the tar reader did not need still belongs to the hashed stream.
    let tail = 0;
    for (;;) {
      const r = await raw.read();
      if (r.done) break;
      tail += r.value.byteLength;
      if (tail > 16 * 1024 * 1024) {
        throw new AosError("invalidArgument", "too much data after the end of the archive");
      }
      hash.update(r.value);
    }
  } catch (err) {
    await raw.cancel().catch(() => {});
    if (err instanceof AosError) throw err;
    if (signal?.aborted) throw new AosError("canceled", "layer scan canceled", { cause: err });
    throw new AosError("invalidArgument", `cannot read the layer: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    raw.releaseLock();
  }
  return { diffDigest: `${algorithm}:${hash.digest("hex")}`, fileBytes, entries };
}

/**
 * Hex digests (SHA-256, SHA3-224, SHA3-256, …) of buffers and streams.
 *
 * The cloud protocol uses SHA3-224 for state checksums, SHA3-256 for the downloaded (encrypted)
 * blob and SHA-256 for OCI digests; all are computed here through `node:crypto`.
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import { AosError } from "../core/errors.ts";

/** Hash algorithms accepted by the helpers (node:crypto names). */
export type HashAlgorithm = "sha1" | "sha256" | "sha384" | "sha512" | "sha3-224" | "sha3-256";

const ALGORITHMS = new Set<string>(["sha1", "sha256", "sha384", "sha512", "sha3-224", "sha3-256"]);

/** Data a digest can be computed from in one call. */
export type HashInput = Uint8Array | string;

/** Source of a streaming digest. */
export type ByteSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

function hasher(alg: HashAlgorithm): Hash {
  if (!ALGORITHMS.has(alg)) {
    throw new AosError("notSupported", `Hash algorithm "${alg}" is not supported`);
  }
  return createHash(alg);
}

/** Raw digest of a buffer or UTF-8 string. */
export function digest(alg: HashAlgorithm, data: HashInput): Uint8Array {
  return new Uint8Array(hasher(alg).update(data).digest());
}

/** Lowercase hex digest of a buffer or UTF-8 string. */
export function hashHex(alg: HashAlgorithm, data: HashInput): string {
  return hasher(alg).update(data).digest("hex");
}

/** Lowercase hex SHA-256. */
export function sha256Hex(data: HashInput): string {
  return hashHex("sha256", data);
}

/** Lowercase hex SHA3-256 (the cloud's blob `sha256` field holds this, despite its name). */
export function sha3_256Hex(data: HashInput): string {
  return hashHex("sha3-256", data);
}

/** Lowercase hex SHA3-224 (instance state checksums). */
export function sha3_224Hex(data: HashInput): string {
  return hashHex("sha3-224", data);
}

/** Raw digest of a stream, read chunk by chunk (constant memory). */
export async function digestStream(alg: HashAlgorithm, source: ByteSource): Promise<Uint8Array> {
  const h = hasher(alg);
  for await (const chunk of source) h.update(chunk);
  return new Uint8Array(h.digest());
}

/** Lowercase hex digest of a stream, read chunk by chunk (constant memory). */
export async function hashStreamHex(alg: HashAlgorithm, source: ByteSource): Promise<string> {
  const h = hasher(alg);
  for await (const chunk of source) h.update(chunk);
  return h.digest("hex");
}

/** Lowercase hex digest of a file, streamed. Needs read permission on `path`. */
export async function hashFileHex(alg: HashAlgorithm, path: string | URL): Promise<string> {
  const file = await Deno.open(path, { read: true });
  // The readable closes the file when fully read or cancelled.
  return await hashStreamHex(alg, file.readable);
}

/** A pass-through stream and the digest of what went through it. */
export interface HashingStream {
  /** Bytes pass through unchanged. */
  readonly stream: TransformStream<Uint8Array, Uint8Array>;
  /** Lowercase hex digest; resolves when the stream is flushed, rejects if it is aborted. */
  readonly hex: Promise<string>;
}

/** Creates a pass-through stream that hashes everything written to it (e.g. while downloading). */
export function hashingStream(alg: HashAlgorithm): HashingStream {
  const h = hasher(alg);
  let resolve!: (hex: string) => void;
  let reject!: (err: unknown) => void;
  const hex = new Promise<string>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A digest nobody awaits must not become an unhandled rejection.
  hex.catch(() => {});
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      h.update(chunk);
      controller.enqueue(chunk);
    },
    flush() {
      resolve(h.digest("hex"));
    },
    cancel(reason) {
      reject(reason);
    },
  });
  return { stream, hex };
}

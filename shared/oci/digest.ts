/**
 * Content digests (`<algorithm>:<hex>`) as used by OCI descriptors and AosCore blob paths.
 * @module
 */
import * as z from "zod/mini";
import { AosError } from "../core/errors.ts";

/** Digest algorithms we accept. */
export type DigestAlgorithm = "sha256" | "sha512";

/** A parsed digest. */
export interface ParsedDigest {
  /** The algorithm. */
  algorithm: DigestAlgorithm;
  /** Lowercase hex of the hash. */
  hex: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST_RE = /^(sha256|sha512):([0-9a-f]+)$/;

/** Parses `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`; returns `undefined` otherwise. */
export function tryParseDigest(digest: string): ParsedDigest | undefined {
  const m = DIGEST_RE.exec(digest);
  if (!m) return undefined;
  const algorithm = m[1] as DigestAlgorithm;
  const hex = m[2]!;
  return hex.length === HEX_LENGTH[algorithm] ? { algorithm, hex } : undefined;
}

/**
 * Parses a digest; anything but `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`
 * throws `invalidArgument` (uppercase hex is rejected: blob paths are keyed by the exact text).
 */
export function parseDigest(digest: string): ParsedDigest {
  const parsed = tryParseDigest(digest);
  if (!parsed) {
    const shown = digest.length > 80 ? `${digest.slice(0, 80)}…` : digest;
    throw new AosError(
      "invalidArgument",
      `Invalid digest ${JSON.stringify(shown)}: expected sha256:<64 hex> or sha512:<128 hex>`,
    );
  }
  return parsed;
}

/** True when `digest` is a valid digest. */
export function isDigest(digest: string): boolean {
  return tryParseDigest(digest) !== undefined;
}

/** Formats a digest from its parts (validated). */
export function formatDigest(algorithm: DigestAlgorithm, hex: string): string {
  return `${parseDigest(`${algorithm}:${hex}`).algorithm}:${hex}`;
}

/** The path of a blob relative to a store root: `blobs/<alg>/<hex>` (validated, so path-safe). */
export function blobRelativePath(digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `blobs/${algorithm}/${hex}`;
}

/** zod schema of a digest string. */
export const digestSchema = z.string().check(z.refine(isDigest, {
  message: "must be a digest sha256:<64 lowercase hex> or sha512:<128 lowercase hex>",
}));

/**
 * Blobs as the cloud serves them: each plain blob (`<blobs>/sha256/<hex>`) is encrypted once
 * with its own AES-256-CBC key into `<served>/sha256/<hex>` (still named by the plain digest),
 * and its plain content is signed with the dev signing chain, as the unit verifies the
 * signature after decrypting (cm.md §6.3 g). The key, IV, the served file's SHA3-256 (the
 * `sha256` field of `blobUrls`, despite its name) and the signature are kept beside it in
 * `<servedMeta>/<hex>.json` (mode 0600), so a blob's served bytes never change.
 * @module
 */
import { join } from "node:path";
import * as z from "zod/mini";
import { AosError, type Clock, formatAosTime, systemClock } from "@aos/shared/core";
import { createEncryptStream, hashingStream, toBase64 } from "@aos/shared/crypto";
import { parseDigest, tryParseDigest } from "@aos/shared/oci";
import { type DevPki, SIGNING_CHAIN_NAME } from "./pki.ts";

/** The cipher devcloud encrypts with (AosCore's default). */
export const BLOCK_ALG = "AES256/CBC/PKCS7PADDING";

/** What `blobUrls` tells about one served blob (URLs aside). */
export interface ServedBlob {
  /** Plain digest `sha256:<hex>`. */
  digest: string;
  /** SHA3-256 (hex) of the served (encrypted) file. */
  sha3: string;
  /** Size of the served (encrypted) file. */
  size: number;
  /** AES parameters. */
  decryptInfo: { blockAlg: string; blockIv: string; blockKey: string };
  /** Signature of the plain content. */
  signInfo: { chainName: string; alg: string; value: string; trustedTimestamp: string };
}

const servedBlobSchema = z.object({
  digest: z.string(),
  sha3: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
  size: z.number().check(z.int(), z.nonnegative()),
  decryptInfo: z.object({ blockAlg: z.string(), blockIv: z.string(), blockKey: z.string() }),
  signInfo: z.object({
    chainName: z.string(),
    alg: z.string(),
    value: z.string(),
    trustedTimestamp: z.string(),
  }),
});

/** Options of {@link BlobStore}. */
export interface BlobStoreOptions {
  /** Plain blobs root (`<blobs>/sha256/<hex>`). */
  blobs: string;
  /** Encrypted blobs root, the blob server's root. */
  served: string;
  /** Metadata of encrypted blobs. */
  servedMeta: string;
  /** Signs the blobs. */
  pki: DevPki;
  /** Clock port (`trustedTimestamp`). */
  clock?: Clock;
}

/** Plain and served blobs. */
export class BlobStore {
  readonly #o: BlobStoreOptions;
  readonly #clock: Clock;
  /** One preparation per digest at a time. */
  readonly #preparing = new Map<string, Promise<ServedBlob | undefined>>();

  /** A store over the given directories. */
  constructor(options: BlobStoreOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
  }

  /** Path of a plain blob. */
  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.#o.blobs, algorithm, hex);
  }

  /** Root the blob server serves (`<served>/sha256/<hex>`). */
  get servedRoot(): string {
    return this.#o.served;
  }

  /**
   * The served form of a blob, encrypting and signing it on first use; `undefined` for a
   * digest that is malformed, not sha256, or not stored here.
   */
  served(digest: string): Promise<ServedBlob | undefined> {
    const d = tryParseDigest(digest);
    if (!d || d.algorithm !== "sha256") return Promise.resolve(undefined);
    const running = this.#preparing.get(digest);
    if (running) return running;
    const p = this.#prepare(digest, d.hex).finally(() => this.#preparing.delete(digest));
    this.#preparing.set(digest, p);
    return p;
  }

  async #prepare(digest: string, hex: string): Promise<ServedBlob | undefined> {
    const metaPath = join(this.#o.servedMeta, `${hex}.json`);
    const servedPath = join(this.#o.served, "sha256", hex);
    try {
      const meta = servedBlobSchema.parse(JSON.parse(await Deno.readTextFile(metaPath)));
      const st = await Deno.stat(servedPath);
      if (meta.digest === digest && st.size === meta.size) return meta;
    } catch {
      // Not prepared yet, or damaged: prepare again.
    }
    let plain: Deno.FsFile;
    try {
      plain = await Deno.open(this.blobPath(digest));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
    const [forCipher, forSignature] = plain.readable.tee();
    const key = crypto.getRandomValues(new Uint8Array(32));
    const iv = crypto.getRandomValues(new Uint8Array(16));
    await Deno.mkdir(join(this.#o.served, "sha256"), { recursive: true });
    await Deno.mkdir(this.#o.servedMeta, { recursive: true, mode: 0o700 });
    const tmp = `${servedPath}.${crypto.randomUUID()}.tmp`;
    const sha3 = hashingStream("sha3-256");
    let size = 0;
    try {
      const out = await Deno.open(tmp, { write: true, createNew: true });
      const [, signature] = await Promise.all([
        forCipher
          .pipeThrough(createEncryptStream({ alg: BLOCK_ALG, key, iv }))
          .pipeThrough(sha3.stream)
          .pipeThrough(
            new TransformStream<Uint8Array, Uint8Array>({
              transform(chunk, c) {
                size += chunk.byteLength;
                c.enqueue(chunk);
              },
            }),
          )
          .pipeTo(out.writable),
        this.#o.pki.sign(forSignature),
      ]);
      const meta: ServedBlob = {
        digest,
        sha3: await sha3.hex,
        size,
        decryptInfo: { blockAlg: BLOCK_ALG, blockIv: toBase64(iv), blockKey: toBase64(key) },
        signInfo: {
          chainName: SIGNING_CHAIN_NAME,
          alg: "RSA/SHA256",
          value: signature,
          trustedTimestamp: formatAosTime(this.#clock.now()),
        },
      };
      const metaTmp = `${metaPath}.${crypto.randomUUID()}.tmp`;
      await Deno.writeTextFile(metaTmp, JSON.stringify(meta), { mode: 0o600 });
      await Deno.rename(tmp, servedPath);
      await Deno.rename(metaTmp, metaPath);
      return meta;
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw new AosError(
        "failed",
        `Cannot prepare blob ${digest.slice(0, 19)}… for serving: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
}

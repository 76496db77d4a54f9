/**
 * AES-CBC (PKCS#7 padding) and AES-GCM, streaming, for update blobs.
 *
 * The cloud names the cipher in `decryptInfo.blockAlg`: `AES256/CBC/pkcs7` (the default) or
 * `AES256/GCM/`. The protocol does not say where a GCM tag travels; we follow the common AEAD
 * convention (tag = last 16 bytes of the ciphertext) and also accept a tag given separately.
 *
 * GCM decryption streams plaintext out before the tag can be checked at the end: write it to a
 * temporary file and discard that file when the stream errors.
 * @module
 */
import { Buffer } from "node:buffer";
import {
  type CipherGCM,
  type CipherGCMTypes,
  createCipheriv,
  createDecipheriv,
  type DecipherGCM,
} from "node:crypto";
import { AosError } from "../core/errors.ts";
import { fromBase64 } from "./pem.ts";

/** A parsed `blockAlg`. */
export interface BlockCipher {
  /** Key size in bits. */
  keyBits: 128 | 192 | 256;
  /** Block mode. */
  mode: "cbc" | "gcm";
}

/** Key, IV and cipher for one blob. */
export interface CipherParams {
  /** Cipher: a `blockAlg` string (`AES256/CBC/pkcs7`, `AES256/GCM/`) or a parsed one. */
  alg: string | BlockCipher;
  /** Raw key (16/24/32 bytes). */
  key: Uint8Array;
  /** IV: 16 bytes for CBC; 12 bytes usual for GCM (1…64 accepted). */
  iv: Uint8Array;
}

/** Decryption parameters. */
export interface DecryptParams extends CipherParams {
  /** GCM tag given separately; when absent the tag is the last `tagLength` bytes of the input. */
  authTag?: Uint8Array;
  /** GCM tag length in bytes (default 16). */
  tagLength?: number;
}

/** Encryption parameters. */
export interface EncryptParams extends CipherParams {
  /** GCM: append the tag to the output (default true). */
  appendTag?: boolean;
  /** GCM: receives the tag when the stream ends. */
  onAuthTag?: (tag: Uint8Array) => void;
  /** GCM tag length in bytes (default 16). */
  tagLength?: number;
}

/** The `decryptInfo` object of a cloud `BlobInfo`. */
export interface DecryptInfo {
  /** Cipher; defaults to `AES256/CBC/pkcs7`. */
  blockAlg?: string | undefined;
  /** Base64 IV. */
  blockIv: string;
  /** Base64 key. */
  blockKey: string;
}

/**
 * Parses a `blockAlg`: `AES128|AES192|AES256[/CBC[/PKCS7[PADDING]]]` or `AES…/GCM[/[NOPADDING]]`,
 * case-insensitive; mode defaults to CBC and padding to PKCS#7.
 * @throws AosError notSupported for anything else.
 */
export function parseBlockAlg(blockAlg: string | undefined): BlockCipher {
  const text = (blockAlg ?? "").trim() || "AES256/CBC/PKCS7";
  const [cipher = "", mode = "CBC", padding = ""] = text.toUpperCase().split("/");
  const bits = { AES128: 128, AES192: 192, AES256: 256 }[cipher] as
    | BlockCipher["keyBits"]
    | undefined;
  const m = mode === "" || mode === "CBC" ? "cbc" : mode === "GCM" ? "gcm" : undefined;
  const paddingOk = m === "cbc"
    ? ["", "PKCS7", "PKCS7PADDING", "PKCS5", "PKCS5PADDING"].includes(padding)
    : ["", "NOPADDING", "NONE"].includes(padding);
  if (!bits || !m || !paddingOk || text.split("/").length > 3) {
    throw new AosError("notSupported", `Block cipher "${blockAlg}" is not supported`);
  }
  return { keyBits: bits, mode: m };
}

function algName(c: BlockCipher): string {
  return `AES${c.keyBits}/${c.mode.toUpperCase()}`;
}

function checkParams(p: CipherParams, what: string): BlockCipher {
  const c = typeof p.alg === "string" ? parseBlockAlg(p.alg) : p.alg;
  if (p.key.byteLength * 8 !== c.keyBits) {
    throw new AosError(
      "invalidArgument",
      `Cannot ${what} (${algName(c)}): key is ${p.key.byteLength} bytes, expected ${c.keyBits / 8}`,
    );
  }
  const ivOk = c.mode === "cbc"
    ? p.iv.byteLength === 16
    : p.iv.byteLength >= 1 && p.iv.byteLength <= 64;
  if (!ivOk) {
    throw new AosError(
      "invalidArgument",
      `Cannot ${what} (${algName(c)}): IV is ${p.iv.byteLength} bytes, expected ${
        c.mode === "cbc" ? 16 : "12"
      }`,
    );
  }
  return c;
}

function checkTagLength(len: number, c: BlockCipher, what: string): number {
  if (!Number.isInteger(len) || len < 4 || len > 16) {
    throw new AosError(
      "invalidArgument",
      `Cannot ${what} (${algName(c)}): tag length ${len} is invalid`,
    );
  }
  return len;
}

function buf(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function finalError(c: BlockCipher, err: unknown): AosError {
  const msg = (err as Error)?.message ?? String(err);
  if (c.mode === "gcm") {
    return new AosError(
      "invalidChecksum",
      `Cannot decrypt blob (${
        algName(c)
      }): authentication tag does not match (wrong key or IV, or tampered data)`,
      { cause: err },
    );
  }
  if (/final block length/i.test(msg)) {
    return new AosError(
      "invalidChecksum",
      `Cannot decrypt blob (${
        algName(c)
      }): length is not a multiple of the block size (truncated data?)`,
      { cause: err },
    );
  }
  return new AosError(
    "invalidChecksum",
    `Cannot decrypt blob (${algName(c)}): bad padding (wrong key or IV, or corrupt data)`,
    { cause: err },
  );
}

/**
 * A stream that decrypts what is written to it. Errors (bad padding, tag mismatch) surface as
 * an {@link AosError} `invalidChecksum` on the readable side when the input ends.
 */
export function createDecryptStream(p: DecryptParams): TransformStream<Uint8Array, Uint8Array> {
  const c = checkParams(p, "decrypt blob");
  const cipher = `aes-${c.keyBits}-${c.mode}`;
  if (c.mode === "cbc") {
    const d = createDecipheriv(cipher as CipherGCMTypes, buf(p.key), buf(p.iv));
    return new TransformStream({
      transform(chunk, controller) {
        const out = d.update(buf(chunk));
        if (out.byteLength) controller.enqueue(new Uint8Array(out));
      },
      flush(controller) {
        let out: Buffer;
        try {
          out = d.final();
        } catch (err) {
          throw finalError(c, err);
        }
        if (out.byteLength) controller.enqueue(new Uint8Array(out));
      },
    });
  }
  const tagLength = checkTagLength(p.authTag?.byteLength ?? p.tagLength ?? 16, c, "decrypt blob");
  const d = createDecipheriv(cipher as CipherGCMTypes, buf(p.key), buf(p.iv), {
    authTagLength: tagLength,
  }) as DecipherGCM;
  const given = p.authTag;
  if (given) d.setAuthTag(buf(given));
  // Without a separate tag, the last tagLength bytes seen so far may be the tag: hold them back.
  let tail = new Uint8Array(0);
  return new TransformStream({
    transform(chunk, controller) {
      const feed = (data: Uint8Array) => {
        if (!data.byteLength) return;
        const out = d.update(buf(data));
        if (out.byteLength) controller.enqueue(new Uint8Array(out));
      };
      if (given) return feed(chunk);
      if (chunk.byteLength >= tagLength) {
        // Common case: the held-back bytes are ciphertext; keep the chunk's end instead.
        feed(tail);
        feed(chunk.subarray(0, chunk.byteLength - tagLength));
        tail = chunk.slice(chunk.byteLength - tagLength);
        return;
      }
      const all = new Uint8Array(tail.byteLength + chunk.byteLength);
      all.set(tail);
      all.set(chunk, tail.byteLength);
      const cut = Math.max(0, all.byteLength - tagLength);
      feed(all.subarray(0, cut));
      tail = all.slice(cut);
    },
    flush(controller) {
      if (!given) {
        if (tail.byteLength < tagLength) {
          throw new AosError(
            "invalidChecksum",
            `Cannot decrypt blob (${
              algName(c)
            }): input is shorter than the ${tagLength}-byte authentication tag`,
          );
        }
        d.setAuthTag(buf(tail));
      }
      let out: Buffer;
      try {
        out = d.final();
      } catch (err) {
        throw finalError(c, err);
      }
      if (out.byteLength) controller.enqueue(new Uint8Array(out));
    },
  });
}

/** A stream that encrypts what is written to it (devcloud and tests). */
export function createEncryptStream(p: EncryptParams): TransformStream<Uint8Array, Uint8Array> {
  const c = checkParams(p, "encrypt blob");
  const cipher = `aes-${c.keyBits}-${c.mode}`;
  const tagLength = c.mode === "gcm" ? checkTagLength(p.tagLength ?? 16, c, "encrypt blob") : 0;
  const e = c.mode === "gcm"
    ? createCipheriv(cipher as CipherGCMTypes, buf(p.key), buf(p.iv), {
      authTagLength: tagLength,
    }) as CipherGCM
    : createCipheriv(cipher, buf(p.key), buf(p.iv));
  return new TransformStream({
    transform(chunk, controller) {
      const out = e.update(buf(chunk));
      if (out.byteLength) controller.enqueue(new Uint8Array(out));
    },
    flush(controller) {
      const out = e.final();
      if (out.byteLength) controller.enqueue(new Uint8Array(out));
      if (c.mode === "gcm") {
        const tag = new Uint8Array((e as CipherGCM).getAuthTag());
        p.onAuthTag?.(tag);
        if (p.appendTag ?? true) controller.enqueue(tag);
      }
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of stream) {
    parts.push(part);
    size += part.byteLength;
  }
  const out = new Uint8Array(size);
  let off = 0;
  for (const part of parts) {
    out.set(part, off);
    off += part.byteLength;
  }
  return out;
}

function pipeBytes(
  data: Uint8Array,
  t: TransformStream<Uint8Array, Uint8Array>,
): Promise<Uint8Array> {
  return collect(ReadableStream.from([data]).pipeThrough(t));
}

/** Decrypts a whole buffer. */
export function decryptBytes(p: DecryptParams, data: Uint8Array): Promise<Uint8Array> {
  return pipeBytes(data, createDecryptStream(p));
}

/** Encrypts a whole buffer (GCM: tag appended unless `appendTag` is false). */
export function encryptBytes(p: EncryptParams, data: Uint8Array): Promise<Uint8Array> {
  return pipeBytes(data, createEncryptStream(p));
}

/**
 * Turns a cloud `decryptInfo` into decryption parameters.
 * @throws AosError invalidArgument for non-base64 values, notSupported for an unknown cipher.
 */
export function decryptParamsFromInfo(info: DecryptInfo): DecryptParams {
  return {
    alg: parseBlockAlg(info.blockAlg),
    key: fromBase64(info.blockKey, "decryptInfo.blockKey"),
    iv: fromBase64(info.blockIv, "decryptInfo.blockIv"),
  };
}

/**
 * Blob signatures: verify a cloud `signInfo` against the desired status' `certificates` and
 * `certificateChains`, and sign blobs (devcloud, tests).
 *
 * Verification: find the chain named `signInfo.chainName`; its first fingerprint is the signer,
 * the others are intermediates (fingerprints compared case-insensitively, as upstream); verify
 * that chain to the root CAs at `trustedTimestamp`; hash the blob as a stream and check the
 * signature (RSA PKCS#1 v1.5 or PSS, ECDSA with DER signatures as OpenSSL writes them) with
 * the signer's public key. `ocspValues` are accepted but not checked (as upstream).
 *
 * Upstream AosCore only verifies RSA; the v7 schema also names `EC/SHA256`, so both work here.
 * @module
 */
import { Buffer } from "node:buffer";
import {
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  createSign,
  createVerify,
  type KeyObject,
  publicDecrypt,
} from "node:crypto";
import { AosError, type ErrorCode } from "../core/errors.ts";
import { Certificate } from "./certificate.ts";
import { ChainError, verifyChain } from "./chain.ts";
import type { ByteSource } from "./hash.ts";
import { exportPrivateKeyDer, type KeyPair } from "./keys.ts";
import { fromBase64, fromHex, toBase64 } from "./pem.ts";

/** The cloud's `signInfo` of a blob. */
export interface SignInfo {
  /** Name of an entry of `certificateChains`. */
  chainName: string;
  /** `RSA/SHA256` (default), `EC/SHA256`, … */
  alg?: string | undefined;
  /** Base64 signature. */
  value: string;
  /** Time at which the chain must be valid (ISO 8601). */
  trustedTimestamp?: string | Date | undefined;
  /** OCSP responses; not checked. */
  ocspValues?: readonly string[] | null | undefined;
}

/** A desired-status `certificates[]` entry. */
export interface CloudCertificate {
  /** Base64 DER. */
  certificate: string;
  /** Fingerprint the chains refer to. */
  fingerprint: string;
}

/** A desired-status `certificateChains[]` entry. */
export interface CloudCertificateChain {
  /** Chain name (`signInfo.chainName`). */
  name: string;
  /** Fingerprints: signer first, then intermediates. */
  fingerprints: readonly string[];
}

/** What a blob signature is checked against. */
export interface SignatureTrust {
  /** Certificates from the desired status. */
  certificates: readonly CloudCertificate[];
  /** Chains from the desired status. */
  chains: readonly CloudCertificateChain[];
  /** Trusted root CAs (the unit's `caCert`). */
  roots: readonly Certificate[];
  /** Verification time when `signInfo.trustedTimestamp` is absent (default: now). */
  now?: Date;
}

/** Why a signature was rejected. */
export type SignatureFailure =
  | "tampered"
  | "wrongKey"
  | "mismatch"
  | "wrongChain"
  | "unknownChain"
  | "unsupported"
  | "badInput";

const CODE_BY_FAILURE: Record<SignatureFailure, ErrorCode> = {
  tampered: "invalidChecksum",
  wrongKey: "failed",
  mismatch: "invalidChecksum",
  wrongChain: "failed",
  unknownChain: "notFound",
  unsupported: "notSupported",
  badInput: "invalidArgument",
};

/**
 * A rejected signature. `reason`: `tampered` (RSA: the key is right but the blob's digest
 * differs), `wrongKey` (made by another key than the chain's signer), `mismatch` (EC: the
 * signature does not verify; ECDSA cannot tell a modified blob from another key), `wrongChain`
 * (the chain does not verify to the root CA), `unknownChain` (chain or certificate missing).
 */
export class SignatureError extends AosError {
  /** The kind of failure. */
  readonly reason: SignatureFailure;

  constructor(reason: SignatureFailure, message: string, options: { cause?: unknown } = {}) {
    super(CODE_BY_FAILURE[reason], message, options);
    this.reason = reason;
  }
}

/** A parsed `signInfo.alg`. */
export interface SignAlgorithm {
  /** Key type. */
  key: "RSA" | "EC";
  /** node:crypto hash name. */
  hash: "sha256" | "sha384" | "sha512" | "sha512-224" | "sha512-256";
  /** RSA padding. */
  padding: "pkcs1" | "pss";
}

const HASHES: Record<string, SignAlgorithm["hash"]> = {
  SHA256: "sha256",
  SHA384: "sha384",
  SHA512: "sha512",
  "SHA512/224": "sha512-224",
  "SHA512/256": "sha512-256",
};

// DER DigestInfo prefixes (RFC 8017 §9.2 note 1) for PKCS#1 v1.5 diagnosis.
const DIGEST_INFO_PREFIX: Record<SignAlgorithm["hash"], string> = {
  sha256: "3031300d060960864801650304020105000420",
  sha384: "3041300d060960864801650304020205000430",
  sha512: "3051300d060960864801650304020305000440",
  "sha512-224": "302d300d06096086480165030402050500041c",
  "sha512-256": "3031300d060960864801650304020605000420",
};

/**
 * Parses `RSA[/SHA256|SHA384|SHA512|SHA512/224|SHA512/256[/PKCS1v1_5|PSS]]` or `EC[/SHA…]`
 * (case-insensitive; defaults SHA256 and PKCS1v1_5).
 */
export function parseSignAlg(alg: string | undefined): SignAlgorithm {
  const text = (alg ?? "").trim().toUpperCase() || "RSA/SHA256";
  const m =
    /^(RSA|EC|ECDSA)(?:\/(SHA256|SHA384|SHA512\/224|SHA512\/256|SHA512)(?:\/(PKCS1V1_5|PSS))?)?$/
      .exec(text);
  const hash = HASHES[m?.[2] ?? "SHA256"];
  if (!m || !hash || (m[1] !== "RSA" && m[3] !== undefined)) {
    throw new SignatureError("unsupported", `Signature algorithm "${alg}" is not supported`);
  }
  return { key: m[1] === "RSA" ? "RSA" : "EC", hash, padding: m[3] === "PSS" ? "pss" : "pkcs1" };
}

function normFingerprint(f: string): string {
  return f.replace(/[:\s]/g, "").toUpperCase();
}

/** The signer certificate and intermediates of a named chain. */
export interface SigningChain {
  /** The signer (first fingerprint). */
  signer: Certificate;
  /** The other certificates of the chain. */
  intermediates: Certificate[];
}

/**
 * Looks up a chain by name and parses its certificates.
 * @throws SignatureError `unknownChain` when the chain or one of its certificates is missing.
 */
export function resolveSigningChain(
  chainName: string,
  certificates: readonly CloudCertificate[],
  chains: readonly CloudCertificateChain[],
): SigningChain {
  const chain = chains.find((c) => c.name === chainName);
  if (!chain) {
    throw new SignatureError(
      "unknownChain",
      `Cannot verify blob signature: certificate chain "${chainName}" not found`,
    );
  }
  const certs = chain.fingerprints.map((f) => {
    const entry = certificates.find((c) => normFingerprint(c.fingerprint) === normFingerprint(f));
    if (!entry) {
      throw new SignatureError(
        "unknownChain",
        `Cannot verify blob signature: certificate "${f}" of chain "${chainName}" not found`,
      );
    }
    try {
      return new Certificate(fromBase64(entry.certificate, `certificate "${f}"`));
    } catch (err) {
      throw new SignatureError(
        "badInput",
        `Cannot verify blob signature: certificate "${f}" of chain "${chainName}" is unreadable`,
        { cause: err },
      );
    }
  });
  const [signer, ...intermediates] = certs;
  if (!signer) {
    throw new SignatureError(
      "unknownChain",
      `Cannot verify blob signature: chain "${chainName}" is empty`,
    );
  }
  return { signer, intermediates };
}

function verificationTime(info: SignInfo, fallback: Date | undefined): Date {
  const ts = info.trustedTimestamp;
  if (ts instanceof Date) return ts;
  if (typeof ts === "string" && ts !== "") {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) {
      throw new SignatureError(
        "badInput",
        `Cannot verify blob signature: trustedTimestamp "${ts}" is not a date`,
      );
    }
    return d;
  }
  return fallback ?? new Date();
}

function rsaDiagnosis(
  key: KeyObject,
  sig: Uint8Array,
  alg: SignAlgorithm,
  actual: Uint8Array,
): "tampered" | "wrongKey" {
  if (alg.padding !== "pkcs1") return "wrongKey";
  try {
    const em = new Uint8Array(
      publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(sig)),
    );
    const prefix = fromHex(DIGEST_INFO_PREFIX[alg.hash]);
    const hasPrefix = em.byteLength === prefix.byteLength + actual.byteLength &&
      prefix.every((b, i) => em[i] === b);
    // Valid padding and DigestInfo: this key made the signature, over other content.
    return hasPrefix ? "tampered" : "wrongKey";
  } catch {
    return "wrongKey";
  }
}

async function release(blob: Uint8Array | ByteSource): Promise<void> {
  try {
    if (blob instanceof ReadableStream) await blob.cancel();
    else if (!(blob instanceof Uint8Array)) await blob[Symbol.asyncIterator]().return?.();
  } catch {
    // Best effort: the original error matters more.
  }
}

async function checkSigner(
  info: SignInfo,
  trust: SignatureTrust,
): Promise<{ alg: SignAlgorithm; signer: Certificate; sig: Uint8Array; chain: Certificate[] }> {
  const alg = parseSignAlg(info.alg);
  const sig = (() => {
    try {
      return fromBase64(info.value, "signInfo.value");
    } catch (err) {
      throw new SignatureError("badInput", "Cannot verify blob signature: value is not base64", {
        cause: err,
      });
    }
  })();
  const { signer, intermediates } = resolveSigningChain(
    info.chainName,
    trust.certificates,
    trust.chains,
  );
  const at = verificationTime(info, trust.now);
  let chain: Certificate[];
  try {
    chain = await verifyChain(signer, { roots: trust.roots, intermediates, now: at });
  } catch (err) {
    if (!(err instanceof ChainError)) throw err;
    throw new SignatureError(
      "wrongChain",
      `Cannot verify blob signature: chain "${info.chainName}" is not trusted: ${err.message}`,
      { cause: err },
    );
  }
  if (signer.publicKeyAlgorithm !== alg.key) {
    throw new SignatureError(
      "wrongKey",
      `Cannot verify blob signature: algorithm "${info.alg}" does not fit the ${signer.publicKeyAlgorithm} key of "${signer.subject}"`,
    );
  }
  return { alg, signer, sig, chain };
}

/**
 * Verifies a blob's signature and the signer's chain.
 * @param blob the (decrypted) blob: bytes or a stream, read once
 * @returns the verified chain, signer first, root last
 * @throws SignatureError with a `reason` (see {@link SignatureError}).
 */
export async function verifyBlobSignature(
  blob: Uint8Array | ByteSource,
  info: SignInfo,
  trust: SignatureTrust,
): Promise<Certificate[]> {
  let alg: SignAlgorithm;
  let signer: Certificate;
  let sig: Uint8Array;
  let chain: Certificate[];
  try {
    ({ alg, signer, sig, chain } = await checkSigner(info, trust));
  } catch (err) {
    // The blob will not be read: release the file or socket behind it.
    await release(blob);
    throw err;
  }
  const key = createPublicKey({
    key: Buffer.from(signer.publicKeySpki),
    format: "der",
    type: "spki",
  });
  const verifier = createVerify(alg.hash);
  const hasher = createHash(alg.hash);
  const source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = blob instanceof Uint8Array
    ? [blob]
    : blob;
  for await (const chunk of source) {
    verifier.update(chunk);
    hasher.update(chunk);
  }
  const ok = alg.padding === "pss"
    ? verifier.verify(
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
      Buffer.from(sig),
    )
    : verifier.verify(key, Buffer.from(sig));
  if (ok) return chain;
  const who = `"${signer.subject}" (chain "${info.chainName}")`;
  if (alg.key === "RSA") {
    const reason = rsaDiagnosis(key, sig, alg, new Uint8Array(hasher.digest()));
    throw reason === "tampered"
      ? new SignatureError(
        "tampered",
        `Cannot verify blob signature: blob does not match the signature (modified content) of ${who}`,
      )
      : new SignatureError(
        "wrongKey",
        `Cannot verify blob signature: signature was not made by the key of ${who}`,
      );
  }
  throw new SignatureError(
    "mismatch",
    `Cannot verify blob signature: signature does not verify with the key of ${who} (modified content or another key)`,
  );
}

/**
 * Signs a blob (devcloud, tests); returns the base64 signature: PKCS#1 v1.5 for RSA keys,
 * DER ECDSA for EC keys (OpenSSL's `dgst -sign` format).
 */
export async function signBlob(
  blob: Uint8Array | ByteSource,
  key: KeyPair | string,
  hash: SignAlgorithm["hash"] = "sha256",
): Promise<string> {
  const priv = typeof key === "string" ? createPrivateKey(key) : createPrivateKey({
    key: Buffer.from(await exportPrivateKeyDer(key.privateKey)),
    format: "der",
    type: "pkcs8",
  });
  const signer = createSign(hash);
  const source: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = blob instanceof Uint8Array
    ? [blob]
    : blob;
  for await (const chunk of source) signer.update(chunk);
  return toBase64(new Uint8Array(signer.sign(priv)));
}

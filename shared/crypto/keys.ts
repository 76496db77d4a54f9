/**
 * Key pairs: generate (ECDSA P-256/P-384, RSA-2048), export to PEM, import from PEM, and match
 * a private key against a certificate's public key.
 *
 * Keys are WebCrypto `CryptoKey`s (certificates and CSRs are signed with WebCrypto), always
 * extractable so IAM can store them as PKCS#8 PEM (the form grpc-js and OpenSSL read). PEM
 * import goes through `node:crypto`, which also understands SEC1 (`EC PRIVATE KEY`) and PKCS#1
 * (`RSA PRIVATE KEY`).
 * @module
 */
import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { AosError } from "../core/errors.ts";
import { bytesEqual, derToPem } from "./pem.ts";

/** Key algorithms we generate. */
export type KeyAlgorithm = "ecdsa-p256" | "ecdsa-p384" | "rsa-2048";

/** EC curves we can use with WebCrypto. */
export type NamedCurve = "P-256" | "P-384" | "P-521";

/** A WebCrypto key pair plus what kind of key it is. */
export interface KeyPair extends CryptoKeyPair {
  /** `rsa` or `ec`. */
  readonly type: "rsa" | "ec";
  /** The curve of an EC key. */
  readonly curve?: NamedCurve;
  /** Modulus bits of an RSA key. */
  readonly modulusLength?: number;
}

const RSA_IMPORT = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as const;

const CURVE_BY_OPENSSL_NAME: Record<string, NamedCurve> = {
  prime256v1: "P-256",
  "P-256": "P-256",
  secp384r1: "P-384",
  "P-384": "P-384",
  secp521r1: "P-521",
  "P-521": "P-521",
};

/** Generates an extractable key pair. RSA keys use e = 65537 and sign with SHA-256. */
export async function generateKeyPair(alg: KeyAlgorithm): Promise<KeyPair> {
  switch (alg) {
    case "ecdsa-p256":
    case "ecdsa-p384": {
      const curve: NamedCurve = alg === "ecdsa-p256" ? "P-256" : "P-384";
      const kp = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, [
        "sign",
        "verify",
      ]);
      return { privateKey: kp.privateKey, publicKey: kp.publicKey, type: "ec", curve };
    }
    case "rsa-2048": {
      const kp = await crypto.subtle.generateKey(
        { ...RSA_IMPORT, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
        true,
        ["sign", "verify"],
      );
      return {
        privateKey: kp.privateKey,
        publicKey: kp.publicKey,
        type: "rsa",
        modulusLength: 2048,
      };
    }
    default:
      throw new AosError("notSupported", `Key algorithm "${alg as string}" is not supported`);
  }
}

/** PKCS#8 DER of a private key. */
export async function exportPrivateKeyDer(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
}

/** PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) of a private key; store it with mode 0600. */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  return derToPem(await exportPrivateKeyDer(key), "PRIVATE KEY");
}

/** SubjectPublicKeyInfo DER of a public key. */
export async function exportPublicKeyDer(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", key));
}

/** SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`) of a public key. */
export async function exportPublicKeyPem(key: CryptoKey): Promise<string> {
  return derToPem(await exportPublicKeyDer(key), "PUBLIC KEY");
}

function parsePrivateKey(pem: string | Uint8Array): KeyObject {
  try {
    return typeof pem === "string"
      ? createPrivateKey(pem)
      : createPrivateKey({ key: Buffer.from(pem), format: "der", type: "pkcs8" });
  } catch (err) {
    throw new AosError("invalidArgument", "Cannot import private key: not a readable PEM/DER key", {
      cause: err,
    });
  }
}

/**
 * Imports an unencrypted private key: PEM in PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or
 * PKCS#1 (`RSA PRIVATE KEY`) form, or PKCS#8 DER. The public half is derived from it.
 * @throws AosError invalidArgument for unreadable input, notSupported for other key types.
 */
export async function importPrivateKey(pem: string | Uint8Array): Promise<KeyPair> {
  const priv = parsePrivateKey(pem);
  const pkcs8 = new Uint8Array(priv.export({ type: "pkcs8", format: "der" }));
  const spki = new Uint8Array(createPublicKey(priv).export({ type: "spki", format: "der" }));
  if (priv.asymmetricKeyType === "rsa") {
    const modulusLength = priv.asymmetricKeyDetails?.modulusLength;
    const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, RSA_IMPORT, true, ["sign"]);
    const publicKey = await crypto.subtle.importKey("spki", spki, RSA_IMPORT, true, ["verify"]);
    return {
      privateKey,
      publicKey,
      type: "rsa",
      ...(modulusLength === undefined ? {} : { modulusLength }),
    };
  }
  if (priv.asymmetricKeyType === "ec") {
    const name = priv.asymmetricKeyDetails?.namedCurve ?? "";
    const curve = CURVE_BY_OPENSSL_NAME[name];
    if (!curve) {
      throw new AosError(
        "notSupported",
        `Cannot import private key: EC curve "${name}" not supported`,
      );
    }
    const alg = { name: "ECDSA", namedCurve: curve };
    const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, alg, true, ["sign"]);
    const publicKey = await crypto.subtle.importKey("spki", spki, alg, true, ["verify"]);
    return { privateKey, publicKey, type: "ec", curve };
  }
  throw new AosError(
    "notSupported",
    `Cannot import private key: key type "${priv.asymmetricKeyType}" not supported (RSA and EC only)`,
  );
}

/** Re-encodes an SPKI through OpenSSL so that equal keys compare byte-equal. */
function normalizeSpki(spki: Uint8Array): Uint8Array {
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  return new Uint8Array(key.export({ type: "spki", format: "der" }));
}

/** SPKI DER of the public half of a private key (CryptoKey, PEM or PKCS#8 DER). */
export async function publicKeyOfPrivateKey(
  privateKey: CryptoKey | string | Uint8Array,
): Promise<Uint8Array> {
  const obj = privateKey instanceof CryptoKey
    ? parsePrivateKey(await exportPrivateKeyDer(privateKey))
    : parsePrivateKey(privateKey);
  return new Uint8Array(createPublicKey(obj).export({ type: "spki", format: "der" }));
}

/**
 * Whether a private key is the pair of a certificate's public key.
 * @param cert anything with the certificate's SubjectPublicKeyInfo (e.g. a parsed `Certificate`)
 */
export async function certificateMatchesPrivateKey(
  cert: { readonly publicKeySpki: Uint8Array },
  privateKey: CryptoKey | string | Uint8Array,
): Promise<boolean> {
  let certSpki: Uint8Array;
  try {
    certSpki = normalizeSpki(cert.publicKeySpki);
  } catch {
    return false;
  }
  return bytesEqual(certSpki, await publicKeyOfPrivateKey(privateKey));
}

/** The WebCrypto signing algorithm for a key pair: SHA-256, or SHA-384/512 for big curves. */
export function signingAlgorithmFor(keys: KeyPair): Algorithm | EcdsaParams {
  if (keys.type === "rsa") return RSA_IMPORT;
  const hash = keys.curve === "P-384" ? "SHA-384" : keys.curve === "P-521" ? "SHA-512" : "SHA-256";
  return { name: "ECDSA", hash } as EcdsaParams;
}

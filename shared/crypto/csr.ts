/**
 * PKCS#10 certificate signing requests (IAM `CreateKey`), and reading them back (devcloud).
 *
 * Requests are built and read with our DER codec (`der.ts`): RFC 2986 structure, extensions
 * in an `extensionRequest` attribute, signed with the requested key.
 * @module
 */
import { Buffer } from "node:buffer";
import { createPublicKey } from "node:crypto";
import { AosError } from "../core/errors.ts";
import {
  contextTag,
  decodeDer,
  der,
  DerReader,
  readBitString,
  readOid,
  readSmallInt,
  TAG,
} from "./der.ts";
import { exportPublicKeyDer, type KeyPair } from "./keys.ts";
import { derToPem, splitPem } from "./pem.ts";
import {
  encodeDnsNames,
  encodeExtendedKeyUsage,
  encodeExtension,
  encodeName,
  type Extension,
  formatRdns,
  OID,
  readExtensions,
  readGeneralNames,
  readName,
  signStructure,
  verifySignature,
} from "./pkix.ts";

/** Options of {@link createCsr}. */
export interface CreateCsrOptions {
  /**
   * Subject: a full DN (`CN=x,O=y`) or a bare common name (no `=`), which becomes `CN=<name>`
   * as upstream IAM does.
   */
  subject: string;
  /** The key pair the request is for; it signs the request. */
  keys: KeyPair;
  /** DNS subject alternative names (IAM `alternativeNames`). */
  dnsNames?: string[];
  /** Extended key usages: `clientAuth`, `serverAuth` or dotted OIDs. */
  extendedKeyUsage?: string[];
}

/**
 * Creates a CSR and returns it as PEM (`CERTIFICATE REQUEST`). No keyUsage/basicConstraints.
 * @throws AosError invalidArgument for a bad subject, DNS name or usage; failed when signing
 * fails.
 */
export async function createCsr(opts: CreateCsrOptions): Promise<string> {
  const extensions: Uint8Array[] = [];
  if (opts.dnsNames?.length) {
    extensions.push(encodeExtension(OID.subjectAltName, false, encodeDnsNames(opts.dnsNames)));
  }
  if (opts.extendedKeyUsage?.length) {
    extensions.push(
      encodeExtension(OID.extKeyUsage, false, encodeExtendedKeyUsage(opts.extendedKeyUsage)),
    );
  }
  const subject = encodeName(opts.subject);
  // openssl writes an empty attribute set when there is nothing to request; so do we.
  const attributes = extensions.length
    ? [der.sequence(der.oid(OID.extensionRequest), der.setOf(der.sequence(...extensions)))]
    : [];
  let csr: Uint8Array;
  try {
    const spki = await exportPublicKeyDer(opts.keys.publicKey);
    csr = await signStructure(opts.keys, () =>
      der.sequence(
        der.smallInt(0),
        subject,
        spki,
        der.implicitConstructed(0, ...attributes),
      ));
  } catch (err) {
    if (err instanceof AosError) throw err;
    throw new AosError(
      "failed",
      `Cannot create CSR for "${opts.subject}": ${(err as Error).message}`,
      { cause: err },
    );
  }
  return derToPem(csr, "CERTIFICATE REQUEST");
}

/** What a CSR asks for. */
export interface CsrInfo {
  /** Subject DN (`CN=x,O=y`). */
  subject: string;
  /** Requested DNS names. */
  dnsNames: string[];
  /** Requested extended key usages (names for known OIDs). */
  extendedKeyUsage: string[];
  /** SubjectPublicKeyInfo DER of the requested key. */
  publicKeySpki: Uint8Array;
  /** The requested key, ready for `createCertificate`. */
  publicKey: CryptoKey;
}

const EKU_NAMES: Record<string, string> = {
  "1.3.6.1.5.5.7.3.1": "serverAuth",
  "1.3.6.1.5.5.7.3.2": "clientAuth",
};

const CSR = "CSR";

const CURVES: Record<string, string> = {
  prime256v1: "P-256",
  secp384r1: "P-384",
  secp521r1: "P-521",
};

/** Imports the requested key as a WebCrypto verify key (RSA PKCS#1 v1.5 SHA-256 or ECDSA). */
async function importRequestedKey(spki: Uint8Array): Promise<CryptoKey> {
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  const spkiCopy = new Uint8Array(spki);
  if (key.asymmetricKeyType === "rsa") {
    return await crypto.subtle.importKey(
      "spki",
      spkiCopy,
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      true,
      ["verify"],
    );
  }
  const curve = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ""];
  if (key.asymmetricKeyType === "ec" && curve) {
    return await crypto.subtle.importKey(
      "spki",
      spkiCopy,
      { name: "ECDSA", namedCurve: curve },
      true,
      ["verify"],
    );
  }
  throw new AosError(
    "notSupported",
    `CSR key type "${key.asymmetricKeyType}" is not supported (RSA and EC P-256/384/521 only)`,
  );
}

/**
 * Parses a PEM CSR and checks its self-signature.
 * @throws AosError invalidArgument for unreadable input, invalidChecksum for a bad signature,
 * notSupported for a key type we cannot certify.
 */
export async function parseCsr(pem: string): Promise<CsrInfo> {
  const block = splitPem(pem).find((b) =>
    b.label === "CERTIFICATE REQUEST" || b.label === "NEW CERTIFICATE REQUEST"
  );
  if (!block) {
    throw new AosError("invalidArgument", "Cannot parse CSR: no CERTIFICATE REQUEST block");
  }
  const top = new DerReader(decodeDer(block.der, CSR), CSR, TAG.SEQUENCE);
  const info = top.next(TAG.SEQUENCE, "certificationRequestInfo");
  const algId = top.next(TAG.SEQUENCE, "signatureAlgorithm");
  const signature = readBitString(top.next(TAG.BIT_STRING, "signature"), CSR);
  top.end();

  const r = new DerReader(info, CSR);
  const version = readSmallInt(r.next(TAG.INTEGER, "version"), CSR);
  if (version !== 0) {
    throw new AosError("invalidArgument", `Cannot parse CSR: unknown version ${version + 1}`);
  }
  const subject = formatRdns(readName(r.next(TAG.SEQUENCE, "subject"), CSR));
  const spkiEl = r.next(TAG.SEQUENCE, "subjectPKInfo");
  const attributes = r.optional(contextTag(0, true));
  r.end();

  let extensions: Map<string, Extension> | undefined;
  for (const attr of attributes ? new DerReader(attributes, CSR).rest() : []) {
    const a = new DerReader(attr, CSR, TAG.SEQUENCE);
    const type = readOid(a.next(TAG.OID, "attribute type"), CSR);
    const values = new DerReader(a.next(TAG.SET, "attribute values"), CSR);
    a.end();
    if (type !== OID.extensionRequest) continue;
    if (extensions) {
      throw new AosError("invalidArgument", "Cannot parse CSR: two extensionRequest attributes");
    }
    extensions = readExtensions(values.next(TAG.SEQUENCE, "extensions"), CSR);
    values.end();
  }

  if (
    signature.unusedBits ||
    !(await verifySignature(algId, spkiEl.bytes, info.bytes, signature.bytes))
  ) {
    throw new AosError("invalidChecksum", `CSR of "${subject}" has an invalid signature`);
  }

  const san = extensions?.get(OID.subjectAltName);
  const eku = extensions?.get(OID.extKeyUsage);
  const publicKeySpki = spkiEl.bytes.slice();
  return {
    subject,
    dnsNames: san
      ? readGeneralNames(decodeDer(san.value, CSR), CSR).filter((n) => n.type === "dns").map((n) =>
        n.value
      )
      : [],
    extendedKeyUsage: eku
      ? new DerReader(decodeDer(eku.value, CSR), CSR, TAG.SEQUENCE).rest().map((el) => {
        const oid = readOid(el, CSR);
        return EKU_NAMES[oid] ?? oid;
      })
      : [],
    publicKeySpki,
    publicKey: await importRequestedKey(publicKeySpki),
  };
}

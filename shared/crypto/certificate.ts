/**
 * X.509 certificate parsing and creation.
 *
 * Formats (chosen to match upstream AosCore and OpenSSL):
 * - `serial`: lowercase hex of the serial's big-endian magnitude bytes, without DER sign-padding
 *   zero bytes (what AosCore sends in `installUnitCertificatesConfirmation` and gRPC `CertInfo`;
 *   equals `openssl x509 -serial` lowercased).
 * - `subject`/`issuer`: RDNs in encoded order, `,` between RDNs, `+` inside a multi-valued RDN,
 *   `type=value` with RFC 4514 escaping (equals `openssl x509 -nameopt sep_comma_plus` for
 *   plain values), e.g. `CN=unit,O=Aos`.
 * @module
 */
import { AosError } from "../core/errors.ts";
import {
  contextTag,
  decodeDer,
  der,
  type DerElement,
  DerReader,
  readBitString,
  readOctetString,
  readOid,
  readSmallInt,
  readTime,
  TAG,
} from "./der.ts";
import { digest } from "./hash.ts";
import { exportPublicKeyDer, type KeyPair } from "./keys.ts";
import { bytesEqual, derToPem, fromHex, isPem, splitPemCertificates, toHex } from "./pem.ts";
import {
  encodeDnsNames,
  encodeExtendedKeyUsage,
  encodeExtension,
  encodeName,
  encodeNamedBits,
  EXTENDED_KEY_USAGE,
  formatRdns,
  type GeneralName,
  type Hash,
  integerHex,
  keyAlgorithmName,
  type NameAttribute,
  OID,
  readBasicConstraints,
  readExtensions,
  readGeneralNames,
  readName,
  readNamedBits,
  readSpki,
  signatureHash,
  signStructure,
  verifySignature,
} from "./pkix.ts";

export {
  EXTENDED_KEY_USAGE,
  type ExtendedKeyUsageName,
  extendedKeyUsageOid,
  type GeneralName,
  type NameAttribute,
} from "./pkix.ts";

/** Key usage bit names (RFC 5280), in bit order. */
export type KeyUsageName =
  | "digitalSignature"
  | "nonRepudiation"
  | "keyEncipherment"
  | "dataEncipherment"
  | "keyAgreement"
  | "keyCertSign"
  | "cRLSign"
  | "encipherOnly"
  | "decipherOnly";

const KEY_USAGE_NAMES: readonly KeyUsageName[] = [
  "digitalSignature",
  "nonRepudiation",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
  "keyCertSign",
  "cRLSign",
  "encipherOnly",
  "decipherOnly",
];

const EKU_NAME_BY_OID = new Map<string, string>(
  Object.entries(EXTENDED_KEY_USAGE).map(([name, oid]) => [oid, name]),
);

/** Formats the DER of a Name as `CN=x,O=y` (encoded order, RFC 4514 escaping). */
export function formatName(nameDer: Uint8Array): string {
  return formatRdns(readName(decodeDer(nameDer, "name"), "name"));
}

/**
 * Encodes a subject given as a DN string (`CN=x,O=y`, also `CN=x, O=y`) or as a bare common
 * name (no `=`); returns the DER of the Name.
 * @throws AosError invalidArgument for unknown attribute types or malformed text.
 */
export function parseName(subject: string): Uint8Array<ArrayBuffer> {
  return encodeName(subject);
}

const CERT = "certificate";

function fail(detail: string): never {
  throw new AosError("invalidArgument", `Cannot parse ${CERT}: ${detail}`);
}

/** Decodes the DER inside an extension. */
function inner(value: Uint8Array): DerElement {
  return decodeDer(value, CERT);
}

/** A parsed X.509 certificate. All fields are computed once at parse time. */
export class Certificate {
  /** DER encoding. */
  readonly der: Uint8Array<ArrayBuffer>;
  /** Subject DN, e.g. `CN=unit,O=Aos`. */
  readonly subject: string;
  /** Issuer DN. */
  readonly issuer: string;
  /** Raw DER of the subject Name (what upstream compares and stores). */
  readonly subjectDer: Uint8Array<ArrayBuffer>;
  /** Raw DER of the issuer Name (gRPC `CertInfo.issuer`, DB key). */
  readonly issuerDer: Uint8Array<ArrayBuffer>;
  /** Serial as lowercase hex without sign padding (see the module notes). */
  readonly serial: string;
  /** Start of validity. */
  readonly notBefore: Date;
  /** End of validity. */
  readonly notAfter: Date;
  /** basicConstraints cA. */
  readonly isCA: boolean;
  /** Whether a basicConstraints extension is present. */
  readonly hasBasicConstraints: boolean;
  /** basicConstraints pathLenConstraint. */
  readonly pathLength: number | undefined;
  /** keyUsage bits, `undefined` when the extension is absent (any usage allowed). */
  readonly keyUsage: KeyUsageName[] | undefined;
  /** Extended key usages: names for known OIDs, dotted OIDs otherwise. */
  readonly extendedKeyUsage: string[];
  /** DNS subject alternative names. */
  readonly dnsNames: string[];
  /** IP subject alternative names. */
  readonly ipAddresses: string[];
  /** Subject alternative names of the kinds we read (DNS, IP, URI, email), in order. */
  readonly subjectAltNames: GeneralName[];
  /** Issuer alternative names (DNS, IP, URI, email), in order. */
  readonly issuerAltNames: GeneralName[];
  /** Subject key identifier (lowercase hex). */
  readonly subjectKeyId: string | undefined;
  /** Authority key identifier (lowercase hex). */
  readonly authorityKeyId: string | undefined;
  /** SubjectPublicKeyInfo DER. */
  readonly publicKeySpki: Uint8Array<ArrayBuffer>;
  /** `RSA`, `EC`, `Ed25519` or the OID of the key algorithm. */
  readonly publicKeyAlgorithm: string;
  /** Lowercase hex SHA-1 of the DER (the usual "fingerprint"; compare case-insensitively). */
  readonly fingerprintSha1: string;
  /** Lowercase hex SHA-256 of the DER. */
  readonly fingerprintSha256: string;
  /**
   * OIDs of critical extensions this code does not process (e.g. nameConstraints,
   * policyConstraints): RFC 5280 says such a certificate must be rejected, and
   * `verifyChain` does.
   */
  readonly unhandledCriticalExtensions: string[];

  readonly #subjectRdns: NameAttribute[][];
  readonly #tbs: Uint8Array;
  readonly #signatureAlgorithm: DerElement;
  readonly #signatureAlgorithmsAgree: boolean;
  readonly #signature: Uint8Array;

  /**
   * Parses DER or a PEM text (the first certificate in it).
   * @throws AosError invalidArgument for anything that is not a well-formed DER certificate.
   */
  constructor(input: Uint8Array | string) {
    let source: Uint8Array | undefined;
    if (typeof input === "string" || isPem(input)) {
      source = splitPemCertificates(
        typeof input === "string" ? input : new TextDecoder().decode(input),
      )[0];
      if (!source) fail("no CERTIFICATE block");
    } else {
      source = input;
    }
    // Our own copy: the fields below are views into it.
    this.der = new Uint8Array(source);
    const top = new DerReader(decodeDer(this.der, CERT), CERT, TAG.SEQUENCE);
    const tbsEl = top.next(TAG.SEQUENCE, "tbsCertificate");
    this.#signatureAlgorithm = top.next(TAG.SEQUENCE, "signatureAlgorithm");
    const sig = readBitString(top.next(TAG.BIT_STRING, "signatureValue"), CERT);
    top.end();
    if (sig.unusedBits) fail("signature is not a whole number of bytes");
    this.#tbs = tbsEl.bytes;
    this.#signature = sig.bytes;

    const t = new DerReader(tbsEl, CERT);
    const versionEl = t.optional(contextTag(0, true));
    let version = 0;
    if (versionEl) {
      const v = new DerReader(versionEl, CERT);
      version = readSmallInt(v.next(TAG.INTEGER, "version"), CERT);
      v.end();
      if (version > 2) fail(`unknown version ${version + 1}`);
    }
    this.serial = integerHex(t.next(TAG.INTEGER, "serialNumber"), CERT);
    const innerAlg = t.next(TAG.SEQUENCE, "signature");
    this.#signatureAlgorithmsAgree = bytesEqual(innerAlg.bytes, this.#signatureAlgorithm.bytes);
    const issuerEl = t.next(TAG.SEQUENCE, "issuer");
    const validity = new DerReader(t.next(TAG.SEQUENCE, "validity"), CERT);
    this.notBefore = readTime(validity.any("notBefore"), CERT);
    this.notAfter = readTime(validity.any("notAfter"), CERT);
    validity.end();
    const subjectEl = t.next(TAG.SEQUENCE, "subject");
    const spkiEl = t.next(TAG.SEQUENCE, "subjectPublicKeyInfo");
    t.optional(contextTag(1, false));
    t.optional(contextTag(2, false));
    const extWrapper = t.optional(contextTag(3, true));
    t.end();

    this.#subjectRdns = readName(subjectEl, CERT);
    this.subject = formatRdns(this.#subjectRdns);
    this.issuer = formatRdns(readName(issuerEl, CERT));
    this.subjectDer = subjectEl.bytes.slice();
    this.issuerDer = issuerEl.bytes.slice();
    this.publicKeySpki = spkiEl.bytes.slice();
    this.publicKeyAlgorithm = keyAlgorithmName(readSpki(spkiEl, CERT).algorithm);

    let extensions = new Map<string, { critical: boolean; value: Uint8Array }>();
    if (extWrapper) {
      if (version !== 2) fail("extensions in a version 1 or 2 certificate");
      const w = new DerReader(extWrapper, CERT);
      extensions = readExtensions(w.next(TAG.SEQUENCE, "extensions"), CERT);
      w.end();
    }

    const bc = extensions.get(OID.basicConstraints);
    const constraints = bc ? readBasicConstraints(bc.value, CERT) : undefined;
    this.hasBasicConstraints = constraints !== undefined;
    this.isCA = constraints?.ca ?? false;
    this.pathLength = constraints?.pathLength;

    const ku = extensions.get(OID.keyUsage);
    this.keyUsage = ku
      ? readNamedBits(inner(ku.value), CERT).flatMap((bit) => KEY_USAGE_NAMES[bit] ?? [])
      : undefined;

    const eku = extensions.get(OID.extKeyUsage);
    this.extendedKeyUsage = eku
      ? new DerReader(inner(eku.value), CERT, TAG.SEQUENCE).rest().map((el) => {
        const oid = readOid(el, CERT);
        return EKU_NAME_BY_OID.get(oid) ?? oid;
      })
      : [];

    const san = extensions.get(OID.subjectAltName);
    this.subjectAltNames = san ? readGeneralNames(inner(san.value), CERT) : [];
    this.dnsNames = this.subjectAltNames.filter((n) => n.type === "dns").map((n) => n.value);
    this.ipAddresses = this.subjectAltNames.filter((n) => n.type === "ip").map((n) => n.value);
    const ian = extensions.get(OID.issuerAltName);
    this.issuerAltNames = ian ? readGeneralNames(inner(ian.value), CERT) : [];

    const ski = extensions.get(OID.subjectKeyIdentifier);
    this.subjectKeyId = ski ? toHex(readOctetString(inner(ski.value), CERT)) : undefined;
    const aki = extensions.get(OID.authorityKeyIdentifier);
    if (aki) {
      const r = new DerReader(inner(aki.value), CERT, TAG.SEQUENCE);
      const keyId = r.optional(contextTag(0, false));
      r.optional(contextTag(1, true));
      r.optional(contextTag(2, false));
      r.end();
      this.authorityKeyId = keyId ? toHex(keyId.value) : undefined;
    } else {
      this.authorityKeyId = undefined;
    }

    const handled = new Set<string>([
      OID.basicConstraints,
      OID.keyUsage,
      OID.extKeyUsage,
      OID.subjectAltName,
      OID.issuerAltName,
      OID.subjectKeyIdentifier,
      OID.authorityKeyIdentifier,
    ]);
    this.unhandledCriticalExtensions = [...extensions]
      .filter(([oid, e]) => e.critical && !handled.has(oid))
      .map(([oid]) => oid);

    this.fingerprintSha1 = toHex(digest("sha1", this.der));
    this.fingerprintSha256 = toHex(digest("sha256", this.der));
  }

  /** PEM encoding. */
  get pem(): string {
    return derToPem(this.der, "CERTIFICATE");
  }

  /** Whether subject and issuer names are equal (a root candidate). */
  get isSelfIssued(): boolean {
    return bytesEqual(this.subjectDer, this.issuerDer);
  }

  /** Values of one subject attribute (`O`, `CN`, … or a dotted OID), in encoded order. */
  subjectField(type: string): string[] {
    const wanted = type.toUpperCase();
    return this.#subjectRdns.flat()
      .filter((a) => a.type.toUpperCase() === wanted || a.oid === type)
      .map((a) => a.value);
  }

  /** The hash of the issuer's signature on this certificate (`null` for EdDSA, `undefined` if unknown). */
  get signatureHash(): Hash | null | undefined {
    return signatureHash(this.#signatureAlgorithm);
  }

  /**
   * Whether this certificate's signature verifies with `issuer`'s public key (signature only:
   * no names, validity or CA checks). Unsupported algorithms do not verify.
   */
  async isSignedBy(issuer: { readonly publicKeySpki: Uint8Array }): Promise<boolean> {
    return this.#signatureAlgorithmsAgree &&
      await verifySignature(
        this.#signatureAlgorithm,
        issuer.publicKeySpki,
        this.#tbs,
        this.#signature,
      );
  }
}

/** Parses one certificate (DER, or the first certificate of a PEM text). */
export function parseCertificate(input: Uint8Array | string): Certificate {
  return new Certificate(input);
}

/** Parses every certificate of a PEM bundle, in order. */
export function parseCertificates(pem: string): Certificate[] {
  return splitPemCertificates(pem).map((der) => new Certificate(der));
}

/** Options of {@link createCertificate}. */
export interface CreateCertificateOptions {
  /** Subject DN (`CN=x,O=y`) or a bare common name. */
  subject: string;
  /** The public key to certify. */
  publicKey: CryptoKey;
  /** The key that signs: the issuer's, or the subject's own for a self-signed certificate. */
  signer: KeyPair;
  /** The issuing CA certificate; absent for a self-signed certificate. */
  issuer?: Certificate;
  /** Serial as hex (at most 20 bytes); random 16 bytes when absent. */
  serial?: string;
  /** Defaults to now. */
  notBefore?: Date;
  /** Defaults to one year after `notBefore`. */
  notAfter?: Date;
  /** Adds basicConstraints cA=TRUE (critical) and keyCertSign/cRLSign key usage. */
  isCA?: boolean;
  /** basicConstraints pathLenConstraint of a CA. */
  pathLength?: number;
  /** Explicit key usage (overrides the CA default). */
  keyUsage?: KeyUsageName[];
  /** Extended key usages (names or OIDs). */
  extendedKeyUsage?: string[];
  /** DNS subject alternative names. */
  dnsNames?: string[];
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(spki: Uint8Array): Uint8Array {
  return digest("sha1", readSpki(decodeDer(spki, "public key"), "public key").keyBits);
}

/**
 * Creates a certificate (devcloud and tests issue unit certificates with it; IAM uses it for
 * self-signed modules). Subject/authority key identifiers are always added; the authority key
 * identifier is the issuer's subject key identifier.
 * @throws AosError invalidArgument for a bad subject, serial, usage or DNS name.
 */
export async function createCertificate(opts: CreateCertificateOptions): Promise<Certificate> {
  const notBefore = opts.notBefore ?? new Date();
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + 365 * 24 * 3600 * 1000);
  const serial = opts.serial === undefined
    ? crypto.getRandomValues(new Uint8Array(16))
    : fromHex(opts.serial, "certificate serial");
  if (serial.length === 0 || serial.length > 20) {
    throw new AosError(
      "invalidArgument",
      `Cannot create certificate: serial of ${serial.length} bytes (1..20 allowed)`,
    );
  }
  const spki = await exportPublicKeyDer(opts.publicKey);
  const subjectKeyId = keyIdentifier(spki);
  const authorityKeyId = opts.issuer
    ? (opts.issuer.subjectKeyId
      ? fromHex(opts.issuer.subjectKeyId)
      : keyIdentifier(opts.issuer.publicKeySpki))
    : keyIdentifier(await exportPublicKeyDer(opts.signer.publicKey));

  const extensions: Uint8Array[] = [];
  if (opts.isCA) {
    extensions.push(encodeExtension(
      OID.basicConstraints,
      true,
      der.sequence(
        der.boolean(true),
        ...(opts.pathLength === undefined ? [] : [der.smallInt(opts.pathLength)]),
      ),
    ));
  }
  const usages = opts.keyUsage ?? (opts.isCA ? ["keyCertSign", "cRLSign"] : undefined);
  if (usages) {
    const bits = usages.map((name) => {
      const bit = KEY_USAGE_NAMES.indexOf(name);
      if (bit < 0) throw new AosError("invalidArgument", `Unknown key usage "${name}"`);
      return bit;
    });
    extensions.push(encodeExtension(OID.keyUsage, true, encodeNamedBits(bits)));
  }
  if (opts.extendedKeyUsage?.length) {
    extensions.push(
      encodeExtension(OID.extKeyUsage, false, encodeExtendedKeyUsage(opts.extendedKeyUsage)),
    );
  }
  if (opts.dnsNames?.length) {
    extensions.push(encodeExtension(OID.subjectAltName, false, encodeDnsNames(opts.dnsNames)));
  }
  extensions.push(
    encodeExtension(OID.subjectKeyIdentifier, false, der.octetString(subjectKeyId)),
    encodeExtension(
      OID.authorityKeyIdentifier,
      false,
      der.sequence(der.implicit(0, authorityKeyId)),
    ),
  );
  const subjectName = encodeName(opts.subject);
  // Reuse the issuer's encoded subject so issuer/subject names compare byte-equal.
  const issuerName = opts.issuer ? opts.issuer.subjectDer : subjectName;
  const certDer = await signStructure(opts.signer, (algId) =>
    der.sequence(
      der.explicit(0, der.smallInt(2)),
      der.unsignedInt(serial),
      algId,
      issuerName,
      der.sequence(der.time(notBefore), der.time(notAfter)),
      subjectName,
      spki,
      der.explicit(3, der.sequence(...extensions)),
    ));
  return new Certificate(certDer);
}

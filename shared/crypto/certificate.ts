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
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AosError } from "../core/errors.ts";
import { digest } from "./hash.ts";
import { type KeyPair, signingAlgorithmFor } from "./keys.ts";
import { derToPem, isPem, splitPemCertificates, toHex } from "./pem.ts";

/** Key usage bit names (RFC 5280). */
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

const KEY_USAGE_BITS: [KeyUsageName, number][] = [
  ["digitalSignature", x509.KeyUsageFlags.digitalSignature],
  ["nonRepudiation", x509.KeyUsageFlags.nonRepudiation],
  ["keyEncipherment", x509.KeyUsageFlags.keyEncipherment],
  ["dataEncipherment", x509.KeyUsageFlags.dataEncipherment],
  ["keyAgreement", x509.KeyUsageFlags.keyAgreement],
  ["keyCertSign", x509.KeyUsageFlags.keyCertSign],
  ["cRLSign", x509.KeyUsageFlags.cRLSign],
  ["encipherOnly", x509.KeyUsageFlags.encipherOnly],
  ["decipherOnly", x509.KeyUsageFlags.decipherOnly],
];

/** Extended key usage OIDs by name. */
export const EXTENDED_KEY_USAGE = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  emailProtection: "1.3.6.1.5.5.7.3.4",
  timeStamping: "1.3.6.1.5.5.7.3.8",
  ocspSigning: "1.3.6.1.5.5.7.3.9",
} as const;

/** A known extended key usage name. */
export type ExtendedKeyUsageName = keyof typeof EXTENDED_KEY_USAGE;

const EKU_NAME_BY_OID = new Map<string, string>(
  Object.entries(EXTENDED_KEY_USAGE).map(([name, oid]) => [oid, name]),
);

/** Maps an EKU name (`clientAuth`) or dotted OID to the OID. */
export function extendedKeyUsageOid(nameOrOid: string): string {
  const oid = (EXTENDED_KEY_USAGE as Record<string, string>)[nameOrOid];
  if (oid) return oid;
  if (/^\d+(\.\d+)+$/.test(nameOrOid)) return nameOrOid;
  throw new AosError("invalidArgument", `Unknown extended key usage "${nameOrOid}"`);
}

function escapeDnValue(value: string): string {
  let out = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`);
  if (out.startsWith("#") || out.startsWith(" ")) out = `\\${out}`;
  if (out.endsWith(" ") && out.length > 1) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** Formats a name as `CN=x,O=y` (encoded order, RFC 4514 escaping). */
export function formatName(name: x509.Name): string {
  return name.toJSON().map((rdn) =>
    Object.entries(rdn)
      .flatMap(([type, values]) => values.map((v) => `${type}=${escapeDnValue(v)}`))
      .join("+")
  ).join(",");
}

/**
 * Turns a subject given as a DN string (`CN=x,O=y`, also `CN=x, O=y`) or as a bare common name
 * (no `=`) into a `Name`.
 */
export function parseName(subject: string): x509.Name {
  const text = subject.includes("=") ? subject : `CN=${escapeDnValue(subject)}`;
  try {
    return new x509.Name(text);
  } catch (err) {
    throw new AosError("invalidArgument", `Cannot parse distinguished name "${subject}"`, {
      cause: err,
    });
  }
}

/** A parsed X.509 certificate. All fields are computed once at parse time. */
export class Certificate {
  /** The underlying `@peculiar/x509` object (for signature checks). */
  readonly x509: x509.X509Certificate;
  /** DER encoding. */
  readonly der: Uint8Array;
  /** Subject DN, e.g. `CN=unit,O=Aos`. */
  readonly subject: string;
  /** Issuer DN. */
  readonly issuer: string;
  /** Raw DER of the subject Name (what upstream compares and stores). */
  readonly subjectDer: Uint8Array;
  /** Raw DER of the issuer Name (gRPC `CertInfo.issuer`, DB key). */
  readonly issuerDer: Uint8Array;
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
  /** Subject key identifier (lowercase hex). */
  readonly subjectKeyId: string | undefined;
  /** Authority key identifier (lowercase hex). */
  readonly authorityKeyId: string | undefined;
  /** SubjectPublicKeyInfo DER. */
  readonly publicKeySpki: Uint8Array;
  /** `RSA`, `EC` or the WebCrypto algorithm name of the key. */
  readonly publicKeyAlgorithm: string;
  /** Lowercase hex SHA-1 of the DER (the usual "fingerprint"; compare case-insensitively). */
  readonly fingerprintSha1: string;
  /** Lowercase hex SHA-256 of the DER. */
  readonly fingerprintSha256: string;

  /** Parses DER or a PEM text (the first certificate in it). */
  constructor(input: Uint8Array | string) {
    let cert: x509.X509Certificate;
    try {
      const der = typeof input === "string" || isPem(input)
        ? splitPemCertificates(
          typeof input === "string" ? input : new TextDecoder().decode(input),
        )[0]
        : input;
      if (!der) throw new Error("no CERTIFICATE block");
      cert = new x509.X509Certificate(new Uint8Array(der));
    } catch (err) {
      if (err instanceof AosError) throw err;
      throw new AosError("invalidArgument", `Cannot parse certificate: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.x509 = cert;
    this.der = new Uint8Array(cert.rawData);
    this.subject = formatName(cert.subjectName);
    this.issuer = formatName(cert.issuerName);
    this.subjectDer = new Uint8Array(cert.subjectName.toArrayBuffer());
    this.issuerDer = new Uint8Array(cert.issuerName.toArrayBuffer());
    this.serial = cert.serialNumber.toLowerCase().replace(/^(00)+(?=..)/, "");
    this.notBefore = cert.notBefore;
    this.notAfter = cert.notAfter;

    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    this.hasBasicConstraints = bc !== null;
    this.isCA = bc?.ca ?? false;
    this.pathLength = bc?.pathLength;

    const ku = cert.getExtension(x509.KeyUsagesExtension);
    this.keyUsage = ku
      ? KEY_USAGE_BITS.filter(([, bit]) => (ku.usages & bit) !== 0).map(([n]) => n)
      : undefined;

    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    this.extendedKeyUsage = Array.from(eku?.usages ?? [], String).map((u) =>
      EKU_NAME_BY_OID.get(String(u)) ?? String(u)
    );

    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    const names = san?.names.toJSON() ?? [];
    this.dnsNames = names.filter((n) => n.type === "dns").map((n) => n.value);
    this.ipAddresses = names.filter((n) => n.type === "ip").map((n) => n.value);

    this.subjectKeyId = cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId.toLowerCase();
    this.authorityKeyId = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId
      ?.toLowerCase();

    this.publicKeySpki = new Uint8Array(cert.publicKey.rawData);
    const algName = cert.publicKey.algorithm.name;
    this.publicKeyAlgorithm = algName === "ECDSA" || algName === "ECDH"
      ? "EC"
      : algName.startsWith("RSA")
      ? "RSA"
      : algName;
    this.fingerprintSha1 = toHex(digest("sha1", this.der));
    this.fingerprintSha256 = toHex(digest("sha256", this.der));
  }

  /** PEM encoding. */
  get pem(): string {
    return derToPem(this.der, "CERTIFICATE");
  }

  /** Whether subject and issuer names are equal (a root candidate). */
  get isSelfIssued(): boolean {
    return toHex(this.subjectDer) === toHex(this.issuerDer);
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
  /** Serial as hex; random 16 bytes when absent. */
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

/**
 * Creates a certificate (devcloud and tests issue unit certificates with it; IAM uses it for
 * self-signed modules). Subject/authority key identifiers are always added.
 */
export async function createCertificate(opts: CreateCertificateOptions): Promise<Certificate> {
  const notBefore = opts.notBefore ?? new Date();
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + 365 * 24 * 3600 * 1000);
  const serial = opts.serial ?? toHex(crypto.getRandomValues(new Uint8Array(16)));
  const extensions: x509.Extension[] = [];
  if (opts.isCA) extensions.push(new x509.BasicConstraintsExtension(true, opts.pathLength, true));
  const usages = opts.keyUsage ?? (opts.isCA ? ["keyCertSign", "cRLSign"] : undefined);
  if (usages) {
    const bits = usages.reduce(
      (acc, name) => acc | (KEY_USAGE_BITS.find(([n]) => n === name)?.[1] ?? 0),
      0,
    );
    extensions.push(new x509.KeyUsagesExtension(bits, true));
  }
  if (opts.extendedKeyUsage?.length) {
    extensions.push(
      new x509.ExtendedKeyUsageExtension(opts.extendedKeyUsage.map(extendedKeyUsageOid)),
    );
  }
  if (opts.dnsNames?.length) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        opts.dnsNames.map((value) => ({ type: "dns" as const, value })),
      ),
    );
  }
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(opts.publicKey));
  extensions.push(
    await x509.AuthorityKeyIdentifierExtension.create(
      opts.issuer ? opts.issuer.x509.publicKey : opts.signer.publicKey,
    ),
  );
  const subjectName = parseName(opts.subject);
  const cert = await x509.X509CertificateGenerator.create({
    subject: subjectName,
    // Reuse the issuer's encoded subject so issuer/subject names compare byte-equal.
    issuer: opts.issuer ? opts.issuer.x509.subjectName : subjectName,
    publicKey: opts.publicKey,
    signingKey: opts.signer.privateKey,
    signingAlgorithm: signingAlgorithmFor(opts.signer),
    serialNumber: serial,
    notBefore,
    notAfter,
    extensions,
  });
  return new Certificate(new Uint8Array(cert.rawData));
}

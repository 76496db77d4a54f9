/**
 * PKCS#10 certificate signing requests (IAM `CreateKey`), and reading them back (devcloud).
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AosError } from "../core/errors.ts";
import { extendedKeyUsageOid, formatName, parseName } from "./certificate.ts";
import { type KeyPair, signingAlgorithmFor } from "./keys.ts";

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

/** Creates a CSR and returns it as PEM (`CERTIFICATE REQUEST`). No keyUsage/basicConstraints. */
export async function createCsr(opts: CreateCsrOptions): Promise<string> {
  const extensions: x509.Extension[] = [];
  if (opts.dnsNames?.length) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        opts.dnsNames.map((value) => ({ type: "dns" as const, value })),
      ),
    );
  }
  if (opts.extendedKeyUsage?.length) {
    extensions.push(
      new x509.ExtendedKeyUsageExtension(opts.extendedKeyUsage.map(extendedKeyUsageOid)),
    );
  }
  try {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: parseName(opts.subject),
      keys: { privateKey: opts.keys.privateKey, publicKey: opts.keys.publicKey },
      signingAlgorithm: signingAlgorithmFor(opts.keys),
      extensions,
    });
    return csr.toString("pem") + "\n";
  } catch (err) {
    if (err instanceof AosError) throw err;
    throw new AosError(
      "failed",
      `Cannot create CSR for "${opts.subject}": ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
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

/**
 * Parses a PEM CSR and checks its self-signature.
 * @throws AosError invalidArgument for unreadable input, invalidChecksum for a bad signature.
 */
export async function parseCsr(pem: string): Promise<CsrInfo> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw new AosError("invalidArgument", `Cannot parse CSR: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const subject = formatName(csr.subjectName);
  if (!(await csr.verify())) {
    throw new AosError("invalidChecksum", `CSR of "${subject}" has an invalid signature`);
  }
  const san = csr.extensions.find((e) => e instanceof x509.SubjectAlternativeNameExtension);
  const eku = csr.extensions.find((e) => e instanceof x509.ExtendedKeyUsageExtension);
  return {
    subject,
    dnsNames: (san?.names.toJSON() ?? []).filter((n) => n.type === "dns").map((n) => n.value),
    extendedKeyUsage: Array.from(eku?.usages ?? [], String).map((u) =>
      EKU_NAMES[String(u)] ?? String(u)
    ),
    publicKeySpki: new Uint8Array(csr.publicKey.rawData),
    publicKey: await csr.publicKey.export(),
  };
}

/**
 * The dev PKI: a root CA persisted under the working dir, the TLS certificate of the cloud
 * endpoints, the RSA chain that signs blobs, and signing of unit CSRs.
 *
 * Files (`<workingDir>/pki/`, keys mode 0600): `root-ca.{crt,key}`, `server.{crt,key}`,
 * `signing-ca.{crt,key}` (intermediate), `signer.{crt,key}`. A unit trusts `root-ca.crt` as its
 * `caCert`: it verifies the cloud's TLS certificate, the blob signing chain and the unit's own
 * certificates, which IAM checks against it when they are applied.
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { join } from "node:path";
import { AosError, type Clock, systemClock } from "@aos/shared/core";
import {
  type Certificate,
  type CloudCertificate,
  type CloudCertificateChain,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKey,
  type KeyAlgorithm,
  type KeyPair,
  parseCertificate,
  parseCsr,
  parseName,
  signBlob,
  signingAlgorithmFor,
  toBase64,
  toHex,
} from "@aos/shared/crypto";

/** Name of the blob signing chain in `desiredStatus.certificateChains`. */
export const SIGNING_CHAIN_NAME = "devcloud-signing";

/** Unit certificate types devcloud signs (IAM cert storages). */
export const UNIT_CERT_TYPES = ["online", "offline", "iam", "sm", "cm", "um"] as const;

const DAY = 24 * 3600 * 1000;

/** Options of {@link DevPki.open}. */
export interface DevPkiOptions {
  /** Host names (and IP addresses) the server certificate must cover. */
  serverHosts?: readonly string[];
  /** Clock port (validity periods). */
  clock?: Clock;
}

/** Options of {@link DevPki.signCsr}. */
export interface SignCsrOptions {
  /** IAM cert type (`online`, `offline`, `iam`, `sm`, `cm`): chooses the key usage. */
  type: string;
  /** Written as an issuer-alternative-name URI: the unit finds its discovery URL there. */
  discoveryUrl?: string;
  /** Validity in days (default 365). */
  days?: number;
}

/** PEM paths of the dev PKI. */
export interface DevPkiFiles {
  /** Root CA certificate: the unit's `caCert`. */
  caCert: string;
  /** Root CA key. */
  caKey: string;
  /** Server certificate chain (leaf, root). */
  serverCert: string;
  /** Server key. */
  serverKey: string;
  /** Intermediate CA of the signing chain. */
  signingCaCert: string;
  /** Key of the intermediate. */
  signingCaKey: string;
  /** Blob signer certificate (RSA). */
  signerCert: string;
  /** Blob signer key. */
  signerKey: string;
}

interface Pair {
  cert: Certificate;
  keys: KeyPair;
}

function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(":");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Writes a file atomically with `mode` (keys 0600). */
async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, text, { mode });
  await Deno.chmod(tmp, mode);
  await Deno.rename(tmp, path);
}

interface IssueSpec {
  subject: x509.Name;
  publicKey: CryptoKey;
  issuer?: Pair;
  /** Signs a self-signed certificate. */
  selfKeys?: KeyPair;
  days: number;
  ca?: { pathLength?: number };
  keyUsage: number;
  extendedKeyUsage?: string[];
  san?: { type: "dns" | "ip"; value: string }[];
  ianUrl?: string;
  clock: Clock;
}

async function issue(spec: IssueSpec): Promise<Certificate> {
  const now = spec.clock.now();
  // An hour back, so a unit whose clock is a little behind accepts a fresh certificate.
  const notBefore = new Date(now - 3600 * 1000);
  const notAfter = new Date(now + spec.days * DAY);
  const signer = spec.issuer?.keys ?? spec.selfKeys;
  if (!signer) throw new AosError("invalidArgument", "Cannot issue a certificate without a signer");
  const extensions: x509.Extension[] = [];
  if (spec.ca) extensions.push(new x509.BasicConstraintsExtension(true, spec.ca.pathLength, true));
  else extensions.push(new x509.BasicConstraintsExtension(false, undefined, true));
  extensions.push(new x509.KeyUsagesExtension(spec.keyUsage, true));
  if (spec.extendedKeyUsage?.length) {
    extensions.push(new x509.ExtendedKeyUsageExtension(spec.extendedKeyUsage));
  }
  if (spec.san?.length) extensions.push(new x509.SubjectAlternativeNameExtension(spec.san));
  if (spec.ianUrl) {
    extensions.push(new x509.IssuerAlternativeNameExtension([{ type: "url", value: spec.ianUrl }]));
  }
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(spec.publicKey));
  extensions.push(
    await x509.AuthorityKeyIdentifierExtension.create(
      spec.issuer ? new x509.X509Certificate(spec.issuer.cert.der).publicKey : signer.publicKey,
    ),
  );
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x10; // positive, no leading zero byte
  const cert = await x509.X509CertificateGenerator.create({
    subject: spec.subject,
    // The issuer's encoded subject, so issuer and subject names compare byte-equal.
    issuer: spec.issuer ? new x509.Name(spec.issuer.cert.subjectDer) : spec.subject,
    publicKey: spec.publicKey,
    signingKey: signer.privateKey,
    signingAlgorithm: signingAlgorithmFor(signer),
    serialNumber: toHex(serial),
    notBefore,
    notAfter,
    extensions,
  });
  return parseCertificate(new Uint8Array(cert.rawData));
}

const KU = x509.KeyUsageFlags;
const EKU_SERVER = "1.3.6.1.5.5.7.3.1";
const EKU_CLIENT = "1.3.6.1.5.5.7.3.2";
const EKU_BY_NAME: Record<string, string> = { serverAuth: EKU_SERVER, clientAuth: EKU_CLIENT };

/** The dev PKI, loaded from or created in a directory. */
export class DevPki {
  /** PEM file paths. */
  readonly files: DevPkiFiles;
  readonly #root: Pair;
  readonly #server: Pair;
  readonly #signingCa: Pair;
  readonly #signer: Pair;
  readonly #clock: Clock;

  private constructor(
    files: DevPkiFiles,
    parts: { root: Pair; server: Pair; signingCa: Pair; signer: Pair },
    clock: Clock,
  ) {
    this.files = files;
    this.#root = parts.root;
    this.#server = parts.server;
    this.#signingCa = parts.signingCa;
    this.#signer = parts.signer;
    this.#clock = clock;
  }

  /**
   * Loads the PKI from `dir`, creating what is missing: the root CA once (it is what units
   * trust), the server certificate again when it lacks a host of `serverHosts` or is about to
   * expire, the signing chain again when it is about to expire.
   */
  static async open(dir: string, options: DevPkiOptions = {}): Promise<DevPki> {
    const clock = options.clock ?? systemClock;
    const hosts = [...new Set(options.serverHosts ?? ["localhost", "127.0.0.1"])];
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const files: DevPkiFiles = {
      caCert: join(dir, "root-ca.crt"),
      caKey: join(dir, "root-ca.key"),
      serverCert: join(dir, "server.crt"),
      serverKey: join(dir, "server.key"),
      signingCaCert: join(dir, "signing-ca.crt"),
      signingCaKey: join(dir, "signing-ca.key"),
      signerCert: join(dir, "signer.crt"),
      signerKey: join(dir, "signer.key"),
    };
    const fresh = (c: Certificate) => c.notAfter.getTime() - clock.now() > 7 * DAY;
    const load = async (cert: string, key: string): Promise<Pair | undefined> => {
      if (!(await exists(cert)) || !(await exists(key))) return undefined;
      try {
        return {
          cert: parseCertificate(await Deno.readTextFile(cert)),
          keys: await importPrivateKey(await Deno.readTextFile(key)),
        };
      } catch (err) {
        throw new AosError(
          "failed",
          `Cannot load dev PKI file ${cert}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    };
    const save = async (cert: string, key: string, pair: Pair, chain: Certificate[] = []) => {
      await writeAtomic(key, await exportPrivateKeyPem(pair.keys.privateKey), 0o600);
      await writeAtomic(cert, [pair.cert, ...chain].map((c) => c.pem).join(""), 0o644);
    };
    const make = async (
      alg: KeyAlgorithm,
      spec: (keys: KeyPair) => Omit<IssueSpec, "publicKey" | "clock">,
    ): Promise<Pair> => {
      const keys = await generateKeyPair(alg);
      const cert = await issue({ ...spec(keys), publicKey: keys.publicKey, clock });
      return { cert, keys };
    };

    let root = await load(files.caCert, files.caKey);
    let rootIsNew = false;
    if (!root) {
      root = await make("ecdsa-p256", (keys) => ({
        subject: new x509.Name("CN=Aos devcloud Root CA,O=AosCore on Deno devcloud"),
        selfKeys: keys,
        days: 3650,
        ca: {},
        keyUsage: KU.keyCertSign | KU.cRLSign,
      }));
      await save(files.caCert, files.caKey, root);
      rootIsNew = true;
    }
    const rootPair = root;
    const issuedByRoot = (c: Certificate) => c.issuer === rootPair.cert.subject;

    let server = await load(files.serverCert, files.serverKey);
    const covers = (c: Certificate) =>
      hosts.every((h) => isIp(h) ? c.ipAddresses.includes(h) : c.dnsNames.includes(h));
    if (
      !server || rootIsNew || !issuedByRoot(server.cert) || !fresh(server.cert) ||
      !covers(server.cert)
    ) {
      server = await make("ecdsa-p256", () => ({
        subject: new x509.Name("CN=devcloud,O=AosCore on Deno devcloud"),
        issuer: rootPair,
        days: 825,
        keyUsage: KU.digitalSignature,
        extendedKeyUsage: [EKU_SERVER],
        san: hosts.map((h) => ({ type: isIp(h) ? "ip" as const : "dns" as const, value: h })),
      }));
      await save(files.serverCert, files.serverKey, server, [rootPair.cert]);
    }

    let signingCa = await load(files.signingCaCert, files.signingCaKey);
    let signer = await load(files.signerCert, files.signerKey);
    if (
      !signingCa || !signer || rootIsNew || !issuedByRoot(signingCa.cert) ||
      !fresh(signingCa.cert) || !fresh(signer.cert) ||
      signer.cert.issuer !== signingCa.cert.subject
    ) {
      signingCa = await make("rsa-2048", () => ({
        subject: new x509.Name("CN=Aos devcloud Signing CA,O=AosCore on Deno devcloud"),
        issuer: rootPair,
        days: 1825,
        ca: { pathLength: 0 },
        keyUsage: KU.keyCertSign | KU.cRLSign,
      }));
      const ca = signingCa;
      signer = await make("rsa-2048", () => ({
        subject: new x509.Name("CN=Aos devcloud Blob Signer,O=AosCore on Deno devcloud"),
        issuer: ca,
        days: 730,
        keyUsage: KU.digitalSignature,
        extendedKeyUsage: ["1.3.6.1.5.5.7.3.3"],
      }));
      await save(files.signingCaCert, files.signingCaKey, signingCa);
      await save(files.signerCert, files.signerKey, signer, [signingCa.cert]);
    }
    return new DevPki(files, { root: rootPair, server, signingCa, signer }, clock);
  }

  /** The root CA certificate. */
  get root(): Certificate {
    return this.#root.cert;
  }

  /** PEM of the root CA (the unit's `caCert`). */
  get rootPem(): string {
    return this.#root.cert.pem;
  }

  /** The server's certificate chain (PEM, leaf first) and key (PEM). */
  async serverCredentials(): Promise<{ cert: string; key: string }> {
    return {
      cert: this.#server.cert.pem + this.#root.cert.pem,
      key: await exportPrivateKeyPem(this.#server.keys.privateKey),
    };
  }

  /** The blob signer certificate. */
  get signer(): Certificate {
    return this.#signer.cert;
  }

  /**
   * `certificates` and `certificateChains` for a desired status: the signer and its
   * intermediate, fingerprints being the uppercase hex SHA-256 of the DER.
   */
  signingTrust(): { certificates: CloudCertificate[]; chains: CloudCertificateChain[] } {
    const entry = (c: Certificate): CloudCertificate => ({
      certificate: toBase64(c.der),
      fingerprint: c.fingerprintSha256.toUpperCase(),
    });
    const certificates = [entry(this.#signer.cert), entry(this.#signingCa.cert)];
    return {
      certificates,
      chains: [{ name: SIGNING_CHAIN_NAME, fingerprints: certificates.map((c) => c.fingerprint) }],
    };
  }

  /** Signs a (decrypted) blob with the signer key: base64 RSA PKCS#1 v1.5 over SHA-256. */
  sign(blob: Uint8Array | ReadableStream<Uint8Array>): Promise<string> {
    return signBlob(blob, this.#signer.keys, "sha256");
  }

  /**
   * Signs a unit CSR (from IAM `CreateKey`) for cert type `type` with the root CA. Subject,
   * DNS names and extended key usages are the ones the CSR asks for; key usage follows the key
   * (RSA: digitalSignature + keyEncipherment, EC: digitalSignature). Returns the chain PEM,
   * leaf then root.
   * @throws AosError invalidArgument for an unreadable CSR, invalidChecksum for a forged one.
   */
  async signCsr(csrPem: string, options: SignCsrOptions): Promise<string> {
    const csr = await parseCsr(csrPem);
    const isRsa = csr.publicKey.algorithm.name.startsWith("RSA");
    const cert = await issue({
      subject: new x509.Name(csr.subject || `CN=${options.type}`),
      publicKey: csr.publicKey,
      issuer: this.#root,
      days: options.days ?? 365,
      keyUsage: isRsa ? KU.digitalSignature | KU.keyEncipherment : KU.digitalSignature,
      extendedKeyUsage: csr.extendedKeyUsage.map((u) => EKU_BY_NAME[u] ?? u),
      san: csr.dnsNames.map((value) => ({ type: "dns" as const, value })),
      ...(options.discoveryUrl ? { ianUrl: options.discoveryUrl } : {}),
      clock: this.#clock,
    });
    return cert.pem + this.#root.cert.pem;
  }

  /**
   * Issues a key and certificate directly (tests, and units without an IAM): a P-256 key,
   * `CN=<commonName>`, EKU clientAuth + serverAuth, SAN `localhost`. Returns PEMs.
   */
  async issueUnitCert(
    commonName: string,
    options: { type?: string; discoveryUrl?: string } = {},
  ): Promise<{ cert: string; key: string }> {
    const keys = await generateKeyPair("ecdsa-p256");
    const cert = await issue({
      subject: new x509.Name(parseName(commonName)),
      publicKey: keys.publicKey,
      issuer: this.#root,
      days: 365,
      keyUsage: KU.digitalSignature,
      extendedKeyUsage: [EKU_CLIENT, EKU_SERVER],
      san: [{ type: "dns", value: "localhost" }],
      ...(options.discoveryUrl ? { ianUrl: options.discoveryUrl } : {}),
      clock: this.#clock,
    });
    return {
      cert: cert.pem + this.#root.cert.pem,
      key: await exportPrivateKeyPem(keys.privateKey),
    };
  }
}

/**
 * A throw-away PKI made with the real `openssl` binary, for TLS and mTLS tests.
 * @module
 */
import { openssl } from "./openssl.ts";
import { join } from "node:path";

/** A certificate and its private key, as PEM file paths. */
export interface CertFiles {
  /** PEM certificate path. */
  cert: string;
  /** PEM private key path (PKCS#8). */
  key: string;
}

/** A certificate authority that can issue more certificates with {@link issueTestCert}. */
export interface TestCa extends CertFiles {
  /** Directory the CA's files live in. */
  dir: string;
  /** Subject common name. */
  name: string;
}

/** The files {@link makeTestPki} produced. */
export interface TestPki {
  /** The directory everything was written to. */
  dir: string;
  /** The root CA every peer trusts (`caCert` of the components). */
  ca: TestCa;
  /** Server cert from `ca`: SAN `localhost` and `127.0.0.1`, EKU serverAuth + clientAuth. */
  server: CertFiles;
  /** Server cert from `ca` whose only SAN is `wrong.invalid` (host name checks must fail). */
  serverWrongName: CertFiles;
  /** Client cert from `ca` (SAN `localhost`, EKU serverAuth + clientAuth like the Aos certs). */
  client: CertFiles;
  /** Client cert signed by its own key. */
  selfSignedClient: CertFiles;
  /** A second, unrelated CA. */
  otherCa: TestCa;
  /** Client cert from `otherCa`. */
  otherCaClient: CertFiles;
  /** Client cert from `ca` whose validity ended in 2020. */
  expiredClient: CertFiles;
}

/** Options of {@link issueTestCert}. */
export interface IssueOptions {
  /** Subject common name. */
  commonName: string;
  /** Subject alternative names, e.g. `["DNS:localhost", "IP:127.0.0.1"]` (default: none). */
  san?: string[];
  /** Extended key usages (default `serverAuth`, `clientAuth`). */
  extendedKeyUsage?: string[];
  /** Validity in days from now (default 365). */
  days?: number;
  /** Fixed validity instead of `days`, as `YYYYMMDDHHMMSSZ` (uses `openssl ca`). */
  validity?: { notBefore: string; notAfter: string };
}

/** openssl in `cwd` (where the PKI's relative file names live). */
async function opensslIn(args: string[], cwd: string): Promise<void> {
  await openssl(args, { cwd });
}

function fileName(commonName: string): string {
  return commonName.toLowerCase().replace(/[^a-z0-9]+/g, "_");
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f; // keep it positive
  return "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function newKey(path: string, cwd: string): Promise<void> {
  await opensslIn(
    ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path],
    cwd,
  );
}

/** Creates a self-signed root CA (EC P-256) in `dir`. */
export async function makeTestCa(dir: string, name: string): Promise<TestCa> {
  const base = join(dir, fileName(name));
  const key = `${base}.key`;
  const cert = `${base}.crt`;
  await newKey(key, dir);
  await opensslIn([
    "req",
    "-x509",
    "-new",
    "-key",
    key,
    "-out",
    cert,
    "-days",
    "3650",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-addext",
    "subjectKeyIdentifier=hash",
  ], dir);
  return { dir, name, cert, key };
}

function extensions(options: IssueOptions, issuedByCa: boolean): string {
  const eku = options.extendedKeyUsage ?? ["serverAuth", "clientAuth"];
  return [
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature, keyAgreement",
    `extendedKeyUsage = ${eku.join(", ")}`,
    "subjectKeyIdentifier = hash",
    ...(issuedByCa ? ["authorityKeyIdentifier = keyid"] : []),
    ...(options.san?.length ? [`subjectAltName = ${options.san.join(", ")}`] : []),
  ].join("\n") + "\n";
}

/**
 * Issues a leaf certificate (EC P-256 key) from `ca`, or a self-signed one when `ca` is
 * `undefined`; files go to `dir` and are named after the common name.
 */
export async function issueTestCert(
  dir: string,
  ca: TestCa | undefined,
  options: IssueOptions,
): Promise<CertFiles> {
  const base = join(dir, fileName(options.commonName));
  const key = `${base}.key`;
  const cert = `${base}.crt`;
  const csr = `${base}.csr`;
  const ext = `${base}.ext`;
  await newKey(key, dir);
  await Deno.writeTextFile(ext, "[v3]\n" + extensions(options, ca !== undefined));
  const days = String(options.days ?? 365);
  if (!ca) {
    await opensslIn([
      "req",
      "-x509",
      "-new",
      "-key",
      key,
      "-out",
      cert,
      "-days",
      days,
      "-subj",
      `/CN=${options.commonName}`,
      "-config",
      ext,
      "-extensions",
      "v3",
      "-set_serial",
      randomSerial(),
    ], dir);
    return { cert, key };
  }
  await opensslIn(
    ["req", "-new", "-key", key, "-subj", `/CN=${options.commonName}`, "-out", csr],
    dir,
  );
  if (options.validity) {
    await signWithOpensslCa(dir, ca, csr, cert, ext, options.validity);
  } else {
    await opensslIn([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-set_serial",
      randomSerial(),
      "-days",
      days,
      "-extfile",
      ext,
      "-extensions",
      "v3",
      "-out",
      cert,
    ], dir);
  }
  return { cert, key };
}

// `openssl x509` (3.0) cannot set arbitrary dates; `openssl ca` can, given a minimal database.
async function signWithOpensslCa(
  dir: string,
  ca: TestCa,
  csr: string,
  cert: string,
  ext: string,
  validity: { notBefore: string; notAfter: string },
): Promise<void> {
  const caDir = await Deno.makeTempDir({ dir, prefix: "openssl_ca_" });
  const config = join(caDir, "ca.cnf");
  await Deno.writeTextFile(join(caDir, "index.txt"), "");
  await Deno.writeTextFile(join(caDir, "serial"), randomSerial().slice(2) + "\n");
  await Deno.writeTextFile(
    config,
    [
      "[ca]",
      "default_ca = test_ca",
      "[test_ca]",
      `database = ${join(caDir, "index.txt")}`,
      `new_certs_dir = ${caDir}`,
      `serial = ${join(caDir, "serial")}`,
      "default_md = sha256",
      "policy = policy_any",
      "unique_subject = no",
      "[policy_any]",
      "commonName = supplied",
      "",
    ].join("\n"),
  );
  try {
    await opensslIn([
      "ca",
      "-batch",
      "-notext",
      "-config",
      config,
      "-cert",
      ca.cert,
      "-keyfile",
      ca.key,
      "-in",
      csr,
      "-out",
      cert,
      "-startdate",
      validity.notBefore,
      "-enddate",
      validity.notAfter,
      "-extfile",
      ext,
      "-extensions",
      "v3",
    ], dir);
  } finally {
    await Deno.remove(caDir, { recursive: true });
  }
}

/**
 * Writes a complete test PKI into `dir` (which must exist): a root CA with server and client
 * certs, plus the certs an mTLS server must reject (self-signed, from another CA, expired).
 * Needs `openssl` on PATH and run/read/write permission for `dir`.
 */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const [ca, otherCa] = await Promise.all([
    makeTestCa(dir, "Aos Test Root CA"),
    makeTestCa(dir, "Other Test Root CA"),
  ]);
  const [server, serverWrongName, client, selfSignedClient, otherCaClient, expiredClient] =
    await Promise.all([
      issueTestCert(dir, ca, { commonName: "server", san: ["DNS:localhost", "IP:127.0.0.1"] }),
      issueTestCert(dir, ca, { commonName: "server wrong name", san: ["DNS:wrong.invalid"] }),
      issueTestCert(dir, ca, { commonName: "client", san: ["DNS:localhost"] }),
      issueTestCert(dir, undefined, { commonName: "self signed client", san: ["DNS:localhost"] }),
      issueTestCert(dir, otherCa, { commonName: "other ca client", san: ["DNS:localhost"] }),
      issueTestCert(dir, ca, {
        commonName: "expired client",
        san: ["DNS:localhost"],
        validity: { notBefore: "20200101000000Z", notAfter: "20200102000000Z" },
      }),
    ]);
  return {
    dir,
    ca,
    server,
    serverWrongName,
    client,
    selfSignedClient,
    otherCa,
    otherCaClient,
    expiredClient,
  };
}

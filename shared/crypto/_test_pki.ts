/**
 * Test-only helpers that build PKI material with the real `openssl` CLI in a temp dir.
 * Private to this folder's tests.
 * @module
 */
import { randomBytes as nodeRandomBytes } from "node:crypto";
import { join } from "node:path";
import { openssl } from "../testing/openssl.ts";

export { openssl, opensslOk } from "../testing/openssl.ts";

/** A temp dir removed at dispose. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "aos-crypto-test-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** Key kinds for {@link genKey}. */
export type TestKeyType = "rsa" | "ec" | "ec384";

/** Writes `<name>.key` (PKCS#8 PEM) and returns its path. */
export async function genKey(dir: string, name: string, type: TestKeyType = "ec"): Promise<string> {
  const path = join(dir, `${name}.key`);
  const algArgs = type === "rsa"
    ? ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    : ["-algorithm", "EC", "-pkeyopt", `ec_paramgen_curve:${type === "ec" ? "P-256" : "P-384"}`];
  await openssl(["genpkey", ...algArgs, "-out", path]);
  return path;
}

/** Extension lines for a CA certificate. */
export const CA_EXT = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n" +
  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

/** Extension lines for a leaf certificate. */
export const LEAF_EXT = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

/**
 * Creates a self-signed root CA `<name>.pem` for a new key `<name>.key` or an existing key file
 * (`opts.key`); `opts.sigArgs` are extra `openssl req` signing options (e.g. PSS parameters).
 * Returns the cert path.
 */
export async function makeRoot(
  dir: string,
  name: string,
  subj: string,
  opts: { type?: TestKeyType; days?: number; ext?: string; key?: string; sigArgs?: string[] } = {},
): Promise<string> {
  const key = opts.key ?? await genKey(dir, name, opts.type ?? "ec");
  const cert = join(dir, `${name}.pem`);
  const extFile = join(dir, `${name}.ext`);
  await Deno.writeTextFile(
    extFile,
    "[req]\ndistinguished_name=dn\n[dn]\n[v3]\n" +
      (opts.ext ?? CA_EXT).replace(
        "authorityKeyIdentifier=keyid",
        "authorityKeyIdentifier=keyid:always",
      ),
  );
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    key,
    "-subj",
    subj,
    "-days",
    String(opts.days ?? 30),
    ...(opts.sigArgs ?? []),
    "-config",
    extFile,
    "-extensions",
    "v3",
    "-out",
    cert,
  ]);
  return cert;
}

/**
 * Issues `<name>.pem` from CA `<ca>.pem`/`<ca>.key`, for a new key `<name>.key` or for an
 * existing key file (`opts.key`, e.g. to re-issue a certificate); returns the cert path.
 * `opts.sigArgs` are extra `openssl x509` signing options (e.g. `-sha1`).
 */
export async function issue(
  dir: string,
  name: string,
  subj: string,
  ca: string,
  opts: {
    type?: TestKeyType;
    days?: number;
    ext?: string;
    serial?: string;
    key?: string;
    sigArgs?: string[];
  } = {},
): Promise<string> {
  const key = opts.key ?? await genKey(dir, name, opts.type ?? "ec");
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const extFile = join(dir, `${name}.ext`);
  await Deno.writeTextFile(extFile, opts.ext ?? LEAF_EXT);
  await openssl(["req", "-new", "-key", key, "-subj", subj, "-out", csr]);
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    join(dir, `${ca}.pem`),
    "-CAkey",
    join(dir, `${ca}.key`),
    "-set_serial",
    opts.serial ??
      `0x${
        crypto.getRandomValues(new Uint8Array(8)).reduce((s, b) =>
          s + b.toString(16).padStart(2, "0"), "")
      }`,
    "-days",
    String(opts.days ?? 10),
    "-extfile",
    extFile,
    ...(opts.sigArgs ?? []),
    "-out",
    cert,
  ]);
  return cert;
}

/** Random bytes of any size (WebCrypto caps one call at 64 KiB). */
export function randomBytes(n: number): Uint8Array {
  return new Uint8Array(nodeRandomBytes(n));
}

import assert from "node:assert/strict";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import {
  type Certificate,
  createCertificate,
  formatName,
  parseCertificate,
  parseCertificates,
  parseName,
} from "./certificate.ts";
import { verifyChain } from "./chain.ts";
import { generateKeyPair } from "./keys.ts";
import { bytesEqual, derToPem } from "./pem.ts";
import { issue, makeRoot, openssl, tempDir } from "./_test_pki.ts";

const LEAF_WITH_SAN =
  "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
  "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:cm.local,DNS:main,IP:10.0.0.1\n" +
  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

async function field(cert: string, ...args: string[]): Promise<string> {
  const out = await openssl(["x509", "-in", cert, "-noout", ...args]);
  return out.trim().replace(/^[a-zA-Z]+=/, "");
}

Deno.test("certificate: fields of openssl certificates match openssl's view", async () => {
  await using dir = await tempDir();
  const rootPem = await makeRoot(dir.path, "root", "/CN=Aos Root CA/O=EPAM/C=UA", { type: "rsa" });
  // Serials: high bit set (DER adds a 0x00 sign byte), a leading zero nibble, and a small one.
  for (const serial of ["0x8a01020304050607", "0x0abc", "0x01"]) {
    const leafPem = await issue(dir.path, `leaf${serial}`, "/CN=cm/O=Aos Unit", "root", {
      serial,
      ext: LEAF_WITH_SAN,
    });
    const leaf = parseCertificate(await Deno.readTextFile(leafPem));
    assert.equal(leaf.serial, (await field(leafPem, "-serial")).toLowerCase());
    assert.equal(leaf.subject, await field(leafPem, "-subject", "-nameopt", "sep_comma_plus"));
    assert.equal(leaf.issuer, await field(leafPem, "-issuer", "-nameopt", "sep_comma_plus"));
    assert.equal(leaf.subject, "CN=cm,O=Aos Unit");
    assert.equal(leaf.issuer, "CN=Aos Root CA,O=EPAM,C=UA");
    assert.equal(leaf.notAfter.getTime(), new Date(await field(leafPem, "-enddate")).getTime());
    assert.equal(leaf.notBefore.getTime(), new Date(await field(leafPem, "-startdate")).getTime());
    assert.deepEqual(leaf.dnsNames, ["cm.local", "main"]);
    assert.deepEqual(leaf.ipAddresses, ["10.0.0.1"]);
    assert.deepEqual(leaf.extendedKeyUsage, ["serverAuth", "clientAuth"]);
    assert.deepEqual(leaf.keyUsage, ["digitalSignature", "keyEncipherment"]);
    assert.equal(leaf.isCA, false);
    assert.equal(leaf.publicKeyAlgorithm, "EC");
    assert.equal(
      leaf.fingerprintSha1,
      (await field(leafPem, "-fingerprint", "-sha1")).replace(/^.*=/, "").replaceAll(":", "")
        .toLowerCase(),
    );
  }
  const root = parseCertificate(await Deno.readTextFile(rootPem));
  assert.ok(root.isCA && root.hasBasicConstraints && root.isSelfIssued);
  assert.deepEqual(root.keyUsage, ["keyCertSign", "cRLSign"]);
  assert.equal(root.publicKeyAlgorithm, "RSA");
  assert.equal(root.subjectKeyId, root.authorityKeyId);
});

Deno.test("certificate: DER input, PEM bundles and bad input", async () => {
  await using dir = await tempDir();
  const rootPem = await makeRoot(dir.path, "root", "/CN=Root");
  const leafPem = await issue(dir.path, "leaf", "/CN=Leaf", "root");
  const derFile = join(dir.path, "leaf.der");
  await openssl(["x509", "-in", leafPem, "-outform", "DER", "-out", derFile]);
  const der = await Deno.readFile(derFile);
  const fromDer = parseCertificate(der);
  assert.ok(bytesEqual(fromDer.der, der));
  assert.equal(fromDer.pem, derToPem(der));
  assert.equal(fromDer.pem, await Deno.readTextFile(leafPem));
  const bundle = await Deno.readTextFile(leafPem) + await Deno.readTextFile(rootPem);
  assert.deepEqual(parseCertificates(bundle).map((c) => c.subject), ["CN=Leaf", "CN=Root"]);
  // PEM given as bytes works too.
  assert.equal(parseCertificate(new TextEncoder().encode(bundle)).subject, "CN=Leaf");
  const bad = (e: unknown) => e instanceof AosError && e.code === "invalidArgument";
  assert.throws(() => parseCertificate(der.subarray(0, 100)), bad);
  assert.throws(() => parseCertificate("no pem here"), bad);
});

Deno.test("certificate: truncated, mutated and oversized DER is rejected with invalidArgument", async () => {
  await using dir = await tempDir();
  await makeRoot(dir.path, "root", "/CN=Root");
  const leafPem = await issue(dir.path, "leaf", "/CN=Leaf/O=Aos", "root", { ext: LEAF_WITH_SAN });
  const der = parseCertificate(await Deno.readTextFile(leafPem)).der;
  const bad = (e: unknown) => e instanceof AosError && e.code === "invalidArgument";
  for (let n = 0; n < der.length; n++) {
    assert.throws(() => parseCertificate(der.subarray(0, n)), bad, `truncated to ${n} bytes`);
  }
  // Single-byte mutations: either still a certificate or an invalidArgument, never a crash.
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  let rejected = 0;
  for (let i = 0; i < 1500; i++) {
    const copy = der.slice();
    copy[Math.floor(rand() * copy.length)] = Math.floor(rand() * 256);
    try {
      parseCertificate(copy);
    } catch (e) {
      assert.ok(bad(e), `mutation ${i}: ${e}`);
      rejected++;
    }
  }
  assert.ok(rejected > 50, `only ${rejected} mutations rejected`);
  const huge = new Uint8Array(70 * 1024);
  huge.set([0x30, 0x83, 0x01, 0x17, 0xfc]);
  assert.throws(() => parseCertificate(huge), /exceeds the limit/);
});

async function opensslCa(dir: string, name: string, keyArgs: string[], sigArgs: string[] = []) {
  const key = join(dir, `${name}.key`);
  await openssl(["genpkey", ...keyArgs, "-out", key]);
  return await makeRoot(dir, name, `/CN=${name}`, {
    key,
    days: 2,
    sigArgs,
    ext: "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n",
  });
}

Deno.test("certificate: signatures by RSA-PSS, P-521 and Ed25519 issuers verify; IPv6 and IAN", async () => {
  await using dir = await tempDir();
  const roots = {
    pss: await opensslCa(dir.path, "pss", ["-algorithm", "RSA-PSS"]),
    pssSalt: await opensslCa(dir.path, "pssSalt", ["-algorithm", "RSA"], [
      "-sigopt",
      "rsa_padding_mode:pss",
      "-sigopt",
      "rsa_pss_saltlen:32",
      "-sha384",
    ]),
    p521: await opensslCa(dir.path, "p521", [
      "-algorithm",
      "EC",
      "-pkeyopt",
      "ec_paramgen_curve:P-521",
    ]),
    ed: await opensslCa(dir.path, "ed", ["-algorithm", "ED25519"]),
  };
  const ext =
    "basicConstraints=CA:FALSE\nsubjectAltName=IP:::1,IP:2001:db8::1:0:0:1,URI:https://u/\n" +
    "issuerAltName=URI:https://sd.example.com:9443,URI:https://sd2.example.com\n";
  type Pair = { root: Certificate; leaf: Certificate };
  const certs: Record<string, Pair> = Object.fromEntries(
    await Promise.all(
      Object.entries(roots).map(async ([name, path]) => {
        const root = parseCertificate(await Deno.readTextFile(path));
        const leafPem = await issue(dir.path, `${name}-leaf`, "/CN=unit/O=org.example.com", name, {
          ext,
        });
        const pair: Pair = { root, leaf: parseCertificate(await Deno.readTextFile(leafPem)) };
        return [name, pair] as const;
      }),
    ),
  );
  for (const [name, { root, leaf }] of Object.entries(certs)) {
    assert.ok(await root.isSignedBy(root), `${name} root self-signature`);
    assert.ok(await leaf.isSignedBy(root), `${name} leaf signature`);
    assert.deepEqual((await verifyChain(leaf, { roots: [root] })).length, 2);
    const other = certs[name === "ed" ? "pss" : "ed"]!.root;
    assert.ok(!(await leaf.isSignedBy(other)), `${name} leaf verifies with a foreign key`);
  }
  const { root, leaf } = certs.p521!;
  assert.equal(root.publicKeyAlgorithm, "EC");
  assert.equal(certs.ed!.root.publicKeyAlgorithm, "Ed25519");
  assert.equal(certs.pss!.root.publicKeyAlgorithm, "RSA");
  assert.deepEqual(leaf.ipAddresses, ["::1", "2001:db8::1:0:0:1"]);
  assert.deepEqual(leaf.subjectAltNames.map((n) => n.type), ["ip", "ip", "uri"]);
  assert.deepEqual(leaf.issuerAltNames, [
    { type: "uri", value: "https://sd.example.com:9443" },
    { type: "uri", value: "https://sd2.example.com" },
  ]);
  assert.deepEqual(leaf.subjectField("O"), ["org.example.com"]);
  assert.deepEqual(leaf.subjectField("2.5.4.3"), ["unit"]);
  assert.deepEqual(leaf.subjectField("OU"), []);
  // A tampered signature does not verify.
  const tampered = leaf.der.slice();
  tampered[tampered.length - 5]! ^= 1;
  assert.ok(!(await parseCertificate(tampered).isSignedBy(root)));
});

Deno.test("certificate: names with escapes and UTF-8, a 100-year certificate; openssl agrees", async () => {
  await using dir = await tempDir();
  const keys = await generateKeyPair("ecdsa-p256");
  const subject = 'CN=a\\,b\\+c+OU=x y, O=Ünï "Org", C=UA';
  const cert = await createCertificate({
    subject,
    publicKey: keys.publicKey,
    signer: keys,
    notBefore: new Date("2026-01-01T00:00:00Z"),
    notAfter: new Date("2126-01-01T00:00:00Z"),
    serial: "8a01",
  });
  const file = join(dir.path, "c.pem");
  await Deno.writeTextFile(file, cert.pem);
  // DER sorts the attributes of a multi-valued RDN by their encoding.
  assert.equal(cert.subject, 'OU=x y+CN=a\\,b\\+c,O=Ünï \\"Org\\",C=UA');
  assert.equal(formatName(parseName(subject)), cert.subject);
  assert.equal(formatName(parseName("system-id-1")), "CN=system-id-1");
  assert.equal(formatName(parseName("CN=a\\ , O = b ")), "CN=a\\ ,O=b");
  assert.equal(formatName(parseName("cn=\\23x\\C3\\BC")), "CN=\\#xü");
  assert.equal(
    (await field(file, "-subject", "-nameopt", "sep_comma_plus,utf8,esc_2253")).trim(),
    cert.subject,
  );
  assert.equal(await field(file, "-enddate"), "Jan  1 00:00:00 2126 GMT");
  assert.equal(await field(file, "-serial"), "8A01");
  assert.equal(cert.notAfter.toISOString(), "2126-01-01T00:00:00.000Z");
  assert.match(await openssl(["verify", "-CAfile", file, "-attime", "1800000000", file]), /OK/);
  const bad = (e: unknown) => e instanceof AosError && e.code === "invalidArgument";
  assert.throws(() => parseName("XX=1"), bad);
  assert.throws(() => parseName("CN=a\\"), bad);
  assert.throws(() => parseName("CN=#0403616263"), bad);
  await assert.rejects(
    () =>
      createCertificate({ subject: "CN=x", publicKey: keys.publicKey, signer: keys, serial: "zz" }),
    bad,
  );
  await assert.rejects(
    () =>
      createCertificate({
        subject: "CN=x",
        publicKey: keys.publicKey,
        signer: keys,
        dnsNames: ["a b"],
      }),
    bad,
  );
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import { parseCertificate, parseCertificates } from "./certificate.ts";
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

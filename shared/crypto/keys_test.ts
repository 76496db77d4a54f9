import assert from "node:assert/strict";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import { createCertificate, parseCertificate } from "./certificate.ts";
import { createCsr, parseCsr } from "./csr.ts";
import {
  certificateMatchesPrivateKey,
  exportPrivateKeyPem,
  exportPublicKeyPem,
  generateKeyPair,
  importPrivateKey,
  type KeyAlgorithm,
} from "./keys.ts";
import { openssl, opensslOk, tempDir } from "./_test_pki.ts";

const ALGS: KeyAlgorithm[] = ["ecdsa-p256", "ecdsa-p384", "rsa-2048"];

Deno.test("keys: generated keys export to PKCS#8 PEM that openssl accepts, and import back", async () => {
  await using dir = await tempDir();
  for (const alg of ALGS) {
    const keys = await generateKeyPair(alg);
    const pem = await exportPrivateKeyPem(keys.privateKey);
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    const file = join(dir.path, `${alg}.key`);
    await Deno.writeTextFile(file, pem);
    assert.ok(
      await opensslOk(["pkey", "-in", file, "-check", "-noout"]),
      `${alg} key rejected by openssl`,
    );
    // openssl's view of the public key equals ours.
    const pub = await openssl(["pkey", "-in", file, "-pubout"]);
    assert.equal(pub, await exportPublicKeyPem(keys.publicKey));
    const back = await importPrivateKey(pem);
    assert.equal(back.type, keys.type);
    assert.equal(back.curve, keys.curve);
    assert.equal(await exportPrivateKeyPem(back.privateKey), pem);
  }
});

Deno.test("keys: SEC1 and PKCS#1 keys from openssl import; garbage is rejected", async () => {
  await using dir = await tempDir();
  const ec = join(dir.path, "ec.key");
  const rsa = join(dir.path, "rsa.key");
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ec]);
  await openssl(["genrsa", "-traditional", "-out", rsa, "2048"]);
  const ecPem = await Deno.readTextFile(ec);
  const rsaPem = await Deno.readTextFile(rsa);
  assert.match(ecPem, /BEGIN EC PRIVATE KEY/);
  assert.match(rsaPem, /BEGIN RSA PRIVATE KEY/);
  const ecKeys = await importPrivateKey(ecPem);
  assert.equal(ecKeys.type, "ec");
  assert.equal(ecKeys.curve, "P-256");
  const rsaKeys = await importPrivateKey(rsaPem);
  assert.equal(rsaKeys.type, "rsa");
  assert.equal(rsaKeys.modulusLength, 2048);
  // The converted key is the same key: openssl's public key of the file equals ours.
  assert.equal(
    await openssl(["pkey", "-in", ec, "-pubout"]),
    await exportPublicKeyPem(ecKeys.publicKey),
  );
  await assert.rejects(
    () => importPrivateKey("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    (e) => e instanceof AosError && e.code === "invalidArgument",
  );
  const ed = join(dir.path, "ed.key");
  await openssl(["genpkey", "-algorithm", "ED25519", "-out", ed]);
  await assert.rejects(
    async () => importPrivateKey(await Deno.readTextFile(ed)),
    (e) => e instanceof AosError && e.code === "notSupported",
  );
});

Deno.test("csr: openssl verifies our CSRs and shows CN, SANs and EKU", async () => {
  await using dir = await tempDir();
  for (const alg of ALGS) {
    const keys = await generateKeyPair(alg);
    const pem = await createCsr({
      subject: "CN=unit-42,O=Aos Unit",
      keys,
      dnsNames: ["unit-42.local", "node0"],
      extendedKeyUsage: ["clientAuth", "serverAuth"],
    });
    const file = join(dir.path, `${alg}.csr`);
    await Deno.writeTextFile(file, pem);
    assert.ok(
      await opensslOk(["req", "-verify", "-noout", "-in", file]),
      `${alg} CSR does not verify`,
    );
    const text = await openssl(["req", "-text", "-noout", "-in", file]);
    assert.match(text, /Subject: CN = unit-42, O = Aos Unit/);
    assert.match(text, /DNS:unit-42\.local, DNS:node0/);
    assert.match(text, /TLS Web Client Authentication, TLS Web Server Authentication/);
    assert.doesNotMatch(text, /Basic Constraints|X509v3 Key Usage/);
    const info = await parseCsr(pem);
    assert.equal(info.subject, "CN=unit-42,O=Aos Unit");
    assert.deepEqual(info.dnsNames, ["unit-42.local", "node0"]);
    assert.deepEqual(info.extendedKeyUsage, ["clientAuth", "serverAuth"]);
  }
  // A bare subject becomes CN=<subject>, as upstream IAM builds it.
  const keys = await generateKeyPair("ecdsa-p256");
  const file = join(dir.path, "bare.csr");
  await Deno.writeTextFile(file, await createCsr({ subject: "system-id-1", keys }));
  assert.match(
    await openssl(["req", "-noout", "-subject", "-in", file]),
    /subject=CN = system-id-1/,
  );
});

Deno.test("csr: a tampered CSR is rejected by parseCsr", async () => {
  const keys = await generateKeyPair("ecdsa-p256");
  const other = await generateKeyPair("ecdsa-p256");
  const pem = await createCsr({ subject: "CN=a", keys: { ...keys, publicKey: other.publicKey } });
  await assert.rejects(
    () => parseCsr(pem),
    (e) => e instanceof AosError && e.code === "invalidChecksum",
  );
  await assert.rejects(
    () => parseCsr("not a csr"),
    (e) => e instanceof AosError && e.code === "invalidArgument",
  );
});

Deno.test("certificate: issue from a CSR with our CA; openssl verifies it; key matching", async () => {
  await using dir = await tempDir();
  const caKeys = await generateKeyPair("ecdsa-p384");
  const ca = await createCertificate({
    subject: "CN=Dev Root,O=Aos",
    publicKey: caKeys.publicKey,
    signer: caKeys,
    isCA: true,
  });
  const unitKeys = await generateKeyPair("rsa-2048");
  const csr = await parseCsr(
    await createCsr({
      subject: "CN=sm",
      keys: unitKeys,
      dnsNames: ["sm.local"],
      extendedKeyUsage: ["clientAuth"],
    }),
  );
  const leaf = await createCertificate({
    subject: csr.subject,
    publicKey: csr.publicKey,
    signer: caKeys,
    issuer: ca,
    serial: "00ab01",
    dnsNames: csr.dnsNames,
    extendedKeyUsage: csr.extendedKeyUsage,
  });
  await Deno.writeTextFile(join(dir.path, "ca.pem"), ca.pem);
  await Deno.writeTextFile(join(dir.path, "leaf.pem"), leaf.pem);
  assert.match(
    await openssl(["verify", "-CAfile", join(dir.path, "ca.pem"), join(dir.path, "leaf.pem")]),
    /leaf\.pem: OK/,
  );
  assert.equal(leaf.serial, "ab01");
  assert.equal(leaf.issuer, "CN=Dev Root,O=Aos");
  assert.deepEqual(leaf.dnsNames, ["sm.local"]);
  assert.deepEqual(leaf.extendedKeyUsage, ["clientAuth"]);
  assert.ok(ca.isCA && !leaf.isCA);
  assert.ok(await certificateMatchesPrivateKey(leaf, unitKeys.privateKey));
  assert.ok(
    await certificateMatchesPrivateKey(leaf, await exportPrivateKeyPem(unitKeys.privateKey)),
  );
  assert.ok(!(await certificateMatchesPrivateKey(leaf, caKeys.privateKey)));
  assert.ok(await certificateMatchesPrivateKey(ca, caKeys.privateKey));
  assert.ok(
    !(await certificateMatchesPrivateKey(
      parseCertificate(ca.der),
      (await generateKeyPair("ecdsa-p384")).privateKey,
    )),
  );
});

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  createCsr,
  generateKeyPair,
  parseCertificates,
  SignatureError,
  verifyBlobSignature,
  verifyChain,
} from "@aos/shared/crypto";
import { discoveryHintsFromCert } from "../cm/cloud/discovery.ts";
import { DevPki, SIGNING_CHAIN_NAME } from "./pki.ts";

Deno.test("dev PKI: created once, reloaded, files private, server cert covers loopback", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_pki_" });
  try {
    const pki = await DevPki.open(join(dir, "pki"));
    for (const key of [pki.files.caKey, pki.files.serverKey, pki.files.signerKey]) {
      assert.equal((await Deno.stat(key)).mode! & 0o777, 0o600, key);
    }
    const again = await DevPki.open(join(dir, "pki"));
    assert.equal(again.root.fingerprintSha256, pki.root.fingerprintSha256);
    assert.equal(again.signer.fingerprintSha256, pki.signer.fingerprintSha256);

    const [server, ...rest] = parseCertificates((await pki.serverCredentials()).cert);
    assert.ok(server);
    assert.deepEqual(server.dnsNames, ["localhost"]);
    assert.deepEqual(server.ipAddresses, ["127.0.0.1"]);
    assert.deepEqual(server.extendedKeyUsage, ["serverAuth"]);
    await verifyChain(server, { roots: [pki.root], intermediates: rest });

    // A new host re-issues the server certificate only; the root stays.
    const wider = await DevPki.open(join(dir, "pki"), {
      serverHosts: ["localhost", "127.0.0.1", "devcloud.test"],
    });
    assert.equal(wider.root.fingerprintSha256, pki.root.fingerprintSha256);
    const [server2] = parseCertificates((await wider.serverCredentials()).cert);
    assert.deepEqual(server2?.dnsNames, ["localhost", "devcloud.test"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dev PKI: unit CSRs are signed as asked, with the discovery URL as issuer alt name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_pki_" });
  try {
    const pki = await DevPki.open(dir);
    for (const [type, alg] of [["online", "ecdsa-p256"], ["offline", "rsa-2048"]] as const) {
      const keys = await generateKeyPair(alg);
      const csr = await createCsr({
        subject: "CN=unit-1,O=Example",
        keys,
        dnsNames: type === "online" ? [] : ["localhost"],
        extendedKeyUsage: type === "online" ? ["clientAuth"] : [],
      });
      const chain = await pki.signCsr(csr, { type, discoveryUrl: "https://localhost:9000" });
      const [leaf, root] = parseCertificates(chain);
      assert.ok(leaf && root);
      assert.equal(root.fingerprintSha256, pki.root.fingerprintSha256);
      assert.equal(leaf.subject, "CN=unit-1,O=Example");
      assert.deepEqual(leaf.extendedKeyUsage, type === "online" ? ["clientAuth"] : []);
      assert.deepEqual(leaf.dnsNames, type === "online" ? [] : ["localhost"]);
      assert.deepEqual(
        leaf.keyUsage,
        alg === "rsa-2048" ? ["digitalSignature", "keyEncipherment"] : ["digitalSignature"],
      );
      await verifyChain(leaf, { roots: [pki.root] });
      assert.deepEqual(discoveryHintsFromCert(chain).uris, ["https://localhost:9000"]);
    }
    await assert.rejects(pki.signCsr("not a csr", { type: "online" }), /Cannot parse CSR/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dev PKI: blob signatures verify against the desired-status chain and the root", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_pki_" });
  try {
    const pki = await DevPki.open(dir);
    const blob = new TextEncoder().encode("hello blob");
    const value = await pki.sign(blob);
    const trust = pki.signingTrust();
    assert.equal(trust.chains[0]?.name, SIGNING_CHAIN_NAME);
    const info = {
      chainName: SIGNING_CHAIN_NAME,
      alg: "RSA/SHA256",
      value,
      trustedTimestamp: new Date(),
    };
    const chain = await verifyBlobSignature(blob, info, { ...trust, roots: [pki.root] });
    assert.equal(chain.length, 3);
    await assert.rejects(
      verifyBlobSignature(new TextEncoder().encode("hello blub"), info, {
        ...trust,
        roots: [pki.root],
      }),
      (e) => e instanceof SignatureError && e.reason === "tampered",
    );
    const other = await DevPki.open(join(dir, "other"));
    await assert.rejects(
      verifyBlobSignature(blob, info, { ...trust, roots: [other.root] }),
      (e) => e instanceof SignatureError && e.reason === "wrongChain",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { type Certificate, parseCertificate } from "./certificate.ts";
import { importPrivateKey } from "./keys.ts";
import { fromBase64, toBase64 } from "./pem.ts";
import {
  parseSignAlg,
  SignatureError,
  type SignatureFailure,
  type SignatureTrust,
  signBlob,
  type SignInfo,
  verifyBlobSignature,
} from "./signature.ts";
import { CA_EXT, genKey, issue, makeRoot, openssl, randomBytes, tempDir } from "./_test_pki.ts";

async function load(path: string): Promise<Certificate> {
  return parseCertificate(await Deno.readTextFile(path));
}

function entry(cert: Certificate) {
  return { certificate: toBase64(cert.der), fingerprint: cert.fingerprintSha1.toUpperCase() };
}

function failsWith(
  reason: SignatureFailure,
  message: RegExp,
  seen?: Map<SignatureFailure, string>,
) {
  return (e: unknown) => {
    assert.ok(e instanceof SignatureError, `expected SignatureError, got ${e}`);
    assert.equal(e.reason, reason, e.message);
    assert.match(e.message, message);
    seen?.set(reason, e.message);
    return true;
  };
}

async function sign(dir: string, key: string, blob: string): Promise<string> {
  const sig = join(dir, "sig.bin");
  await openssl(["dgst", "-sha256", "-sign", key, "-out", sig, blob]);
  return toBase64(await Deno.readFile(sig));
}

Deno.test({
  name: "signature: alg parsing",
  permissions: "none",
  fn() {
    assert.deepEqual(parseSignAlg("RSA/SHA256"), { key: "RSA", hash: "sha256", padding: "pkcs1" });
    assert.deepEqual(parseSignAlg(undefined), { key: "RSA", hash: "sha256", padding: "pkcs1" });
    assert.deepEqual(parseSignAlg("EC/SHA256"), { key: "EC", hash: "sha256", padding: "pkcs1" });
    assert.deepEqual(parseSignAlg("RSA/SHA512/224/PSS"), {
      key: "RSA",
      hash: "sha512-224",
      padding: "pss",
    });
    assert.deepEqual(parseSignAlg("rsa/sha384/pkcs1v1_5"), {
      key: "RSA",
      hash: "sha384",
      padding: "pkcs1",
    });
    for (const bad of ["DSA/SHA256", "RSA/MD5", "EC/SHA256/PSS"]) {
      assert.throws(
        () => parseSignAlg(bad),
        (e) => e instanceof SignatureError && e.code === "notSupported",
      );
    }
  },
});

Deno.test("signature: openssl-signed blobs verify; tampered, wrong key and wrong chain are distinct", async (t) => {
  await using dir = await tempDir();
  const d = dir.path;
  const root = await load(await makeRoot(d, "root", "/CN=Aos Root"));
  const inter = await load(await issue(d, "inter", "/CN=Aos Signing CA", "root", { ext: CA_EXT }));
  const rsaSigner = await load(
    await issue(d, "rsasigner", "/CN=RSA Signer", "inter", { type: "rsa", days: 2 }),
  );
  const ecSigner = await load(await issue(d, "ecsigner", "/CN=EC Signer", "inter"));
  await makeRoot(d, "other", "/CN=Other Root");
  const otherInter = await load(
    await issue(d, "otherinter", "/CN=Other CA", "other", { ext: CA_EXT }),
  );
  const otherSigner = await load(
    await issue(d, "othersigner", "/CN=Other Signer", "otherinter", { type: "rsa" }),
  );

  const trust: SignatureTrust = {
    certificates: [rsaSigner, ecSigner, inter, otherSigner, otherInter].map(entry),
    chains: [
      // Fingerprints are matched case-insensitively.
      { name: "rsa", fingerprints: [rsaSigner.fingerprintSha1, inter.fingerprintSha1] },
      { name: "ec", fingerprints: [ecSigner.fingerprintSha1.toUpperCase(), inter.fingerprintSha1] },
      { name: "foreign", fingerprints: [otherSigner.fingerprintSha1, otherInter.fingerprintSha1] },
      { name: "broken", fingerprints: ["00112233"] },
    ],
    roots: [root],
  };
  const blob = join(d, "blob");
  await Deno.writeFile(blob, randomBytes(2 * 1024 * 1024 + 3));
  const tamperedBlob = join(d, "tampered");
  const bytes = await Deno.readFile(blob);
  bytes[12345] = bytes[12345]! ^ 0x80;
  await Deno.writeFile(tamperedBlob, bytes);
  const ts = new Date(rsaSigner.notBefore.getTime() + 60_000).toISOString();
  const stream = async (path: string) => (await Deno.open(path)).readable;
  const seen = new Map<SignatureFailure, string>();

  await t.step("RSA/SHA256 and EC/SHA256 signatures from openssl verify (streamed)", async () => {
    const rsaInfo: SignInfo = {
      chainName: "rsa",
      alg: "RSA/SHA256",
      value: await sign(d, join(d, "rsasigner.key"), blob),
      trustedTimestamp: ts,
      ocspValues: [],
    };
    const chain = await verifyBlobSignature(await stream(blob), rsaInfo, trust);
    assert.deepEqual(chain.map((c) => c.subject), [
      "CN=RSA Signer",
      "CN=Aos Signing CA",
      "CN=Aos Root",
    ]);
    const ecInfo = {
      chainName: "ec",
      alg: "EC/SHA256",
      value: await sign(d, join(d, "ecsigner.key"), blob),
      trustedTimestamp: ts,
    };
    assert.equal((await verifyBlobSignature(await stream(blob), ecInfo, trust)).length, 3);
    // Bytes work as well as streams.
    assert.equal((await verifyBlobSignature(await Deno.readFile(blob), ecInfo, trust)).length, 3);
  });

  await t.step("tampered blob", async () => {
    const value = await sign(d, join(d, "rsasigner.key"), blob);
    await assert.rejects(
      async () =>
        verifyBlobSignature(await stream(tamperedBlob), {
          chainName: "rsa",
          alg: "RSA/SHA256",
          value,
          trustedTimestamp: ts,
        }, trust),
      failsWith(
        "tampered",
        /blob does not match the signature \(modified content\) of "CN=RSA Signer"/,
        seen,
      ),
    );
    const ecValue = await sign(d, join(d, "ecsigner.key"), blob);
    await assert.rejects(
      async () =>
        verifyBlobSignature(await stream(tamperedBlob), {
          chainName: "ec",
          alg: "EC/SHA256",
          value: ecValue,
          trustedTimestamp: ts,
        }, trust),
      failsWith("mismatch", /does not verify with the key of "CN=EC Signer"/),
    );
  });

  await t.step("signature made by another key", async () => {
    const stranger = await genKey(d, "stranger", "rsa");
    const value = await sign(d, stranger, blob);
    await assert.rejects(
      async () =>
        verifyBlobSignature(await stream(blob), {
          chainName: "rsa",
          alg: "RSA/SHA256",
          value,
          trustedTimestamp: ts,
        }, trust),
      failsWith("wrongKey", /signature was not made by the key of "CN=RSA Signer"/, seen),
    );
    // An EC signature presented for the RSA signer's chain.
    const ecValue = await sign(d, join(d, "ecsigner.key"), blob);
    await assert.rejects(
      async () =>
        verifyBlobSignature(await stream(blob), {
          chainName: "rsa",
          alg: "EC/SHA256",
          value: ecValue,
          trustedTimestamp: ts,
        }, trust),
      failsWith("wrongKey", /algorithm "EC\/SHA256" does not fit the RSA key of "CN=RSA Signer"/),
    );
    // ECDSA cannot tell another key from modified content.
    const otherEc = await genKey(d, "otherec", "ec");
    await assert.rejects(
      async () =>
        verifyBlobSignature(await stream(blob), {
          chainName: "ec",
          alg: "EC/SHA256",
          value: await sign(d, otherEc, blob),
          trustedTimestamp: ts,
        }, trust),
      failsWith("mismatch", /modified content or another key/),
    );
  });

  await t.step("chain that does not lead to the root CA", async () => {
    const value = await sign(d, join(d, "othersigner.key"), blob);
    await assert.rejects(
      async () =>
        verifyBlobSignature(await stream(blob), {
          chainName: "foreign",
          alg: "RSA/SHA256",
          value,
          trustedTimestamp: ts,
        }, trust),
      failsWith(
        "wrongChain",
        /chain "foreign" is not trusted: .*chain does not end at the root CA/,
        seen,
      ),
    );
    await assert.rejects(
      () =>
        verifyBlobSignature(
          new Uint8Array(1),
          { chainName: "nope", value, trustedTimestamp: ts },
          trust,
        ),
      failsWith("unknownChain", /certificate chain "nope" not found/),
    );
    await assert.rejects(
      () =>
        verifyBlobSignature(
          new Uint8Array(1),
          { chainName: "broken", value, trustedTimestamp: ts },
          trust,
        ),
      failsWith("unknownChain", /certificate "00112233" of chain "broken" not found/),
    );
    // The chain must be valid at trustedTimestamp.
    const late = new Date(rsaSigner.notAfter.getTime() + 86_400_000).toISOString();
    await assert.rejects(
      async () =>
        verifyBlobSignature(await stream(blob), {
          chainName: "rsa",
          value: await sign(d, join(d, "rsasigner.key"), blob),
          trustedTimestamp: late,
        }, trust),
      failsWith("wrongChain", /certificate "CN=RSA Signer" expired at/),
    );
  });

  await t.step("the three failures carry distinct reasons and messages", () => {
    assert.equal(seen.size, 3);
    assert.equal(new Set(seen.values()).size, 3);
  });

  await t.step("signBlob output verifies with openssl and with us", async () => {
    for (
      const [name, chainName, alg] of [["rsasigner", "rsa", "RSA/SHA256"], [
        "ecsigner",
        "ec",
        "EC/SHA256",
      ]] as const
    ) {
      const keyPem = await Deno.readTextFile(join(d, `${name}.key`));
      const value = await signBlob(await stream(blob), await importPrivateKey(keyPem));
      await Deno.writeFile(join(d, "ours.sig"), fromBase64(value));
      await openssl(["pkey", "-in", join(d, `${name}.key`), "-pubout", "-out", join(d, "pub.pem")]);
      assert.match(
        await openssl([
          "dgst",
          "-sha256",
          "-verify",
          join(d, "pub.pem"),
          "-signature",
          join(d, "ours.sig"),
          blob,
        ]),
        /Verified OK/,
      );
      assert.equal(
        (await verifyBlobSignature(await stream(blob), {
          chainName,
          alg,
          value,
          trustedTimestamp: ts,
        }, trust)).length,
        3,
      );
      assert.equal(
        await signBlob(await Deno.readFile(blob), keyPem).then((v) => v.length > 0),
        true,
      );
    }
  });
});

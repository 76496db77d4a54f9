import assert from "node:assert/strict";
import { makeTestPki } from "./mod.ts";

async function opensslOut(args: string[]): Promise<{ ok: boolean; text: string }> {
  const out = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { ok: out.success, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

Deno.test("makeTestPki issues certs that openssl verifies (or rejects) as documented", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aos_pki_test_" });
  try {
    const pki = await makeTestPki(dir);
    const verify = (cert: string, ca = pki.ca.cert) =>
      opensslOut(["verify", "-CAfile", ca, "-purpose", "sslclient", cert]);
    assert.ok((await verify(pki.client.cert)).ok);
    assert.ok((await verify(pki.otherCaClient.cert, pki.otherCa.cert)).ok);
    assert.match((await verify(pki.expiredClient.cert)).text, /expired/);
    assert.equal((await verify(pki.selfSignedClient.cert)).ok, false);
    assert.equal((await verify(pki.otherCaClient.cert)).ok, false);
    const server = await opensslOut([
      "verify",
      "-CAfile",
      pki.ca.cert,
      "-purpose",
      "sslserver",
      "-verify_hostname",
      "localhost",
      "-verify_ip",
      "127.0.0.1",
      pki.server.cert,
    ]);
    assert.ok(server.ok, server.text);
    const wrong = await opensslOut([
      "verify",
      "-CAfile",
      pki.ca.cert,
      "-verify_hostname",
      "localhost",
      pki.serverWrongName.cert,
    ]);
    assert.equal(wrong.ok, false);
    // Keys are PKCS#8 PEM, as grpc-js and WebCrypto importers expect.
    assert.match(await Deno.readTextFile(pki.client.key), /^-----BEGIN PRIVATE KEY-----/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

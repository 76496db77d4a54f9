import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { formatName, parseName } from "./certificate.ts";
import { decodeDer, der, derChildren } from "./der.ts";
import { verifySignature } from "./pkix.ts";

const SHA256_WITH_RSA = "1.2.840.113549.1.1.11";
const ED25519 = "1.3.101.112";

function spkiOf(pub: KeyObject): Uint8Array {
  return new Uint8Array(pub.export({ format: "der", type: "spki" }) as Uint8Array);
}

Deno.test({
  name: "pkix: a signature verifies only with a key of the algorithm's kind",
  permissions: "none",
  async fn() {
    const data = new TextEncoder().encode("to be signed");
    const rsaAlg = decodeDer(der.sequence(der.oid(SHA256_WITH_RSA), der.null()), "alg");
    const edAlg = decodeDer(der.sequence(der.oid(ED25519)), "alg");

    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    assert.ok(
      await verifySignature(
        rsaAlg,
        spkiOf(rsa.publicKey),
        data,
        sign("sha256", data, rsa.privateKey),
      ),
    );
    // A DSA key's valid SHA-256 signature under an RSA algorithm id.
    const dsa = generateKeyPairSync("dsa", { modulusLength: 2048, divisorLength: 256 });
    const dsaSig = sign("sha256", data, dsa.privateKey);
    assert.equal(await verifySignature(rsaAlg, spkiOf(dsa.publicKey), data, dsaSig), false);

    const ed = generateKeyPairSync("ed25519");
    assert.ok(
      await verifySignature(edAlg, spkiOf(ed.publicKey), data, sign(null, data, ed.privateKey)),
    );
    // An Ed448 key's valid signature under the Ed25519 algorithm id.
    const ed448 = generateKeyPairSync("ed448");
    const ed448Sig = sign(null, data, ed448.privateKey);
    assert.equal(await verifySignature(edAlg, spkiOf(ed448.publicKey), data, ed448Sig), false);
  },
});

Deno.test({
  name: "pkix: names escape control characters and edge spaces, and parse back",
  permissions: "none",
  fn() {
    const cases: [string, string][] = [
      ["CN=line\\0Abreak", "line\nbreak"],
      ["CN=\\ ", " "],
      ["CN=\\ a\\ ", " a "],
      ["CN=\\#x", "#x"],
      ["CN=a\\,b", "a,b"],
      ["CN=del\\7F", "del\x7f"],
    ];
    for (const [text, value] of cases) {
      assert.equal(formatName(parseName(text)), text, text);
      assert.deepEqual(parseRdnValue(text), value, text);
    }
    // An escaped backslash before a trailing space: the space is not escaped, so it goes.
    assert.equal(formatName(parseName("CN=a\\\\ ")), "CN=a\\\\");
  },
});

/** The single CN value of a DN text, as stored in the DER. */
function parseRdnValue(text: string): string {
  const der = parseName(text);
  // SEQUENCE { SET { SEQUENCE { OID, value } } }: the value's string is the last TLV.
  const s = decodeDer(der, "name");
  const value = derChildren(derChildren(derChildren(s, "n")[0]!, "rdn")[0]!, "atv")[1]!;
  return new TextDecoder().decode(value.value);
}

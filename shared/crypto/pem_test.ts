import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import {
  bytesEqual,
  derToPem,
  fromBase64,
  fromHex,
  isPem,
  pemToDer,
  splitPem,
  splitPemCertificates,
  toBase64,
  toHex,
} from "./pem.ts";

const invalid = (e: unknown) => e instanceof AosError && e.code === "invalidArgument";

Deno.test({
  name: "pem: base64 and hex round trips, bad input rejected",
  permissions: "none",
  fn() {
    const data = crypto.getRandomValues(new Uint8Array(100));
    assert.ok(bytesEqual(fromBase64(toBase64(data)), data));
    assert.ok(bytesEqual(fromHex(toHex(data)), data));
    assert.equal(toHex(new Uint8Array([0, 255, 16])), "00ff10");
    assert.throws(() => fromBase64("ab$c"), invalid);
    assert.throws(() => fromHex("abc"), invalid);
    assert.throws(() => fromHex("zz"), invalid);
  },
});

Deno.test({
  name: "pem: DER<->PEM and bundle splitting",
  permissions: "none",
  fn() {
    const a = crypto.getRandomValues(new Uint8Array(300));
    const b = crypto.getRandomValues(new Uint8Array(10));
    const pemA = derToPem(a);
    assert.ok(pemA.split("\n").every((l) => l.length <= 64));
    const bundle = `junk\n${pemA}${derToPem(b, "PRIVATE KEY")}text\r\n${derToPem(b)}`;
    assert.equal(splitPem(bundle).length, 3);
    const certs = splitPemCertificates(bundle.replaceAll("\n", "\r\n"));
    assert.equal(certs.length, 2);
    assert.ok(bytesEqual(certs[0]!, a) && bytesEqual(certs[1]!, b));
    assert.ok(bytesEqual(pemToDer(bundle, "PRIVATE KEY"), b));
    assert.throws(() => pemToDer("nothing", "CERTIFICATE"), invalid);
    assert.ok(
      isPem(pemA) && isPem(new TextEncoder().encode(pemA)) && !isPem(new Uint8Array([0x30, 1])),
    );
  },
});

Deno.test({
  name: "pem: unterminated and foreign BEGIN lines are skipped, valid blocks still found",
  permissions: "none",
  fn() {
    const a = crypto.getRandomValues(new Uint8Array(40));
    const good = derToPem(a);
    // Many BEGIN lines without an END (once quadratic for the regex scan), then a real block.
    const junk = "-----BEGIN CERTIFICATE-----\n".repeat(20_000) + "-----BEGIN lower-----\n";
    const blocks = splitPem(junk + good);
    assert.equal(blocks.length, 1);
    assert.ok(bytesEqual(blocks[0]!.der, a));
    // A block whose END names another label is not a block; the next real one is.
    assert.equal(splitPem(`-----BEGIN X-----\nAAAA\n-----END Y-----\n${good}`).length, 1);
    // A dangling BEGIN label (no closing dashes) ends the scan without an error.
    assert.equal(splitPem(`${good}-----BEGIN CERT`).length, 1);
  },
});

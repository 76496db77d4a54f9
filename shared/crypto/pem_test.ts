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

import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { certInfoFromMessage, pathFromCertUrl, tlsFilesFromCertInfo } from "./mod.ts";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AosError);
    return `${e.code}: ${e.message}`;
  }
  return "ok";
}

Deno.test({
  name: "cert URLs: file:// becomes a path; other schemes and bad URLs are refused",
  permissions: "none",
  fn() {
    assert.equal(
      pathFromCertUrl("file:///var/aos/crypt/sm/a%20b.pem", "cert"),
      "/var/aos/crypt/sm/a b.pem",
    );
    assert.match(
      code(() => pathFromCertUrl("pkcs11:token=aos;object=sm", "key")),
      /^notSupported: .*pkcs11:/,
    );
    assert.match(code(() => pathFromCertUrl("http://x/y", "key")), /^notSupported: /);
    assert.match(code(() => pathFromCertUrl("", "key")), /^notFound: IAM sent no key URL/);
    assert.match(code(() => pathFromCertUrl("/plain/path", "key")), /^invalidArgument: /);
    // A remote host in a file URL cannot be read locally.
    assert.match(
      code(() => pathFromCertUrl("file://otherhost/x.pem", "key")),
      /^invalidArgument: /,
    );
  },
});

Deno.test({
  name: "CertInfo: hex-text serial as C++ sends it, raw serial bytes tolerated",
  permissions: "none",
  fn() {
    const base = {
      type: "sm",
      certUrl: "file:///c.pem",
      keyUrl: "file:///k.pem",
      issuer: new Uint8Array([1]),
    };
    const hexText = certInfoFromMessage({ ...base, serial: new TextEncoder().encode("0A1B") });
    assert.deepEqual(hexText, { ...base, serial: "0a1b" });
    assert.equal(
      certInfoFromMessage({ ...base, serial: new Uint8Array([0x0a, 0xff]) }).serial,
      "0aff",
    );
    assert.equal(certInfoFromMessage({ ...base, serial: new Uint8Array() }).serial, "");
    assert.deepEqual(tlsFilesFromCertInfo(hexText, "/ca.pem"), {
      certFile: "/c.pem",
      keyFile: "/k.pem",
      caFile: "/ca.pem",
    });
  },
});

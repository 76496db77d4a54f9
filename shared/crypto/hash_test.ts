import assert from "node:assert/strict";
import { join } from "node:path";
import {
  digestStream,
  hashFileHex,
  hashHex,
  hashingStream,
  hashStreamHex,
  sha256Hex,
  sha3_224Hex,
  sha3_256Hex,
} from "./hash.ts";
import { AosError } from "../core/errors.ts";
import { openssl, randomBytes, tempDir } from "./_test_pki.ts";

Deno.test({
  name: "hash: SHA3-224/SHA3-256/SHA-256 known answers",
  permissions: "none",
  fn() {
    assert.equal(
      sha3_256Hex("abc"),
      "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
    );
    assert.equal(sha3_224Hex("abc"), "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf");
    assert.equal(
      sha256Hex("abc"),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    assert.equal(
      sha3_256Hex(""),
      "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a",
    );
    assert.equal(
      sha3_224Hex(new Uint8Array()),
      "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7",
    );
    assert.throws(
      () => hashHex("md5" as "sha256", "x"),
      (e) => e instanceof AosError && e.code === "notSupported",
    );
  },
});

Deno.test({
  name: "hash: streaming digests equal one-shot digests",
  permissions: "none",
  async fn() {
    const data = randomBytes(65536 * 3 + 17);
    const chunks = [data.subarray(0, 1), data.subarray(1, 70000), data.subarray(70000)];
    assert.equal(await hashStreamHex("sha3-256", ReadableStream.from(chunks)), sha3_256Hex(data));
    assert.equal(
      Array.from(
        await digestStream("sha256", ReadableStream.from(chunks)),
        (b) => b.toString(16).padStart(2, "0"),
      ).join(""),
      sha256Hex(data),
    );
    const h = hashingStream("sha3-224");
    const out: Uint8Array[] = [];
    for await (const c of ReadableStream.from(chunks).pipeThrough(h.stream)) out.push(c);
    assert.equal(await h.hex, sha3_224Hex(data));
    assert.equal(out.reduce((n, c) => n + c.byteLength, 0), data.byteLength);
  },
});

Deno.test("hash: file digests agree with openssl dgst", async () => {
  await using dir = await tempDir();
  const file = join(dir.path, "blob");
  await Deno.writeFile(file, randomBytes(200_000));
  for (const alg of ["sha256", "sha3-256", "sha3-224"] as const) {
    const expected = (await openssl(["dgst", `-${alg}`, "-r", file])).split(" ")[0];
    assert.equal(await hashFileHex(alg, file), expected);
  }
});

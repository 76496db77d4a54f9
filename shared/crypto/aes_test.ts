import assert from "node:assert/strict";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import {
  createDecryptStream,
  decryptBytes,
  decryptParamsFromInfo,
  encryptBytes,
  parseBlockAlg,
} from "./aes.ts";
import { hashingStream, sha256Hex } from "./hash.ts";
import { toBase64, toHex } from "./pem.ts";
import { openssl, randomBytes, tempDir } from "./_test_pki.ts";

const checksum = (e: unknown) => e instanceof AosError && e.code === "invalidChecksum";

Deno.test({
  name: "aes: blockAlg parsing",
  permissions: "none",
  fn() {
    assert.deepEqual(parseBlockAlg("AES256/CBC/pkcs7"), { keyBits: 256, mode: "cbc" });
    assert.deepEqual(parseBlockAlg("AES256/GCM/"), { keyBits: 256, mode: "gcm" });
    assert.deepEqual(parseBlockAlg(undefined), { keyBits: 256, mode: "cbc" });
    assert.deepEqual(parseBlockAlg("aes128"), { keyBits: 128, mode: "cbc" });
    assert.deepEqual(parseBlockAlg("AES192/CBC/PKCS7PADDING"), { keyBits: 192, mode: "cbc" });
    for (
      const bad of [
        "DES/CBC",
        "AES256/CTR/",
        "AES256/CBC/ZERO",
        "AES256/GCM/PKCS7",
        "AES256/CBC/pkcs7/x",
      ]
    ) {
      assert.throws(
        () => parseBlockAlg(bad),
        (e) => e instanceof AosError && e.code === "notSupported",
        bad,
      );
    }
  },
});

Deno.test("aes: openssl AES-256-CBC blob decrypts with our stream (multi-MB), and back", async () => {
  await using dir = await tempDir();
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const plain = randomBytes(5 * 1024 * 1024 + 7);
  const plainFile = join(dir.path, "blob");
  const encFile = join(dir.path, "blob.enc");
  await Deno.writeFile(plainFile, plain);
  await openssl([
    "enc",
    "-aes-256-cbc",
    "-K",
    toHex(key),
    "-iv",
    toHex(iv),
    "-in",
    plainFile,
    "-out",
    encFile,
  ]);

  // File -> decrypt -> hash -> file, all streamed.
  const info = { blockAlg: "AES256/CBC/pkcs7", blockKey: toBase64(key), blockIv: toBase64(iv) };
  const h = hashingStream("sha256");
  const outFile = join(dir.path, "blob.out");
  const src = await Deno.open(encFile);
  const dst = await Deno.open(outFile, { write: true, create: true });
  await src.readable.pipeThrough(createDecryptStream(decryptParamsFromInfo(info))).pipeThrough(
    h.stream,
  ).pipeTo(
    dst.writable,
  );
  assert.equal(await h.hex, sha256Hex(plain));
  assert.equal((await Deno.stat(outFile)).size, plain.byteLength);

  // Ours encrypts what openssl decrypts.
  const ours = await encryptBytes({ alg: "AES256/CBC/pkcs7", key, iv }, plain);
  assert.deepEqual(ours, await Deno.readFile(encFile));
  const back = join(dir.path, "blob.back");
  await Deno.writeFile(join(dir.path, "ours.enc"), ours);
  await openssl([
    "enc",
    "-d",
    "-aes-256-cbc",
    "-K",
    toHex(key),
    "-iv",
    toHex(iv),
    "-in",
    join(dir.path, "ours.enc"),
    "-out",
    back,
  ]);
  assert.equal(sha256Hex(await Deno.readFile(back)), sha256Hex(plain));
});

Deno.test({
  name: "aes: CBC wrong key, wrong IV length, truncation give errors, not garbage",
  permissions: "none",
  async fn() {
    const key = new Uint8Array(32).fill(7);
    const iv = new Uint8Array(16).fill(9);
    const plain = new TextEncoder().encode("layer contents ".repeat(1000));
    const enc = await encryptBytes({ alg: "AES256/CBC/pkcs7", key, iv }, plain);
    assert.deepEqual(await decryptBytes({ alg: "AES256/CBC/pkcs7", key, iv }, enc), plain);
    const wrongKey = new Uint8Array(32).fill(8);
    await assert.rejects(
      () => decryptBytes({ alg: "AES256/CBC/pkcs7", key: wrongKey, iv }, enc),
      (e) => checksum(e) && /bad padding \(wrong key or IV/.test((e as Error).message),
    );
    await assert.rejects(
      () => decryptBytes({ alg: "AES256/CBC/pkcs7", key, iv }, enc.subarray(0, enc.byteLength - 5)),
      (e) => checksum(e) && /not a multiple of the block size/.test((e as Error).message),
    );
    assert.throws(
      () => createDecryptStream({ alg: "AES256/CBC/pkcs7", key: key.subarray(0, 16), iv }),
      (e) =>
        e instanceof AosError && e.code === "invalidArgument" &&
        /key is 16 bytes, expected 32/.test(e.message),
    );
    assert.throws(
      () => createDecryptStream({ alg: "AES256/CBC/pkcs7", key, iv: iv.subarray(0, 12) }),
      (e) => e instanceof AosError && e.code === "invalidArgument",
    );
    assert.throws(
      () => decryptParamsFromInfo({ blockKey: "%%%", blockIv: toBase64(iv) }),
      (e) => e instanceof AosError && e.code === "invalidArgument",
    );
  },
});

Deno.test({
  name: "aes: GCM round trip with the tag at the end or separate; bad tag/key detected",
  permissions: "none",
  async fn() {
    const key = randomBytes(32);
    const iv = randomBytes(12);
    const plain = randomBytes(300_000);
    const alg = "AES256/GCM/";
    // Tag at the end, decrypted from odd-sized chunks (tag split across chunks).
    const enc = await encryptBytes({ alg, key, iv }, plain);
    assert.equal(enc.byteLength, plain.byteLength + 16);
    const chunks = [
      enc.subarray(0, 5),
      enc.subarray(5, enc.byteLength - 9),
      enc.subarray(enc.byteLength - 9),
    ];
    const h = hashingStream("sha256");
    await ReadableStream.from(chunks).pipeThrough(createDecryptStream({ alg, key, iv }))
      .pipeThrough(h.stream)
      .pipeTo(new WritableStream());
    assert.equal(await h.hex, sha256Hex(plain));

    // Separate tag.
    let tag: Uint8Array | undefined;
    const bare = await encryptBytes(
      { alg, key, iv, appendTag: false, onAuthTag: (t) => tag = t },
      plain,
    );
    assert.equal(bare.byteLength, plain.byteLength);
    assert.ok(tag);
    assert.deepEqual(await decryptBytes({ alg, key, iv, authTag: tag }, bare), plain);

    const tampered = enc.slice();
    tampered[1000] = tampered[1000]! ^ 1;
    const tagMismatch = (e: unknown) =>
      checksum(e) && /authentication tag does not match/.test((e as Error).message);
    await assert.rejects(() => decryptBytes({ alg, key, iv }, tampered), tagMismatch);
    await assert.rejects(() => decryptBytes({ alg, key: randomBytes(32), iv }, enc), tagMismatch);
    await assert.rejects(
      () => decryptBytes({ alg, key, iv, authTag: randomBytes(16) }, bare),
      tagMismatch,
    );
    await assert.rejects(
      () => decryptBytes({ alg, key, iv }, enc.subarray(0, 10)),
      (e) =>
        checksum(e) && /shorter than the 16-byte authentication tag/.test((e as Error).message),
    );
    // The stream form reports the error on the readable side too.
    await assert.rejects(
      () =>
        ReadableStream.from([tampered]).pipeThrough(createDecryptStream({ alg, key, iv })).pipeTo(
          new WritableStream(),
        ),
      tagMismatch,
    );
  },
});

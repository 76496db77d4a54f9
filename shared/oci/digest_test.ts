import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { blobRelativePath, isDigest, parseDigest, tryParseDigest } from "./digest.ts";

const H64 = "a".repeat(64);
const H128 = "0123456789abcdef".repeat(8);

Deno.test({
  name: "parseDigest accepts sha256 and sha512 with lowercase hex of the right length",
  permissions: "none",
  fn() {
    assert.deepEqual(parseDigest(`sha256:${H64}`), { algorithm: "sha256", hex: H64 });
    assert.deepEqual(parseDigest(`sha512:${H128}`), { algorithm: "sha512", hex: H128 });
    assert.equal(blobRelativePath(`sha256:${H64}`), `blobs/sha256/${H64}`);
  },
});

Deno.test({
  name: "parseDigest rejects everything else with invalidArgument",
  permissions: "none",
  fn() {
    const bad = [
      "",
      H64,
      `sha256:${H64.slice(1)}`,
      `sha256:${H64}0`,
      `sha256:${"A".repeat(64)}`,
      `sha384:${"a".repeat(96)}`,
      `sha512:${H64}`,
      `md5:${"a".repeat(32)}`,
      `sha256:${"g".repeat(64)}`,
      ` sha256:${H64}`,
      `sha256:${H64}\n`,
      `sha256:../../${"a".repeat(58)}`,
    ];
    for (const d of bad) {
      assert.equal(isDigest(d), false, d);
      assert.equal(tryParseDigest(d), undefined);
      assert.throws(
        () => parseDigest(d),
        (e) =>
          e instanceof AosError && e.code === "invalidArgument" && /Invalid digest/.test(e.message),
      );
    }
  },
});

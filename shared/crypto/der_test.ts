import assert from "node:assert/strict";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import {
  decodeDer,
  der,
  derChildren,
  DerReader,
  MAX_DER_DEPTH,
  MAX_DER_SIZE,
  readBitString,
  readBoolean,
  readIntegerBytes,
  readOid,
  readSmallInt,
  readString,
  readTime,
  TAG,
} from "./der.ts";
import { fromHex, toHex } from "./pem.ts";
import { openssl, tempDir } from "./_test_pki.ts";

const bad = (e: unknown) => e instanceof AosError && e.code === "invalidArgument";
const hex = (h: string) => fromHex(h.replace(/\s+/g, ""));

Deno.test({
  name: "der: encoders and decoders round-trip",
  permissions: "none",
  fn() {
    for (
      const oid of ["1.2.840.113549.1.1.11", "2.5.29.19", "0.9.2342.19200300.100.1.25", "2.999.3"]
    ) {
      assert.equal(readOid(decodeDer(der.oid(oid), "t"), "t"), oid);
    }
    assert.equal(toHex(der.oid("1.2.840.113549")), "06062a864886f70d");
    for (const [n, enc] of [[0, "020100"], [127, "02017f"], [128, "02020080"], [256, "02020100"]]) {
      assert.equal(toHex(der.smallInt(n as number)), enc);
      assert.equal(readSmallInt(decodeDer(hex(enc as string), "t"), "t"), n);
    }
    // Magnitudes: leading zeros dropped, a sign byte added for a high first bit.
    assert.equal(toHex(der.unsignedInt(hex("0000ab01"))), "020300ab01");
    assert.equal(toHex(der.unsignedInt(hex("0abc"))), "02020abc");
    assert.equal(toHex(readIntegerBytes(decodeDer(hex("020300ab01"), "t"), "t")), "00ab01");
    assert.equal(readBoolean(decodeDer(der.boolean(true), "t"), "t"), true);
    assert.equal(readBoolean(decodeDer(der.boolean(false), "t"), "t"), false);
    const bits = readBitString(decodeDer(der.bitString(hex("a0"), 5), "t"), "t");
    assert.deepEqual([toHex(bits.bytes), bits.unusedBits], ["a0", 5]);
    for (const text of ["plain", "ünïcödé ✓"]) {
      assert.equal(readString(decodeDer(der.utf8(text), "t"), "t"), text);
    }
    assert.equal(readString(decodeDer(der.printable("Aos Unit"), "t"), "t"), "Aos Unit");
    assert.equal(readString(decodeDer(hex("1e0400410042"), "t"), "t"), "AB"); // BMPString
    assert.equal(readString(decodeDer(der.null(), "t"), "t"), undefined);
    assert.throws(() => der.printable("a@b"), bad);
    assert.throws(() => der.ia5("é"), bad);
    assert.throws(() => der.oid("1.2.x"), bad);
    assert.throws(() => der.oid("1.40"), bad);
    // Times: UTCTime within 1950..2049, GeneralizedTime outside; whole seconds.
    for (const iso of ["1950-01-01T00:00:00Z", "2049-12-31T23:59:59Z", "2050-01-01T00:00:00Z"]) {
      const enc = der.time(new Date(iso));
      assert.equal(enc[0], iso < "2050" ? TAG.UTC_TIME : TAG.GENERALIZED_TIME);
      assert.equal(readTime(decodeDer(enc, "t"), "t").toISOString(), iso.replace("Z", ".000Z"));
    }
    assert.equal(
      readTime(decodeDer(der.time(new Date("2126-03-04T05:06:07.890Z")), "t"), "t").toISOString(),
      "2126-03-04T05:06:07.000Z",
    );
    assert.equal(
      readTime(decodeDer(hex("180f30303031303130313030303030305a"), "t"), "t").toISOString(),
      "0001-01-01T00:00:00.000Z",
    );
    // SET OF is sorted by encoding.
    assert.equal(toHex(der.setOf(der.smallInt(2), der.smallInt(1))), "3106020101020102");
    // Long lengths.
    const big = der.octetString(new Uint8Array(300));
    assert.equal(toHex(big.subarray(0, 4)), "0482012c");
    assert.equal(decodeDer(big, "t").value.length, 300);
  },
});

Deno.test({
  name: "der: the reader checks tags, order and leftovers",
  permissions: "none",
  fn() {
    const seq = decodeDer(der.sequence(der.smallInt(1), der.boolean(true)), "thing");
    const r = new DerReader(seq, "thing", TAG.SEQUENCE);
    assert.equal(r.optional(TAG.NULL), undefined);
    assert.equal(readSmallInt(r.next(TAG.INTEGER, "n"), "thing"), 1);
    assert.throws(() => r.end(), /Cannot parse thing: unexpected 0x01 after the last field/);
    assert.throws(() => r.next(TAG.INTEGER, "flag"), /flag: expected tag 0x02, found 0x01/);
    r.next(TAG.BOOLEAN, "flag");
    r.end();
    assert.throws(() => r.next(TAG.INTEGER, "more"), /Cannot parse thing: more is missing/);
    assert.throws(() => new DerReader(seq, "thing", TAG.SET), bad);
    assert.throws(() => derChildren(decodeDer(der.smallInt(1), "t"), "t"), /not constructed/);
  },
});

Deno.test({
  name: "der: malformed, truncated and oversized input is rejected with invalidArgument",
  permissions: "none",
  fn() {
    const cases: [string, string, RegExp][] = [
      ["", "empty", /empty input/],
      ["30", "no length", /truncated length/],
      ["3005020101", "content shorter than the length", /needs 5 bytes, 3 left/],
      ["30800201010000", "indefinite length", /indefinite length/],
      ["048103616263", "long form below 128", /non-minimal length/],
      ["04820003616263", "leading zero length byte", /non-minimal length/],
      ["0485010000000000", "five length bytes", /too large/],
      ["1f2a0100", "high tag number", /high tag number/],
      ["020101ff", "trailing bytes", /1 trailing bytes/],
      ["0482ffff00", "length past the end", /needs 65535 bytes/],
    ];
    for (const [h, label, re] of cases) {
      assert.throws(() => decodeDer(hex(h), "thing"), (e) => bad(e) && re.test(String(e)), label);
    }
    const el = (h: string) => decodeDer(hex(h), "t");
    assert.throws(() => readIntegerBytes(el("0200"), "t"), /empty INTEGER/);
    assert.throws(() => readIntegerBytes(el("02020001"), "t"), /non-minimal INTEGER/);
    assert.throws(() => readIntegerBytes(el("0202ff80"), "t"), /non-minimal INTEGER/);
    assert.throws(() => readSmallInt(el("0201ff"), "t"), /negative/);
    assert.throws(() => readSmallInt(el("02050100000000"), "t"), /out of range/);
    assert.throws(() => readBoolean(el("010101"), "t"), /BOOLEAN/);
    assert.throws(() => readBitString(el("0300"), "t"), /unused-bits byte/);
    assert.throws(() => readBitString(el("030208ff"), "t"), /8 unused bits/);
    assert.throws(() => readBitString(el("030101"), "t"), /1 unused bits/);
    assert.throws(() => readBitString(el("030203ff"), "t"), /non-zero unused bits/);
    assert.throws(() => readOid(el("0600"), "t"), /OID of 0 bytes/);
    assert.throws(() => readOid(el("06022a86"), "t"), /truncated OID/);
    assert.throws(() => readOid(el("06032a8001"), "t"), /leading 0x80/);
    assert.throws(() => readOid(el("06092affffffffffffff7f"), "t"), /arc too large/);
    assert.throws(() => readString(el("0c02c328"), "t"), /not valid UTF-8/);
    assert.throws(() => readString(el("1e0100"), "t"), /odd length/);
    for (
      const t of [
        "170d3235303232393030303030305a", // 2025-02-29
        "170d3235303130313234303030305a", // 24:00:00
        "170b323530313031303030305a", // no seconds
        "170d3235303130313030303030302b", // no Z
        "1811323032353031303130303030302e355a", // fractional seconds
        "0c0d3235303130313030303030305a", // not a time type
      ]
    ) {
      assert.throws(() => readTime(el(t), "t"), bad, t);
    }
    // Size and depth bounds.
    assert.throws(
      () => decodeDer(der.octetString(new Uint8Array(MAX_DER_SIZE)), "blob"),
      /Cannot parse blob: \d+ bytes exceeds the limit of 65536/,
    );
    let nested: Uint8Array = der.null();
    for (let i = 0; i <= MAX_DER_DEPTH; i++) nested = der.sequence(nested);
    let node = decodeDer(nested, "deep");
    assert.throws(() => {
      for (;;) node = derChildren(node, "deep")[0]!;
    }, /nesting deeper than 32/);
  },
});

Deno.test("der: openssl asn1parse reads what we encode", async () => {
  await using dir = await tempDir();
  const file = join(dir.path, "x.der");
  await Deno.writeFile(
    file,
    der.sequence(
      der.oid("1.2.840.10045.4.3.2"),
      der.unsignedInt(hex("8a0102")),
      der.time(new Date("2030-01-02T03:04:05Z")),
      der.time(new Date("2126-01-02T03:04:05Z")),
      der.utf8("ünï"),
      der.explicit(3, der.boolean(true)),
      der.bitString(hex("a0"), 5),
    ),
  );
  const out = await openssl(["asn1parse", "-inform", "DER", "-in", file]);
  assert.match(out, /OBJECT\s+:ecdsa-with-SHA256/);
  assert.match(out, /INTEGER\s+:8A0102/);
  assert.match(out, /UTCTIME\s+:300102030405Z/);
  assert.match(out, /GENERALIZEDTIME\s+:21260102030405Z/);
  assert.match(out, /UTF8STRING/);
  assert.match(out, /cont \[ 3 \]/);
  assert.match(out, /BOOLEAN\s+:255/);
  assert.match(out, /BIT STRING/);
});

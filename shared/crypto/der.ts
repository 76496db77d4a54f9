/**
 * A small, strict DER codec: just what X.509 certificates and PKCS#10 requests need.
 *
 * Decoding is bounded (input size, nesting depth) and rejects what DER forbids: indefinite or
 * non-minimal lengths, high tag numbers, trailing bytes, padded integers, non-canonical booleans
 * and bit strings, loose time formats. Every rejection is an `AosError("invalidArgument")`
 * whose message names what was being parsed and where. Elements are views into the input, so
 * a signed part (`bytes`) can be verified exactly as received.
 * @module
 */
import { Buffer } from "node:buffer";
import { toBytes } from "../core/bytes.ts";
import { AosError } from "../core/errors.ts";

/** Largest DER input we decode: certificates and CSRs are a few KiB. */
export const MAX_DER_SIZE = 64 * 1024;

/** Deepest nesting we decode (a certificate needs about 8). */
export const MAX_DER_DEPTH = 32;

/** Identifier octets of the universal types we read or write. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  NUMERIC_STRING: 0x12,
  PRINTABLE_STRING: 0x13,
  TELETEX_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Identifier octet of a context-specific tag `[n]` (n < 31). */
export function contextTag(n: number, constructed: boolean): number {
  if (!Number.isInteger(n) || n < 0 || n > 30) {
    throw new AosError("invalidArgument", `Cannot use context tag [${n}]: only 0..30 supported`);
  }
  return (constructed ? 0xa0 : 0x80) | n;
}

/** One decoded TLV. `bytes` and `value` are views into the decoded input. */
export interface DerElement {
  /** The identifier octet. */
  readonly tag: number;
  /** The whole encoding (tag, length, contents). */
  readonly bytes: Uint8Array;
  /** The contents. */
  readonly value: Uint8Array;
  /** Nesting depth, 0 for the outermost element. */
  readonly depth: number;
}

function fail(what: string, detail: string): never {
  throw new AosError("invalidArgument", `Cannot parse ${what}: ${detail}`);
}

function tagName(tag: number): string {
  return `0x${tag.toString(16).padStart(2, "0")}`;
}

/** Reads the element starting at `offset` of `buf`; `at` is its position in the outer input. */
function readAt(
  buf: Uint8Array,
  offset: number,
  depth: number,
  what: string,
  at: number,
): DerElement {
  if (offset >= buf.length) fail(what, `truncated element at byte ${at}`);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) fail(what, `unsupported high tag number at byte ${at}`);
  if (offset + 1 >= buf.length) fail(what, `truncated length at byte ${at + 1}`);
  const first = buf[offset + 1]!;
  let length: number;
  let header: number;
  if (first < 0x80) {
    length = first;
    header = 2;
  } else if (first === 0x80) {
    fail(what, `indefinite length at byte ${at + 1}`);
  } else {
    const n = first & 0x7f;
    if (n > 4) fail(what, `length of ${n} bytes at byte ${at + 1} is too large`);
    if (offset + 2 + n > buf.length) fail(what, `truncated length at byte ${at + 1}`);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[offset + 2 + i]!;
    // DER: the shortest form, so no leading zero byte and no long form below 128.
    if (buf[offset + 2] === 0 || length < 0x80) {
      fail(what, `non-minimal length at byte ${at + 1}`);
    }
    header = 2 + n;
  }
  const end = offset + header + length;
  if (end > buf.length) {
    fail(what, `element at byte ${at} needs ${length} bytes, ${buf.length - offset - header} left`);
  }
  return {
    tag,
    bytes: buf.subarray(offset, end),
    value: buf.subarray(offset + header, end),
    depth,
  };
}

/**
 * Decodes exactly one element that spans the whole input.
 * @param what what is being parsed, for error messages (`certificate`, `CSR`)
 * @throws AosError invalidArgument for malformed, truncated, trailing or oversize input.
 */
export function decodeDer(input: Uint8Array, what: string, maxSize = MAX_DER_SIZE): DerElement {
  if (input.length === 0) fail(what, "empty input");
  if (input.length > maxSize) fail(what, `${input.length} bytes exceeds the limit of ${maxSize}`);
  const el = readAt(input, 0, 0, what, 0);
  if (el.bytes.length !== input.length) {
    fail(what, `${input.length - el.bytes.length} trailing bytes after the element`);
  }
  return el;
}

/**
 * The elements inside a constructed element, in order.
 * @throws AosError invalidArgument when `el` is primitive, too deep, or its contents malformed.
 */
export function derChildren(el: DerElement, what: string): DerElement[] {
  if ((el.tag & 0x20) === 0) fail(what, `element ${tagName(el.tag)} is not constructed`);
  if (el.depth + 1 > MAX_DER_DEPTH) fail(what, `nesting deeper than ${MAX_DER_DEPTH}`);
  const out: DerElement[] = [];
  const base = el.value.byteOffset;
  let offset = 0;
  while (offset < el.value.length) {
    const child = readAt(el.value, offset, el.depth + 1, what, base + offset);
    out.push(child);
    offset += child.bytes.length;
  }
  return out;
}

/** Reads the fields of a constructed element in order, checking each tag. */
export class DerReader {
  readonly #items: DerElement[];
  readonly #what: string;
  #next = 0;

  /**
   * @param el the constructed element (checked against `tag` when given)
   * @param what what is being parsed, for error messages
   */
  constructor(el: DerElement, what: string, tag?: number) {
    if (tag !== undefined && el.tag !== tag) {
      fail(what, `expected tag ${tagName(tag)}, found ${tagName(el.tag)}`);
    }
    this.#items = derChildren(el, what);
    this.#what = what;
  }

  /** Whether every field has been read. */
  get done(): boolean {
    return this.#next >= this.#items.length;
  }

  /** The tag of the next field, if any. */
  peekTag(): number | undefined {
    return this.#items[this.#next]?.tag;
  }

  /** The next field, which must have `tag`. */
  next(tag: number, field: string): DerElement {
    const el = this.#items[this.#next];
    if (!el) fail(this.#what, `${field} is missing`);
    if (el.tag !== tag) {
      fail(this.#what, `${field}: expected tag ${tagName(tag)}, found ${tagName(el.tag)}`);
    }
    this.#next++;
    return el;
  }

  /** The next field whatever its tag. */
  any(field: string): DerElement {
    const el = this.#items[this.#next];
    if (!el) fail(this.#what, `${field} is missing`);
    this.#next++;
    return el;
  }

  /** The next field if it has `tag`, else `undefined` (nothing consumed). */
  optional(tag: number): DerElement | undefined {
    if (this.peekTag() !== tag) return undefined;
    return this.#items[this.#next++];
  }

  /** Every remaining field. */
  rest(): DerElement[] {
    const out = this.#items.slice(this.#next);
    this.#next = this.#items.length;
    return out;
  }

  /** Asserts that every field has been read. */
  end(): void {
    if (!this.done) {
      fail(this.#what, `unexpected ${tagName(this.#items[this.#next]!.tag)} after the last field`);
    }
  }
}

function expectTag(el: DerElement, tag: number, what: string): void {
  if (el.tag !== tag) fail(what, `expected tag ${tagName(tag)}, found ${tagName(el.tag)}`);
}

/**
 * The contents of an INTEGER (two's complement, big-endian), checked to be minimal.
 */
export function readIntegerBytes(el: DerElement, what: string): Uint8Array {
  expectTag(el, TAG.INTEGER, what);
  const v = el.value;
  if (v.length === 0) fail(what, "empty INTEGER");
  if (v.length > 1 && ((v[0] === 0 && v[1]! < 0x80) || (v[0] === 0xff && v[1]! >= 0x80))) {
    fail(what, "non-minimal INTEGER");
  }
  return v;
}

/** A non-negative INTEGER that fits in 31 bits (versions, path lengths, salt lengths). */
export function readSmallInt(el: DerElement, what: string): number {
  const v = readIntegerBytes(el, what);
  if (v[0]! >= 0x80) fail(what, "negative INTEGER");
  if (v.length > 4 || (v.length === 4 && v[0]! >= 0x80)) fail(what, "INTEGER out of range");
  let n = 0;
  for (const b of v) n = n * 256 + b;
  return n;
}

/** A BOOLEAN (DER: 0x00 or 0xff). */
export function readBoolean(el: DerElement, what: string): boolean {
  expectTag(el, TAG.BOOLEAN, what);
  if (el.value.length !== 1 || (el.value[0] !== 0 && el.value[0] !== 0xff)) {
    fail(what, "BOOLEAN is not 0x00 or 0xff");
  }
  return el.value[0] === 0xff;
}

/** NULL. */
export function readNull(el: DerElement, what: string): void {
  expectTag(el, TAG.NULL, what);
  if (el.value.length !== 0) fail(what, "NULL with contents");
}

/** An OCTET STRING's contents. */
export function readOctetString(el: DerElement, what: string): Uint8Array {
  expectTag(el, TAG.OCTET_STRING, what);
  return el.value;
}

/** A BIT STRING: its bytes and the count of unused (zero) bits in the last byte. */
export interface BitString {
  /** The bytes holding the bits, first bit = most significant bit of byte 0. */
  bytes: Uint8Array;
  /** Unused bits at the end of the last byte (0..7). */
  unusedBits: number;
}

/** A BIT STRING (DER: unused bits 0..7 and zero, none when empty). */
export function readBitString(el: DerElement, what: string): BitString {
  expectTag(el, TAG.BIT_STRING, what);
  const v = el.value;
  if (v.length === 0) fail(what, "BIT STRING without the unused-bits byte");
  const unusedBits = v[0]!;
  if (unusedBits > 7 || (v.length === 1 && unusedBits !== 0)) {
    fail(what, `BIT STRING with ${unusedBits} unused bits`);
  }
  const bytes = v.subarray(1);
  if (unusedBits && (bytes[bytes.length - 1]! & ((1 << unusedBits) - 1)) !== 0) {
    fail(what, "BIT STRING with non-zero unused bits");
  }
  return { bytes, unusedBits };
}

/** Longest OID we accept (bytes of contents). */
const MAX_OID_BYTES = 64;

/** An OBJECT IDENTIFIER in dotted form. */
export function readOid(el: DerElement, what: string): string {
  expectTag(el, TAG.OID, what);
  const v = el.value;
  if (v.length === 0 || v.length > MAX_OID_BYTES) fail(what, `OID of ${v.length} bytes`);
  const arcs: number[] = [];
  let n = 0;
  let bytesInArc = 0;
  for (let i = 0; i < v.length; i++) {
    const b = v[i]!;
    if (bytesInArc === 0 && b === 0x80) fail(what, "OID arc with a leading 0x80 byte");
    // 7 bytes of 7 bits stay below 2^53, so numbers are exact.
    if (++bytesInArc > 7) fail(what, "OID arc too large");
    n = n * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      arcs.push(n);
      n = 0;
      bytesInArc = 0;
    }
  }
  if (bytesInArc !== 0) fail(what, "truncated OID");
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join(".");
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** A UTCTime or GeneralizedTime in the RFC 5280 form (seconds, `Z`, no fractions). */
export function readTime(el: DerElement, what: string): Date {
  const text = String.fromCharCode(...el.value.subarray(0, 32));
  let m: RegExpExecArray | null;
  let year: number;
  if (el.tag === TAG.UTC_TIME) {
    m = UTC_TIME.exec(text);
    if (!m || el.value.length !== 13) fail(what, `malformed UTCTime "${text}"`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (el.tag === TAG.GENERALIZED_TIME) {
    m = GENERALIZED_TIME.exec(text);
    if (!m || el.value.length !== 15) fail(what, `malformed GeneralizedTime "${text}"`);
    year = Number(m[1]);
  } else {
    fail(what, `expected a time, found tag ${tagName(el.tag)}`);
  }
  const [mo, d, h, mi, s] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  // setUTCFullYear, unlike Date.UTC, does not map years 0..99 to 19xx.
  const date = new Date(0);
  date.setUTCFullYear(year, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  // Out-of-range fields roll over; a round trip catches 20250231 and 24:00:00.
  if (
    date.getUTCFullYear() !== year || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d ||
    date.getUTCHours() !== h || date.getUTCMinutes() !== mi || date.getUTCSeconds() !== s
  ) {
    fail(what, `invalid date "${text}"`);
  }
  return date;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The text of a string type (UTF8String, PrintableString, IA5String, BMPString, …), or
 * `undefined` for any other tag.
 */
export function readString(el: DerElement, what: string): string | undefined {
  const v = el.value;
  switch (el.tag) {
    case TAG.UTF8_STRING: {
      let text: string;
      try {
        text = UTF8.decode(v);
      } catch {
        fail(what, "UTF8String is not valid UTF-8");
      }
      return text;
    }
    // Lenient on the character sets: CAs put `@` and `*` in PrintableString.
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.NUMERIC_STRING:
    case TAG.VISIBLE_STRING:
    case TAG.TELETEX_STRING:
      return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("latin1");
    case TAG.BMP_STRING: {
      if (v.length % 2) fail(what, "BMPString of odd length");
      let s = "";
      for (let i = 0; i < v.length; i += 2) s += String.fromCharCode((v[i]! << 8) | v[i + 1]!);
      return s;
    }
    case TAG.UNIVERSAL_STRING: {
      if (v.length % 4) fail(what, "UniversalString length is not a multiple of 4");
      let s = "";
      for (let i = 0; i < v.length; i += 4) {
        const cp = ((v[i]! << 24) | (v[i + 1]! << 16) | (v[i + 2]! << 8) | v[i + 3]!) >>> 0;
        if (cp > 0x10ffff) fail(what, "UniversalString code point out of range");
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// encoding

/** Encoder output: a fresh byte array (usable as a WebCrypto `BufferSource`). */
export type DerBytes = Uint8Array<ArrayBuffer>;

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return [0x80 | out.length, ...out];
}

/** Encodes one TLV. */
export function encodeTlv(tag: number, content: Uint8Array): DerBytes {
  const len = lengthBytes(content.length);
  const out = new Uint8Array(1 + len.length + content.length);
  out[0] = tag;
  out.set(len, 1);
  out.set(content, 1 + len.length);
  return out;
}

function concat(parts: readonly Uint8Array[]): DerBytes {
  // toBytes joins a list into a fresh buffer of its own (never a shared one).
  return toBytes(parts) as DerBytes;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

function encodeFail(detail: string): never {
  throw new AosError("invalidArgument", `Cannot encode DER: ${detail}`);
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** DER encoders; each returns a complete TLV. */
export const der = {
  /** SEQUENCE of already-encoded elements. */
  sequence(...items: Uint8Array[]): DerBytes {
    return encodeTlv(TAG.SEQUENCE, concat(items));
  },
  /** SET OF, sorted by encoding as DER requires. */
  setOf(...items: Uint8Array[]): DerBytes {
    return encodeTlv(TAG.SET, concat([...items].sort(compareBytes)));
  },
  /** INTEGER from a non-negative number. */
  smallInt(n: number): DerBytes {
    if (!Number.isSafeInteger(n) || n < 0) encodeFail(`${n} is not a non-negative integer`);
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    return der.unsignedInt(new Uint8Array(bytes));
  },
  /** INTEGER from big-endian magnitude bytes (leading zeros dropped, sign byte added). */
  unsignedInt(magnitude: Uint8Array): DerBytes {
    let i = 0;
    while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
    const m = magnitude.length ? magnitude.subarray(i) : new Uint8Array([0]);
    return encodeTlv(TAG.INTEGER, m[0]! >= 0x80 ? concat([new Uint8Array([0]), m]) : m);
  },
  /** BOOLEAN. */
  boolean(value: boolean): DerBytes {
    return encodeTlv(TAG.BOOLEAN, new Uint8Array([value ? 0xff : 0]));
  },
  /** NULL. */
  null(): DerBytes {
    return new Uint8Array([TAG.NULL, 0]);
  },
  /** OCTET STRING. */
  octetString(data: Uint8Array): DerBytes {
    return encodeTlv(TAG.OCTET_STRING, data);
  },
  /** BIT STRING of whole bytes, or with `unusedBits` trailing bits (which must be zero). */
  bitString(data: Uint8Array, unusedBits = 0): DerBytes {
    if (unusedBits < 0 || unusedBits > 7 || (unusedBits && data.length === 0)) {
      encodeFail(`BIT STRING with ${unusedBits} unused bits`);
    }
    return encodeTlv(TAG.BIT_STRING, concat([new Uint8Array([unusedBits]), data]));
  },
  /** OBJECT IDENTIFIER from dotted form. */
  oid(dotted: string): DerBytes {
    if (!/^[0-2](\.(0|[1-9]\d{0,14}))+$/.test(dotted)) encodeFail(`"${dotted}" is not an OID`);
    const arcs = dotted.split(".").map(Number);
    const [a, b] = [arcs[0]!, arcs[1]!];
    if (a < 2 && b >= 40) encodeFail(`"${dotted}" is not an OID`);
    const out: number[] = [];
    for (const arc of [a * 40 + b, ...arcs.slice(2)]) {
      if (!Number.isSafeInteger(arc)) encodeFail(`"${dotted}" has an arc too large`);
      const groups: number[] = [];
      for (let v = arc;; v = Math.floor(v / 128)) {
        groups.unshift(v % 128);
        if (v < 128) break;
      }
      groups.forEach((g, i) => out.push(i < groups.length - 1 ? g | 0x80 : g));
    }
    return encodeTlv(TAG.OID, new Uint8Array(out));
  },
  /** UTF8String. */
  utf8(text: string): DerBytes {
    return encodeTlv(TAG.UTF8_STRING, new TextEncoder().encode(text));
  },
  /** PrintableString (checked). */
  printable(text: string): DerBytes {
    if (!PRINTABLE.test(text)) encodeFail(`"${text}" is not a PrintableString`);
    return encodeTlv(TAG.PRINTABLE_STRING, new TextEncoder().encode(text));
  },
  /** IA5String (ASCII, checked). */
  ia5(text: string): DerBytes {
    // deno-lint-ignore no-control-regex
    if (!/^[\x00-\x7f]*$/.test(text)) encodeFail(`"${text}" is not ASCII (IA5String)`);
    return encodeTlv(TAG.IA5_STRING, new TextEncoder().encode(text));
  },
  /** UTCTime for 1950..2049, GeneralizedTime otherwise (RFC 5280); whole seconds, UTC. */
  time(date: Date): DerBytes {
    const t = date.getTime();
    if (!Number.isFinite(t)) encodeFail("invalid date");
    const y = date.getUTCFullYear();
    if (y < 0 || y > 9999) encodeFail(`year ${y} out of range`);
    const p = (n: number, w = 2) => String(n).padStart(w, "0");
    const rest = `${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}` +
      `${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}Z`;
    const enc = new TextEncoder();
    return y >= 1950 && y < 2050
      ? encodeTlv(TAG.UTC_TIME, enc.encode(`${p(y % 100)}${rest}`))
      : encodeTlv(TAG.GENERALIZED_TIME, enc.encode(`${p(y, 4)}${rest}`));
  },
  /** `[n] EXPLICIT`: a constructed context tag around one encoded element. */
  explicit(n: number, inner: Uint8Array): DerBytes {
    return encodeTlv(contextTag(n, true), inner);
  },
  /** `[n] IMPLICIT` primitive: the contents of a primitive type under a context tag. */
  implicit(n: number, content: Uint8Array): DerBytes {
    return encodeTlv(contextTag(n, false), content);
  },
  /** `[n] IMPLICIT` constructed (SET OF / SEQUENCE OF): encoded elements under a context tag. */
  implicitConstructed(n: number, ...items: Uint8Array[]): DerBytes {
    return encodeTlv(contextTag(n, true), concat(items));
  },
};

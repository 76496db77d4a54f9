/**
 * PKIX building blocks shared by certificates and CSRs: distinguished names, general names,
 * extensions, algorithm identifiers, and signing/verifying a DER structure.
 *
 * Signing uses WebCrypto (our keys are `CryptoKey`s). Verifying uses `node:crypto` for RSA
 * (PKCS#1 v1.5 and PSS) and Ed25519, and WebCrypto for ECDSA on P-256/P-384/P-521.
 * @module
 */
import { Buffer } from "node:buffer";
import { constants, createPublicKey, verify as nodeVerify } from "node:crypto";
import { AosError } from "../core/errors.ts";
import {
  contextTag,
  decodeDer,
  der,
  type DerBytes,
  type DerElement,
  DerReader,
  readBitString,
  readBoolean,
  readIntegerBytes,
  readNull,
  readOctetString,
  readOid,
  readSmallInt,
  readString,
  TAG,
} from "./der.ts";
import type { KeyPair } from "./keys.ts";
import { toHex } from "./pem.ts";

/** OIDs we read or write. */
export const OID = {
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsassaPss: "1.2.840.113549.1.1.10",
  mgf1: "1.2.840.113549.1.1.8",
  ecPublicKey: "1.2.840.10045.2.1",
  ed25519: "1.3.101.112",
  ed448: "1.3.101.113",
  extensionRequest: "1.2.840.113549.1.9.14",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  issuerAltName: "2.5.29.18",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
} as const;

// ---------------------------------------------------------------------------------------------
// names

/** Short names of attribute types (the set `formatName` has always printed). */
const NAME_TYPES: [string, string][] = [
  ["CN", "2.5.4.3"],
  ["L", "2.5.4.7"],
  ["ST", "2.5.4.8"],
  ["O", "2.5.4.10"],
  ["OU", "2.5.4.11"],
  ["C", "2.5.4.6"],
  ["DC", "0.9.2342.19200300.100.1.25"],
  ["E", "1.2.840.113549.1.9.1"],
  ["G", "2.5.4.42"],
  ["I", "2.5.4.43"],
  ["SN", "2.5.4.4"],
  ["T", "2.5.4.12"],
];
const NAME_BY_OID = new Map(NAME_TYPES.map(([n, o]) => [o, n]));
const OID_BY_NAME = new Map<string, string>([
  ...NAME_TYPES.map(([n, o]): [string, string] => [n.toUpperCase(), o]),
  ["EMAILADDRESS", "1.2.840.113549.1.9.1"],
  ["GN", "2.5.4.42"],
  ["STREET", "2.5.4.9"],
  ["SERIALNUMBER", "2.5.4.5"],
  ["UID", "0.9.2342.19200300.100.1.1"],
]);
const IA5_TYPES = new Set(["0.9.2342.19200300.100.1.25", "1.2.840.113549.1.9.1"]);
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** One attribute of a distinguished name. */
export interface NameAttribute {
  /** Short name (`CN`, `O`, …) or the dotted OID for other types. */
  type: string;
  /** The attribute type OID. */
  oid: string;
  /** The value; `#<hex of the DER>` when it is not a string type (RFC 4514). */
  value: string;
  /** Whether `value` is the `#hex` form. */
  isHex: boolean;
}

/** The RDNs of a Name, each a list of attributes (usually one), in encoded order. */
export function readName(el: DerElement, what: string): NameAttribute[][] {
  const rdns = new DerReader(el, what, TAG.SEQUENCE).rest();
  return rdns.map((rdn) => {
    const attrs = new DerReader(rdn, what, TAG.SET).rest();
    if (attrs.length === 0) {
      throw new AosError("invalidArgument", `Cannot parse ${what}: empty RDN`);
    }
    return attrs.map((atv) => {
      const r = new DerReader(atv, what, TAG.SEQUENCE);
      const oid = readOid(r.next(TAG.OID, "attribute type"), what);
      const valueEl = r.any("attribute value");
      r.end();
      const text = readString(valueEl, what);
      return {
        type: NAME_BY_OID.get(oid) ?? oid,
        oid,
        value: text ?? `#${toHex(valueEl.bytes)}`,
        isHex: text === undefined,
      };
    });
  });
}

/**
 * RFC 4514 escaping of one value. Control characters become `\XX` hex pairs, so a name read
 * from an untrusted certificate cannot break a log line or an error message apart.
 */
function escapeDnValue(value: string): string {
  const chars = [...value];
  return chars.map((c, i) => {
    if (/[\\,+"<>;=]/.test(c)) return `\\${c}`;
    const code = c.codePointAt(0)!;
    if (code < 0x20 || code === 0x7f) {
      return `\\${code.toString(16).padStart(2, "0").toUpperCase()}`;
    }
    const edge = (i === 0 && (c === "#" || c === " ")) || (i === chars.length - 1 && c === " ");
    return edge ? `\\${c}` : c;
  }).join("");
}

/** Formats parsed RDNs as `CN=x,O=y` (encoded order, `+` inside an RDN, RFC 4514 escaping). */
export function formatRdns(rdns: readonly NameAttribute[][]): string {
  return rdns.map((rdn) =>
    rdn.map((a) => `${a.type}=${a.isHex ? a.value : escapeDnValue(a.value)}`).join("+")
  ).join(",");
}

/** Splits at unescaped `sep` characters, keeping escapes in the pieces. */
function splitUnescaped(text: string, seps: string): { part: string; sep: string }[] {
  const out: { part: string; sep: string }[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\" && i + 1 < text.length) {
      cur += c + text[++i];
    } else if (c === '"') {
      quoted = !quoted;
      cur += c;
    } else if (!quoted && seps.includes(c)) {
      out.push({ part: cur, sep: c });
      cur = "";
    } else {
      cur += c;
    }
  }
  out.push({ part: cur, sep: "" });
  return out;
}

function unescapeValue(raw: string, subject: string): string {
  // Trailing spaces are insignificant unless escaped (`CN=a\\ `).
  let v = raw.trimStart();
  const escapedAt = (end: number) => {
    let n = 0;
    while (end - 1 - n >= 0 && v[end - 1 - n] === "\\") n++;
    return n % 2 === 1; // an odd run of backslashes escapes the character at `end`
  };
  while (v.endsWith(" ") && !escapedAt(v.length - 1)) v = v.slice(0, -1);
  if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
  if (v.startsWith("#")) {
    throw new AosError(
      "invalidArgument",
      `Cannot parse distinguished name "${subject}": #hex values are not supported`,
    );
  }
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c !== "\\") {
      const cp = v.codePointAt(i)!;
      if (cp > 0xffff) i++;
      bytes.push(...enc.encode(String.fromCodePoint(cp)));
      continue;
    }
    const hex = v.slice(i + 1, i + 3);
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (i + 1 < v.length) {
      bytes.push(...enc.encode(v[++i]!));
    } else {
      throw new AosError(
        "invalidArgument",
        `Cannot parse distinguished name "${subject}": dangling backslash`,
      );
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
  } catch (err) {
    throw new AosError(
      "invalidArgument",
      `Cannot parse distinguished name "${subject}": escaped bytes are not UTF-8`,
      { cause: err },
    );
  }
}

function encodeAttributeValue(oid: string, value: string): DerBytes {
  if (IA5_TYPES.has(oid)) return der.ia5(value);
  return PRINTABLE.test(value) ? der.printable(value) : der.utf8(value);
}

/** Longest DN text we parse. */
const MAX_DN_LENGTH = 4096;

/**
 * Encodes a DN given as text (`CN=x,O=y`, also `CN=x, O=y`, `+` for multi-valued RDNs,
 * RFC 4514 escapes) or as a bare common name (no `=`), returning the DER of the Name.
 * Values are PrintableString when they fit, else UTF8String (IA5String for `E` and `DC`).
 * @throws AosError invalidArgument for unknown attribute types or malformed text.
 */
export function encodeName(subject: string): DerBytes {
  if (subject.length > MAX_DN_LENGTH) {
    throw new AosError(
      "invalidArgument",
      `Cannot parse distinguished name: ${subject.length} characters exceeds the limit`,
    );
  }
  if (!subject.includes("=")) {
    return der.sequence(
      der.setOf(der.sequence(der.oid("2.5.4.3"), encodeAttributeValue("2.5.4.3", subject))),
    );
  }
  const rdns: Uint8Array[][] = [[]];
  for (const { part, sep } of splitUnescaped(subject, ",;+")) {
    const eq = part.indexOf("=");
    const rawType = eq < 0 ? "" : part.slice(0, eq).trim();
    const type = rawType.replace(/^oid\./i, "");
    const oid = /^\d+(\.\d+)+$/.test(type) ? type : OID_BY_NAME.get(type.toUpperCase());
    if (!oid) {
      throw new AosError(
        "invalidArgument",
        `Cannot parse distinguished name "${subject}": unknown attribute type "${rawType}"`,
      );
    }
    const value = unescapeValue(part.slice(eq + 1), subject);
    rdns[rdns.length - 1]!.push(der.sequence(der.oid(oid), encodeAttributeValue(oid, value)));
    if (sep === "," || sep === ";") rdns.push([]);
  }
  return der.sequence(...rdns.map((attrs) => der.setOf(...attrs)));
}

// ---------------------------------------------------------------------------------------------
// general names

/** A general name we understand (SAN and IAN entries); other kinds are skipped. */
export interface GeneralName {
  /** `dns`, `ip`, `uri` or `email`. */
  type: "dns" | "ip" | "uri" | "email";
  /** The name; IP addresses in dotted (v4) or compressed (v6) form. */
  value: string;
}

function formatIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952: the longest run (of at least two) of zero groups becomes `::`.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** Reads a GeneralNames extension value (SEQUENCE OF GeneralName). */
export function readGeneralNames(el: DerElement, what: string): GeneralName[] {
  const out: GeneralName[] = [];
  for (const gn of new DerReader(el, what, TAG.SEQUENCE).rest()) {
    const ascii = () => Buffer.from(gn.value).toString("latin1");
    if (gn.tag === contextTag(1, false)) out.push({ type: "email", value: ascii() });
    else if (gn.tag === contextTag(2, false)) out.push({ type: "dns", value: ascii() });
    else if (gn.tag === contextTag(6, false)) out.push({ type: "uri", value: ascii() });
    else if (gn.tag === contextTag(7, false)) {
      if (gn.value.length !== 4 && gn.value.length !== 16) {
        throw new AosError(
          "invalidArgument",
          `Cannot parse ${what}: IP address of ${gn.value.length} bytes`,
        );
      }
      out.push({ type: "ip", value: formatIp(gn.value) });
    }
  }
  return out;
}

/** Encodes DNS names as GeneralNames. */
export function encodeDnsNames(names: readonly string[]): DerBytes {
  return der.sequence(
    ...names.map((n) => {
      if (!/^[\x21-\x7e]+$/.test(n)) {
        throw new AosError("invalidArgument", `Invalid DNS name "${n}": printable ASCII only`);
      }
      return der.implicit(2, new TextEncoder().encode(n));
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// extensions

/** One extension: its criticality and the DER inside the OCTET STRING. */
export interface Extension {
  /** Whether it is marked critical. */
  critical: boolean;
  /** The DER of `extnValue`. */
  value: Uint8Array;
}

/** Reads `Extensions` (SEQUENCE OF Extension) into a map by OID; duplicates are rejected. */
export function readExtensions(el: DerElement, what: string): Map<string, Extension> {
  const out = new Map<string, Extension>();
  for (const ext of new DerReader(el, what, TAG.SEQUENCE).rest()) {
    const r = new DerReader(ext, what, TAG.SEQUENCE);
    const oid = readOid(r.next(TAG.OID, "extension id"), what);
    const critEl = r.optional(TAG.BOOLEAN);
    // A DER encoder omits critical=FALSE; some write it anyway, which is harmless.
    const critical = critEl ? readBoolean(critEl, what) : false;
    const value = readOctetString(r.next(TAG.OCTET_STRING, "extension value"), what);
    r.end();
    if (out.has(oid)) {
      throw new AosError("invalidArgument", `Cannot parse ${what}: duplicate extension ${oid}`);
    }
    out.set(oid, { critical, value });
  }
  return out;
}

/** Encodes one Extension. */
export function encodeExtension(oid: string, critical: boolean, value: Uint8Array): DerBytes {
  return der.sequence(
    der.oid(oid),
    ...(critical ? [der.boolean(true)] : []),
    der.octetString(value),
  );
}

/** Reads the bits of a named BIT STRING (key usage): bit 0 is the first. */
export function readNamedBits(el: DerElement, what: string): number[] {
  const { bytes, unusedBits } = readBitString(el, what);
  const total = bytes.length * 8 - unusedBits;
  const out: number[] = [];
  for (let i = 0; i < total; i++) if (bytes[i >> 3]! & (0x80 >> (i & 7))) out.push(i);
  return out;
}

/** Encodes a named BIT STRING with DER's trailing-zero trimming. */
export function encodeNamedBits(bits: readonly number[]): DerBytes {
  const max = Math.max(-1, ...bits);
  const bytes = new Uint8Array(Math.ceil((max + 1) / 8));
  for (const b of bits) bytes[b >> 3]! |= 0x80 >> (b & 7);
  const last = bytes[bytes.length - 1];
  let unused = 0;
  if (last !== undefined) { while (unused < 7 && (last & (1 << unused)) === 0) unused++; }
  return der.bitString(bytes, unused);
}

/** basicConstraints contents (the DER inside the extension). */
export function readBasicConstraints(
  value: Uint8Array,
  what: string,
): { ca: boolean; pathLength: number | undefined } {
  const r = new DerReader(decodeDer(value, what), what, TAG.SEQUENCE);
  const caEl = r.optional(TAG.BOOLEAN);
  const ca = caEl ? readBoolean(caEl, what) : false;
  const plEl = r.optional(TAG.INTEGER);
  r.end();
  return { ca, pathLength: plEl ? readSmallInt(plEl, what) : undefined };
}

/** Extended key usage OIDs by name. */
export const EXTENDED_KEY_USAGE = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  emailProtection: "1.3.6.1.5.5.7.3.4",
  timeStamping: "1.3.6.1.5.5.7.3.8",
  ocspSigning: "1.3.6.1.5.5.7.3.9",
} as const;

/** A known extended key usage name. */
export type ExtendedKeyUsageName = keyof typeof EXTENDED_KEY_USAGE;

/** Maps an EKU name (`clientAuth`) or dotted OID to the OID. */
export function extendedKeyUsageOid(nameOrOid: string): string {
  const oid = (EXTENDED_KEY_USAGE as Record<string, string>)[nameOrOid];
  if (oid) return oid;
  if (/^\d+(\.\d+)+$/.test(nameOrOid)) return nameOrOid;
  throw new AosError("invalidArgument", `Unknown extended key usage "${nameOrOid}"`);
}

/** Encodes extended key usages (names or dotted OIDs). */
export function encodeExtendedKeyUsage(usages: readonly string[]): DerBytes {
  return der.sequence(...usages.map((u) => der.oid(extendedKeyUsageOid(u))));
}

// ---------------------------------------------------------------------------------------------
// keys and algorithms

/** The parts of a SubjectPublicKeyInfo. */
export interface SpkiParts {
  /** Algorithm OID. */
  algorithm: string;
  /** The named curve OID of an EC key. */
  curve?: string;
  /** The subjectPublicKey bits (whole bytes). */
  keyBits: Uint8Array;
}

/** Reads a SubjectPublicKeyInfo. */
export function readSpki(el: DerElement, what: string): SpkiParts {
  const r = new DerReader(el, what, TAG.SEQUENCE);
  const alg = new DerReader(r.next(TAG.SEQUENCE, "public key algorithm"), what);
  const algorithm = readOid(alg.next(TAG.OID, "public key algorithm id"), what);
  const curveEl = alg.optional(TAG.OID);
  alg.rest();
  const { bytes } = readBitString(r.next(TAG.BIT_STRING, "public key"), what);
  r.end();
  return curveEl
    ? { algorithm, curve: readOid(curveEl, what), keyBits: bytes }
    : { algorithm, keyBits: bytes };
}

/** `RSA`, `EC`, `Ed25519`, `Ed448` or the OID of a key algorithm. */
export function keyAlgorithmName(oid: string): string {
  if (oid === OID.rsaEncryption || oid === OID.rsassaPss) return "RSA";
  if (oid === OID.ecPublicKey) return "EC";
  if (oid === OID.ed25519) return "Ed25519";
  if (oid === OID.ed448) return "Ed448";
  return oid;
}

/** Hashes that appear in signature algorithms. */
export type Hash = "sha1" | "sha224" | "sha256" | "sha384" | "sha512";

const HASH_OIDS: Record<string, Hash> = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.4": "sha224",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};

const SIGNATURE_ALGS: Record<string, { hash: Hash | null; kind: "rsa" | "ecdsa" | "eddsa" }> = {
  "1.2.840.113549.1.1.5": { hash: "sha1", kind: "rsa" },
  "1.2.840.113549.1.1.14": { hash: "sha224", kind: "rsa" },
  "1.2.840.113549.1.1.11": { hash: "sha256", kind: "rsa" },
  "1.2.840.113549.1.1.12": { hash: "sha384", kind: "rsa" },
  "1.2.840.113549.1.1.13": { hash: "sha512", kind: "rsa" },
  "1.2.840.10045.4.1": { hash: "sha1", kind: "ecdsa" },
  "1.2.840.10045.4.3.1": { hash: "sha224", kind: "ecdsa" },
  "1.2.840.10045.4.3.2": { hash: "sha256", kind: "ecdsa" },
  "1.2.840.10045.4.3.3": { hash: "sha384", kind: "ecdsa" },
  "1.2.840.10045.4.3.4": { hash: "sha512", kind: "ecdsa" },
  [OID.ed25519]: { hash: null, kind: "eddsa" },
};

interface VerifyParams {
  hash: Hash | null;
  pss?: { saltLength: number };
}

/** The hash of an `[n] EXPLICIT AlgorithmIdentifier` (hash or MGF1 parameters). */
function explicitHash(el: DerElement, what: string): Hash | undefined {
  const alg = new DerReader(new DerReader(el, what).next(TAG.SEQUENCE, "hash"), what);
  return HASH_OIDS[readOid(alg.next(TAG.OID, "hash id"), what)];
}

/** Hash and salt of RSASSA-PSS parameters; `undefined` for what node:crypto cannot check. */
function pssParams(params: DerElement | undefined, what: string): VerifyParams | undefined {
  if (!params) return undefined; // RFC 4055: parameters are required in certificates.
  let hash: Hash | undefined = "sha1";
  let mgfHash: Hash | undefined = "sha1";
  let saltLength = 20;
  const r = new DerReader(params, what, TAG.SEQUENCE);
  const h = r.optional(contextTag(0, true));
  if (h) hash = explicitHash(h, what);
  const m = r.optional(contextTag(1, true));
  if (m) {
    const mr = new DerReader(new DerReader(m, what).next(TAG.SEQUENCE, "mask generation"), what);
    if (readOid(mr.next(TAG.OID, "mask generation id"), what) !== OID.mgf1) return undefined;
    const inner = new DerReader(mr.next(TAG.SEQUENCE, "mgf1 hash"), what);
    mgfHash = HASH_OIDS[readOid(inner.next(TAG.OID, "mgf1 hash id"), what)];
  }
  const s = r.optional(contextTag(2, true));
  if (s) saltLength = readSmallInt(new DerReader(s, what).next(TAG.INTEGER, "salt length"), what);
  const t = r.optional(contextTag(3, true));
  if (t && readSmallInt(new DerReader(t, what).next(TAG.INTEGER, "trailer"), what) !== 1) {
    return undefined;
  }
  r.end();
  // node:crypto uses the message hash for MGF1 too.
  if (!hash || hash !== mgfHash) return undefined;
  return { hash, pss: { saltLength } };
}

/** WebCrypto curve name and coordinate size of the EC curves we verify with. */
const EC_CURVES: Record<string, { name: string; size: number }> = {
  "1.2.840.10045.3.1.7": { name: "P-256", size: 32 },
  "1.3.132.0.34": { name: "P-384", size: 48 },
  "1.3.132.0.35": { name: "P-521", size: 66 },
};

const WEBCRYPTO_HASH: Record<Hash, string | undefined> = {
  sha1: "SHA-1",
  sha224: undefined,
  sha256: "SHA-256",
  sha384: "SHA-384",
  sha512: "SHA-512",
};

/** The DER `Ecdsa-Sig-Value` as WebCrypto's r‖s with `size`-byte halves. */
function ecdsaDerToRaw(signature: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const what = "ECDSA signature";
  const r = new DerReader(decodeDer(signature, what), what, TAG.SEQUENCE);
  const out = new Uint8Array(size * 2);
  for (const half of [0, 1]) {
    let v = readIntegerBytes(r.next(TAG.INTEGER, half ? "s" : "r"), what);
    if (v[0]! >= 0x80) throw new AosError("invalidArgument", `${what}: negative value`);
    if (v[0] === 0 && v.length > 1) v = v.subarray(1);
    if (v.length > size) throw new AosError("invalidArgument", `${what}: value too long`);
    out.set(v, half * size + size - v.length);
  }
  r.end();
  return out;
}

/**
 * ECDSA through WebCrypto: Deno's `node:crypto` cannot verify some curve/hash pairs (P-521
 * with SHA-256 reads as a bad signature), WebCrypto can.
 */
async function verifyEcdsa(
  hash: Hash | null,
  spki: Uint8Array,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const parts = readSpki(decodeDer(spki, "public key"), "public key");
  const curve = EC_CURVES[parts.curve ?? ""];
  const webHash = hash ? WEBCRYPTO_HASH[hash] : undefined;
  if (parts.algorithm !== OID.ecPublicKey || !curve || !webHash) return false;
  const key = await crypto.subtle.importKey(
    "spki",
    new Uint8Array(spki),
    { name: "ECDSA", namedCurve: curve.name },
    false,
    ["verify"],
  );
  return await crypto.subtle.verify(
    { name: "ECDSA", hash: webHash },
    key,
    ecdsaDerToRaw(signature, curve.size),
    new Uint8Array(data),
  );
}

/**
 * The hash of a signature AlgorithmIdentifier (RSASSA-PSS: of its parameters); `null` for
 * EdDSA; `undefined` when the algorithm is unknown or its parameters unreadable.
 */
export function signatureHash(algId: DerElement): Hash | null | undefined {
  try {
    const what = "signature algorithm";
    const r = new DerReader(algId, what, TAG.SEQUENCE);
    const oid = readOid(r.next(TAG.OID, "algorithm id"), what);
    if (oid === OID.rsassaPss) return pssParams(r.rest()[0], what)?.hash;
    return SIGNATURE_ALGS[oid]?.hash;
  } catch {
    return undefined;
  }
}

/**
 * Verifies `signature` over `data` with the SubjectPublicKeyInfo `spki`, using the algorithm
 * of the AlgorithmIdentifier `algId`. Unknown or mismatched algorithms and unusable keys give
 * `false`: the signature does not verify. Neither do SHA-1 signatures (collisions are practical;
 * OpenSSL at Debian's security level and mbedTLS 3's default profile refuse them too).
 */
export async function verifySignature(
  algId: DerElement,
  spki: Uint8Array,
  data: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  try {
    const what = "signature algorithm";
    const r = new DerReader(algId, what, TAG.SEQUENCE);
    const oid = readOid(r.next(TAG.OID, "algorithm id"), what);
    const paramsEl = r.rest()[0];
    let params: VerifyParams | undefined;
    if (oid === OID.rsassaPss) {
      params = pssParams(paramsEl, what);
    } else {
      const alg = SIGNATURE_ALGS[oid];
      if (alg?.kind === "rsa" && paramsEl) readNull(paramsEl, what);
      else if (alg && paramsEl) return false; // ECDSA and EdDSA take no parameters
      if (alg?.kind === "ecdsa") {
        return alg.hash !== "sha1" && await verifyEcdsa(alg.hash, spki, data, signature);
      }
      params = alg ? { hash: alg.hash } : undefined;
    }
    if (!params || params.hash === "sha1") return false;
    const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
    // The key must be of the algorithm's kind: e.g. a DSA key under an RSA OID or an Ed448 key
    // under the Ed25519 OID must not verify.
    const keyTypes = params.hash === null ? ["ed25519"] : ["rsa", "rsa-pss"];
    if (!keyTypes.includes(key.asymmetricKeyType ?? "")) return false;
    const opts = params.pss
      ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: params.pss.saltLength }
      : { key };
    return nodeVerify(params.hash, data, opts, signature);
  } catch {
    return false;
  }
}

/** The AlgorithmIdentifier, WebCrypto parameters and ECDSA-ness of signing with `keys`. */
function signingParams(keys: KeyPair): { algId: DerBytes; params: Algorithm | EcdsaParams } {
  if (keys.type === "rsa") {
    return {
      algId: der.sequence(der.oid("1.2.840.113549.1.1.11"), der.null()),
      params: { name: "RSASSA-PKCS1-v1_5" },
    };
  }
  const [hash, oid] = keys.curve === "P-384"
    ? ["SHA-384", "1.2.840.10045.4.3.3"]
    : keys.curve === "P-521"
    ? ["SHA-512", "1.2.840.10045.4.3.4"]
    : ["SHA-256", "1.2.840.10045.4.3.2"];
  return { algId: der.sequence(der.oid(oid)), params: { name: "ECDSA", hash } as EcdsaParams };
}

/** Converts a WebCrypto ECDSA signature (r‖s) to the DER `Ecdsa-Sig-Value` X.509 carries. */
export function ecdsaRawToDer(raw: Uint8Array): DerBytes {
  if (raw.length === 0 || raw.length % 2) {
    throw new AosError("invalidArgument", `ECDSA signature of ${raw.length} bytes`);
  }
  const half = raw.length / 2;
  return der.sequence(der.unsignedInt(raw.subarray(0, half)), der.unsignedInt(raw.subarray(half)));
}

/**
 * Signs a to-be-signed structure with `keys` (RSA: PKCS#1 v1.5 SHA-256; ECDSA: SHA-256, or
 * SHA-384/512 on P-384/P-521) and returns `SEQUENCE { tbs, algorithm, signature }`.
 */
export async function signStructure(
  keys: KeyPair,
  buildTbs: (algId: DerBytes) => DerBytes,
): Promise<DerBytes> {
  const { algId, params } = signingParams(keys);
  const tbs = buildTbs(algId);
  const sig = new Uint8Array(await crypto.subtle.sign(params, keys.privateKey, tbs));
  const value = keys.type === "ec" ? ecdsaRawToDer(sig) : sig;
  return der.sequence(tbs, algId, der.bitString(value));
}

/** Magnitude hex of an INTEGER (sign padding dropped), e.g. a serial. */
export function integerHex(el: DerElement, what: string): string {
  const v = readIntegerBytes(el, what);
  return toHex(v.length > 1 && v[0] === 0 ? v.subarray(1) : v);
}

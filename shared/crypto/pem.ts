/**
 * PEM, DER, base64 and hex helpers.
 * @module
 */
import { Buffer } from "node:buffer";
import { AosError } from "../core/errors.ts";
import { bytesEqual } from "../core/bytes.ts";

export { bytesEqual };

/** Upper bound on a PEM bundle we parse: certificate chains are kilobytes, never megabytes. */
export const MAX_PEM_SIZE = 1024 * 1024;

const BEGIN = "-----BEGIN ";
const DASHES = "-----";
const LABEL = /^[A-Z0-9 ]+$/;

/**
 * The PEM blocks of `pem` in order: label and body text. A linear scan: a backreferencing regex
 * took quadratic time on BEGIN lines without an END (3 s for 256 KiB of them).
 */
function* pemBlocks(pem: string): Generator<{ label: string; body: string }> {
  // Labels known to have no END marker after a position: never searched past it again.
  const noEndAfter = new Map<string, number>();
  let at = pem.indexOf(BEGIN);
  while (at >= 0) {
    const labelStart = at + BEGIN.length;
    const labelEnd = pem.indexOf(DASHES, labelStart);
    if (labelEnd < 0) return;
    const label = pem.slice(labelStart, labelEnd);
    const bodyStart = labelEnd + DASHES.length;
    let next = labelStart;
    if (LABEL.test(label) && !(bodyStart >= (noEndAfter.get(label) ?? Infinity))) {
      const end = `-----END ${label}-----`;
      const endAt = pem.indexOf(end, bodyStart);
      // Another BEGIN before this END: ours was never terminated, the block starts there.
      const inner = endAt < 0 ? -1 : pem.lastIndexOf(BEGIN, endAt - 1);
      if (inner > at) {
        at = inner;
        continue;
      }
      if (endAt < 0) {
        noEndAfter.set(label, bodyStart);
      } else {
        yield { label, body: pem.slice(bodyStart, endAt) };
        next = endAt + end.length;
      }
    }
    at = pem.indexOf(BEGIN, next);
  }
}

/** One block of a PEM file. */
export interface PemBlock {
  /** The label, e.g. `CERTIFICATE`, `PRIVATE KEY`. */
  label: string;
  /** The decoded body. */
  der: Uint8Array;
}

/** Encodes bytes as standard base64. */
export function toBase64(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
}

/**
 * Decodes standard (or URL-safe) base64; whitespace is ignored.
 * @throws AosError invalidArgument when the text is not base64.
 */
export function fromBase64(text: string, what = "base64 value"): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean) || clean.length % 4 === 1) {
    throw new AosError("invalidArgument", `Cannot decode ${what}: not base64`);
  }
  return new Uint8Array(Buffer.from(clean, "base64"));
}

/** Encodes bytes as lowercase hex. */
export function toHex(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("hex");
}

/**
 * Decodes hex text (either case).
 * @throws AosError invalidArgument when the text is not an even-length hex string.
 */
export function fromHex(text: string, what = "hex value"): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) {
    throw new AosError("invalidArgument", `Cannot decode ${what}: not hex`);
  }
  return new Uint8Array(Buffer.from(text, "hex"));
}

/** Wraps DER in a PEM block with 64-column lines, as OpenSSL writes it. */
export function derToPem(der: Uint8Array, label = "CERTIFICATE"): string {
  const b64 = toBase64(der);
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * Splits a PEM text into its blocks, in order; text between blocks is ignored.
 * @param label keep only blocks with this label
 * @throws AosError invalidArgument for oversize input or a block that is not base64.
 */
export function splitPem(pem: string, label?: string): PemBlock[] {
  if (pem.length > MAX_PEM_SIZE) {
    throw new AosError(
      "invalidArgument",
      `Cannot parse PEM: ${pem.length} bytes exceeds the limit`,
    );
  }
  const blocks: PemBlock[] = [];
  for (const block of pemBlocks(pem)) {
    if (label !== undefined && block.label !== label) continue;
    // Encrypted PEM (Proc-Type headers) is not supported: the headers make the body non-base64.
    blocks.push({ label: block.label, der: fromBase64(block.body, `PEM block "${block.label}"`) });
  }
  return blocks;
}

/**
 * Decodes the first PEM block (with the given label, if any).
 * @throws AosError invalidArgument when there is none.
 */
export function pemToDer(pem: string, label?: string): Uint8Array {
  const block = splitPem(pem, label)[0];
  if (!block) {
    throw new AosError(
      "invalidArgument",
      `Cannot parse PEM: no ${label ? `"${label}" ` : ""}block found`,
    );
  }
  return block.der;
}

/** Splits a PEM bundle into the DER of each `CERTIFICATE` block, in order. */
export function splitPemCertificates(pem: string): Uint8Array[] {
  return splitPem(pem, "CERTIFICATE").map((b) => b.der);
}

/** Whether the bytes look like PEM text rather than DER. */
export function isPem(data: Uint8Array | string): boolean {
  if (typeof data === "string") return data.includes("-----BEGIN ");
  // DER always starts with a SEQUENCE tag (0x30); PEM starts with text.
  return data[0] !== 0x30 &&
    new TextDecoder().decode(data.subarray(0, 4096)).includes("-----BEGIN ");
}

/**
 * Test helper: a tiny ustar writer that produces whatever headers a test asks for, including
 * hostile ones. Not part of the public surface.
 * @module
 */

/** Fields of one crafted header. */
export interface CraftedHeader {
  name: string;
  /** Typeflag character (default "0"). */
  type?: string;
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  prefix?: string;
  /** Overrides the computed checksum (to craft a bad one). */
  checksum?: number;
}

const enc = new TextEncoder();

function putString(h: Uint8Array, off: number, len: number, s: string): void {
  const b = enc.encode(s);
  if (b.length > len) throw new Error(`field too long: ${s}`);
  h.set(b, off);
}

function putOctal(h: Uint8Array, off: number, len: number, v: number): void {
  putString(h, off, len, v.toString(8).padStart(len - 1, "0") + "\0");
}

/** One 512-byte header block. */
export function header(f: CraftedHeader): Uint8Array {
  const h = new Uint8Array(512);
  putString(h, 0, 100, f.name);
  putOctal(h, 100, 8, f.mode ?? 0o644);
  putOctal(h, 108, 8, f.uid ?? 0);
  putOctal(h, 116, 8, f.gid ?? 0);
  putOctal(h, 124, 12, f.size ?? 0);
  putOctal(h, 136, 12, f.mtime ?? 1_600_000_000);
  h.fill(0x20, 148, 156);
  putString(h, 156, 1, f.type ?? "0");
  putString(h, 157, 100, f.linkname ?? "");
  putString(h, 257, 6, "ustar\0");
  putString(h, 263, 2, "00");
  putOctal(h, 329, 8, f.devmajor ?? 0);
  putOctal(h, 337, 8, f.devminor ?? 0);
  putString(h, 345, 155, f.prefix ?? "");
  let sum = 0;
  for (const b of h) sum += b;
  putString(h, 148, 8, (f.checksum ?? sum).toString(8).padStart(6, "0") + "\0 ");
  return h;
}

function padding(size: number): Uint8Array {
  return new Uint8Array((512 - (size % 512)) % 512);
}

/** Header + body + padding. */
export function entry(
  f: CraftedHeader,
  body: Uint8Array | string = new Uint8Array(0),
): Uint8Array[] {
  const b = typeof body === "string" ? enc.encode(body) : body;
  return [header({ ...f, size: f.size ?? b.length }), b, padding(b.length)];
}

/** A PAX extended header (`x`, or `g` for global) with the given records. */
export function pax(records: Record<string, string>, type = "x"): Uint8Array[] {
  let body = "";
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let len = enc.encode(rest).length + 1;
    while (String(len).length + enc.encode(rest).length !== len) len++;
    body += `${len}${rest}`;
  }
  return entry({ name: "PaxHeaders/x", type }, body);
}

/** Concatenates blocks and appends the end-of-archive marker. */
export function tar(...parts: Uint8Array[][]): Uint8Array {
  const all = [...parts.flat(), new Uint8Array(1024)];
  const out = new Uint8Array(all.reduce((n, b) => n + b.length, 0));
  let off = 0;
  for (const b of all) {
    out.set(b, off);
    off += b.length;
  }
  return out;
}

/** gzips bytes with CompressionStream. */
export async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const s = ReadableStream.from([data]).pipeThrough(
    new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** A gzip stream of a huge, highly compressible file entry generated on the fly. */
export function gzipZeroEntryStream(name: string, size: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(1024 * 1024);
  async function* gen() {
    yield header({ name, size });
    for (let left = size; left > 0; left -= chunk.length) {
      yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    }
    yield padding(size);
    yield new Uint8Array(1024);
  }
  return ReadableStream.from(gen()).pipeThrough(
    new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
  );
}

/**
 * A streaming tar reader: ustar, PAX (`x`/`g`) and GNU long name/link (`L`/`K`) headers, with
 * header checksum validation. It never buffers an entry body: bodies are handed out as slices of
 * the incoming chunks.
 * @module
 */
import { AosError } from "../core/errors.ts";

/** Kinds of tar entries the reader hands out. */
export type TarEntryType =
  | "file"
  | "hardlink"
  | "symlink"
  | "charDevice"
  | "blockDevice"
  | "directory"
  | "fifo";

/** One tar entry header, with PAX and GNU extensions applied. */
export interface TarEntry {
  /** Path as written in the archive (not sanitised). */
  path: string;
  /** Entry kind. */
  type: TarEntryType;
  /**
   * Body size in bytes. Only files' bodies mean anything; others (hardlinks from some writers)
   * are skipped, but still count, so callers can bound every byte they are made to read.
   */
  size: number;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  /** Owner uid. */
  uid: number;
  /** Owner gid. */
  gid: number;
  /** Modification time in seconds since the epoch (PAX may give a fraction). */
  mtime: number;
  /** Target of a symlink or hardlink. */
  linkname: string;
  /** Device major number (devices only). */
  devmajor: number;
  /** Device minor number (devices only). */
  devminor: number;
  /** Byte offset of the entry's header in the tar stream (for error messages). */
  offset: number;
}

/** Bounds applied by the reader. */
export interface TarReaderLimits {
  /** Longest path or link name (bytes). */
  maxPathLength: number;
  /** Largest PAX extended header body (bytes). */
  maxPaxSize: number;
  /** Most consecutive metadata headers (`x`, `g`, `L`, `K`) before a real entry. */
  maxMetaHeaders: number;
  /** Most bytes accepted after the end-of-archive marker (zero padding). */
  maxTrailingBytes: number;
}

/** Default reader bounds. */
export const DEFAULT_TAR_READER_LIMITS: TarReaderLimits = {
  maxPathLength: 4096,
  maxPaxSize: 1024 * 1024,
  maxMetaHeaders: 64,
  maxTrailingBytes: 16 * 1024 * 1024,
};

const BLOCK = 512;
const EMPTY = new Uint8Array(0);
const decoder = new TextDecoder();

/** Pulls exact byte counts out of an async sequence of chunks, slicing instead of copying. */
class ByteSource {
  #it: AsyncIterator<Uint8Array>;
  #chunk: Uint8Array = EMPTY;
  #pos = 0;
  #done = false;
  /** Bytes consumed so far. */
  offset = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  async #more(): Promise<boolean> {
    while (!this.#done) {
      const r = await this.#it.next();
      if (r.done) {
        this.#done = true;
        return false;
      }
      if (r.value.byteLength > 0) {
        this.#chunk = r.value;
        this.#pos = 0;
        return true;
      }
    }
    return false;
  }

  /** Exactly `n` bytes, `null` at a clean end of input, an `eof` error when input ends inside. */
  async read(n: number, inside = "a block"): Promise<Uint8Array | null> {
    if (this.#pos === this.#chunk.length && !(await this.#more())) return null;
    const avail = this.#chunk.length - this.#pos;
    if (avail >= n) {
      const out = this.#chunk.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
      this.offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (this.#pos === this.#chunk.length && !(await this.#more())) {
        throw new AosError("eof", `tar stream ends inside ${inside} at offset ${this.offset}`);
      }
      const take = Math.min(n - filled, this.#chunk.length - this.#pos);
      out.set(this.#chunk.subarray(this.#pos, this.#pos + take), filled);
      this.#pos += take;
      this.offset += take;
      filled += take;
    }
    return out;
  }

  /** Yields slices totalling `n` bytes; a slice is valid until the next pull. */
  async *slices(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (this.#pos === this.#chunk.length && !(await this.#more())) {
        throw new AosError("eof", `tar stream ends inside an entry body at offset ${this.offset}`);
      }
      const take = Math.min(left, this.#chunk.length - this.#pos);
      const out = this.#chunk.subarray(this.#pos, this.#pos + take);
      this.#pos += take;
      this.offset += take;
      left -= take;
      yield out;
    }
  }

  /** Skips `n` bytes. */
  async skip(n: number): Promise<void> {
    for await (const _ of this.slices(n)) { /* discard */ }
  }

  /** Reads everything left, failing beyond `limit` bytes; returns whether all of it is zero. */
  async drain(limit: number): Promise<boolean> {
    let zero = true;
    let count = 0;
    for (;;) {
      if (this.#pos === this.#chunk.length && !(await this.#more())) return zero;
      const rest = this.#chunk.subarray(this.#pos);
      count += rest.length;
      if (count > limit) {
        throw new AosError(
          "outOfRange",
          `more than ${limit} bytes after the end-of-archive marker`,
        );
      }
      if (zero && rest.some((b) => b !== 0)) zero = false;
      this.#pos = this.#chunk.length;
      this.offset += rest.length;
    }
  }

  /** Stops the underlying source (cancels a stream). */
  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#it.return?.();
  }
}

function cString(field: Uint8Array): string {
  let end = 0;
  let ascii = true;
  for (; end < field.length; end++) {
    const b = field[end]!;
    if (b === 0) break;
    if (b > 0x7f) ascii = false;
  }
  if (end === 0) return "";
  const bytes = field.subarray(0, end);
  // Header strings are short and nearly always ASCII: no decoder call needed for those.
  return ascii
    ? String.fromCharCode.apply(null, bytes as unknown as number[])
    : decoder.decode(bytes);
}

/** Whether the header carries the POSIX `ustar\0` magic. */
function isPosixUstar(h: Uint8Array): boolean {
  return h[257] === 0x75 && h[258] === 0x73 && h[259] === 0x74 && h[260] === 0x61 &&
    h[261] === 0x72 && h[262] === 0;
}

const NO_ATTRS: ReadonlyMap<string, string> = new Map();

function parseNumber(field: Uint8Array, what: string): number {
  if (field.length > 0 && (field[0]! & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement with the top bit as a marker.
    if (field[0] === 0xff) throw new AosError("invalidArgument", `negative ${what} in tar header`);
    let v = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) {
      v = v * 256 + field[i]!;
      if (!Number.isSafeInteger(v)) {
        throw new AosError("outOfRange", `${what} too large in tar header`);
      }
    }
    return v;
  }
  let i = 0;
  while (i < field.length && (field[i] === 0x20 || field[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < field.length; i++) {
    const c = field[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) {
      throw new AosError("invalidArgument", `invalid octal ${what} in tar header`);
    }
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < field.length; i++) {
    if (field[i] !== 0x20 && field[i] !== 0) {
      throw new AosError("invalidArgument", `invalid octal ${what} in tar header`);
    }
  }
  return digits === 0 ? 0 : v;
}

function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function verifyChecksum(h: Uint8Array): void {
  const stored = parseNumber(h.subarray(148, 156), "checksum");
  // The checksum field itself counts as eight spaces.
  let unsigned = 8 * 0x20;
  for (let i = 0; i < 148; i++) unsigned += h[i]!;
  for (let i = 156; i < BLOCK; i++) unsigned += h[i]!;
  if (stored === unsigned) return;
  // Some old writers summed signed bytes: each byte above 127 then counts 256 less.
  let high = 0;
  for (let i = 0; i < BLOCK; i++) if ((i < 148 || i >= 156) && h[i]! > 127) high++;
  if (stored !== unsigned - 256 * high) {
    throw new AosError(
      "invalidChecksum",
      `tar header checksum mismatch (stored ${stored}, computed ${unsigned})`,
    );
  }
}

/** Parses PAX records `"<len> <key>=<value>\n"`. */
export function parsePaxRecords(body: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break; // some writers pad the body with NULs
    const space = body.indexOf(0x20, pos);
    if (space < 0 || space - pos > 20) {
      throw new AosError("invalidArgument", "malformed PAX record");
    }
    const len = Number(decoder.decode(body.subarray(pos, space)));
    if (!Number.isSafeInteger(len) || len <= space - pos + 1 || pos + len > body.length) {
      throw new AosError("invalidArgument", "malformed PAX record length");
    }
    if (body[pos + len - 1] !== 0x0a) {
      throw new AosError("invalidArgument", "PAX record does not end with a newline");
    }
    const kv = body.subarray(space + 1, pos + len - 1);
    const eq = kv.indexOf(0x3d);
    if (eq < 0) throw new AosError("invalidArgument", "PAX record without '='");
    out.set(decoder.decode(kv.subarray(0, eq)), decoder.decode(kv.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

function paxInt(v: string, key: string): number {
  if (!/^\d{1,16}$/.test(v)) throw new AosError("invalidArgument", `invalid PAX ${key} "${v}"`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new AosError("outOfRange", `PAX ${key} too large`);
  return n;
}

function paxTime(v: string): number {
  if (!/^-?\d{1,16}(\.\d{1,12})?$/.test(v)) {
    throw new AosError("invalidArgument", `invalid PAX mtime "${v}"`);
  }
  return Number(v);
}

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "charDevice",
  "4": "blockDevice",
  "5": "directory",
  "6": "fifo",
};

function pad(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/**
 * Reads tar entries one at a time from a chunk stream. Call {@link next} for the next header,
 * then optionally {@link body} to stream its content; an unread body is skipped by `next`.
 */
export class TarReader {
  #src: ByteSource;
  #limits: TarReaderLimits;
  #global = new Map<string, string>();
  #pending = 0; // body bytes + padding of the current entry not yet consumed
  #bodyLeft = 0;
  #ended = false;

  constructor(source: AsyncIterable<Uint8Array>, limits: Partial<TarReaderLimits> = {}) {
    this.#src = new ByteSource(source);
    this.#limits = { ...DEFAULT_TAR_READER_LIMITS, ...limits };
  }

  /** Bytes of the tar stream consumed so far. */
  get offset(): number {
    return this.#src.offset;
  }

  async #readMeta(size: number, limit: number, what: string): Promise<Uint8Array> {
    if (size > limit) {
      throw new AosError("outOfRange", `${what} of ${size} bytes exceeds the ${limit} byte limit`);
    }
    const body = size === 0 ? EMPTY : await this.#src.read(size);
    if (body === null) throw new AosError("eof", `tar stream ends inside a ${what}`);
    // read() may return a slice of the current chunk: copy what we keep beyond the next pull.
    const copy = body.slice();
    await this.#src.skip(pad(size));
    return copy;
  }

  /** The next entry, or `null` at the end of the archive. */
  async next(): Promise<TarEntry | null> {
    if (this.#ended) return null;
    if (this.#pending > 0) {
      await this.#src.skip(this.#pending);
      this.#pending = 0;
      this.#bodyLeft = 0;
    }
    let pax: Map<string, string> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (let meta = 0;; meta++) {
      if (meta > this.#limits.maxMetaHeaders) {
        throw new AosError(
          "outOfRange",
          `more than ${this.#limits.maxMetaHeaders} metadata headers in a row`,
        );
      }
      const offset = this.#src.offset;
      const h = await this.#src.read(BLOCK);
      if (h === null) {
        // A missing end-of-archive marker is tolerated, as GNU tar does, unless mid-entry.
        if (meta > 0) throw new AosError("eof", "tar stream ends after a metadata header");
        this.#ended = true;
        return null;
      }
      if (isZeroBlock(h)) {
        this.#ended = true;
        // The second zero block and the record padding follow; they must be zero.
        if (!(await this.#src.drain(this.#limits.maxTrailingBytes))) {
          throw new AosError("invalidArgument", "non-zero data after the end-of-archive marker");
        }
        if (meta > 0) {
          throw new AosError("invalidArgument", "end of archive after a metadata header");
        }
        return null;
      }
      verifyChecksum(h);
      const flag = String.fromCharCode(h[156]!);
      const headerSize = parseNumber(h.subarray(124, 136), "size");
      if (flag === "x" || flag === "g") {
        const body = await this.#readMeta(headerSize, this.#limits.maxPaxSize, "PAX header");
        const records = parsePaxRecords(body);
        if (flag === "g") {
          for (const [k, v] of records) v === "" ? this.#global.delete(k) : this.#global.set(k, v);
        } else {
          pax = records;
        }
        continue;
      }
      if (flag === "L" || flag === "K") {
        const body = await this.#readMeta(
          headerSize,
          this.#limits.maxPathLength + 1,
          "GNU long name",
        );
        const name = cString(body);
        if (flag === "L") longName = name;
        else longLink = name;
        continue;
      }
      let type = TYPES[flag];
      if (type === undefined) {
        const shown = /^[\x20-\x7e]$/.test(flag) ? flag : `0x${h[156]!.toString(16)}`;
        throw new AosError(
          "notSupported",
          `unsupported tar entry type '${shown}' at offset ${offset}`,
        );
      }
      let attrs: ReadonlyMap<string, string> = NO_ATTRS;
      if (this.#global.size > 0 || pax !== undefined) {
        const merged = new Map(this.#global);
        for (const [k, v] of pax ?? []) v === "" ? merged.delete(k) : merged.set(k, v);
        attrs = merged;
      }

      // Only POSIX ustar has a prefix field; old GNU headers keep atime/ctime there.
      const prefix = isPosixUstar(h) ? cString(h.subarray(345, 500)) : "";
      const rawName = cString(h.subarray(0, 100));
      const path = attrs.get("path") ?? longName ?? (prefix ? `${prefix}/${rawName}` : rawName);
      const linkname = attrs.get("linkpath") ?? longLink ?? cString(h.subarray(157, 257));
      if (type === "file" && path.endsWith("/") && flag !== "7") type = "directory";
      if (
        path.length > this.#limits.maxPathLength || linkname.length > this.#limits.maxPathLength
      ) {
        throw new AosError(
          "outOfRange",
          `entry path longer than ${this.#limits.maxPathLength} at offset ${offset}`,
        );
      }
      const sizeAttr = attrs.get("size");
      const size = sizeAttr !== undefined ? paxInt(sizeAttr, "size") : headerSize;
      const uidAttr = attrs.get("uid");
      const gidAttr = attrs.get("gid");
      const mtimeAttr = attrs.get("mtime");
      const entry: TarEntry = {
        path,
        type,
        size,
        mode: parseNumber(h.subarray(100, 108), "mode") & 0o7777,
        uid: uidAttr !== undefined
          ? paxInt(uidAttr, "uid")
          : parseNumber(h.subarray(108, 116), "uid"),
        gid: gidAttr !== undefined
          ? paxInt(gidAttr, "gid")
          : parseNumber(h.subarray(116, 124), "gid"),
        mtime: mtimeAttr !== undefined
          ? paxTime(mtimeAttr)
          : parseNumber(h.subarray(136, 148), "mtime"),
        linkname,
        devmajor: type === "charDevice" || type === "blockDevice"
          ? parseNumber(h.subarray(329, 337), "devmajor")
          : 0,
        devminor: type === "charDevice" || type === "blockDevice"
          ? parseNumber(h.subarray(337, 345), "devminor")
          : 0,
        offset,
      };
      this.#bodyLeft = size;
      this.#pending = size + pad(size);
      return entry;
    }
  }

  /**
   * Streams the current entry's body as slices of the incoming chunks. A slice is only valid
   * until the next one is pulled: copy it if you keep it.
   */
  async *body(): AsyncGenerator<Uint8Array> {
    const n = this.#bodyLeft;
    this.#bodyLeft = 0;
    if (n === 0) return;
    for await (const s of this.#src.slices(n)) {
      this.#pending -= s.length;
      yield s;
    }
  }

  /**
   * The current entry's whole body as one array: a view of the incoming chunk when the body lies
   * within it (valid until the next read), else a copy. For small bodies, where one call beats
   * iterating {@link body}; the caller bounds the size.
   */
  async bodyBytes(): Promise<Uint8Array> {
    const n = this.#bodyLeft;
    this.#bodyLeft = 0;
    if (n === 0) return EMPTY;
    const out = await this.#src.read(n, "an entry body");
    if (out === null) {
      throw new AosError("eof", `tar stream ends inside an entry body at offset ${this.offset}`);
    }
    this.#pending -= n;
    return out;
  }

  /** Stops reading and releases the source (cancels the underlying stream). */
  async close(): Promise<void> {
    await this.#src.close();
  }
}

/**
 * Splits log text into size-limited parts, each an independent gzip stream.
 * @module
 */
import { gzipSync } from "fflate";
import { AosError } from "../core/errors.ts";

/** Upstream's part size limit in uncompressed bytes. */
export const DEFAULT_MAX_PART_SIZE = 256 * 1024;
/** Upstream's limit on the number of parts of one log. */
export const DEFAULT_MAX_PART_COUNT = 80;

/** Options of {@link LogArchiver} and {@link archiveLog}. */
export interface LogArchiveOptions {
  /** Largest uncompressed size of one part in bytes (default 262144). */
  maxPartSize?: number;
  /** Most parts of one log (default 80); more is an `outOfRange` error. */
  maxPartCount?: number;
  /** gzip level 0–9 (default 9, as upstream uses best compression). */
  level?: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;
  /** Aborts reading the source. */
  signal?: AbortSignal;
}

/** One part ready for a `LogData`/`pushLog` message. */
export interface LogPart {
  /** 1-based part number. */
  part: number;
  /** Total parts of this log. */
  partsCount: number;
  /** A complete gzip stream (empty for the single part of an empty log). */
  content: Uint8Array;
}

/**
 * The archived log: `ok` with every part, or `empty` with one part without content, which is
 * what upstream sends when nothing was collected (`part 1`, `partsCount 1`, status `empty`).
 */
export interface LogArchive {
  /** `ok` when at least one byte was archived, else `empty`. */
  status: "ok" | "empty";
  /** The parts in order; never empty. */
  parts: LogPart[];
  /** Uncompressed bytes archived. */
  size: number;
}

const NEWLINE = 0x0a;

/**
 * Accumulates log text and closes a part whenever the next line would push its uncompressed
 * size over the limit. Lines longer than a whole part are cut, at a UTF-8 character boundary.
 *
 * Parts are kept until {@link finish} because every message carries the total part count;
 * memory stays bounded by `maxPartCount` compressed parts plus one uncompressed part.
 */
export class LogArchiver {
  readonly #maxPartSize: number;
  readonly #maxPartCount: number;
  readonly #level: NonNullable<LogArchiveOptions["level"]>;
  readonly #encoder = new TextEncoder();
  readonly #parts: Uint8Array[] = [];
  #current: Uint8Array[] = [];
  #currentSize = 0;
  // Start of a line whose newline has not arrived yet.
  #line: Uint8Array[] = [];
  #lineSize = 0;
  #total = 0;
  #finished = false;

  constructor(options: LogArchiveOptions = {}) {
    this.#maxPartSize = options.maxPartSize ?? DEFAULT_MAX_PART_SIZE;
    this.#maxPartCount = options.maxPartCount ?? DEFAULT_MAX_PART_COUNT;
    this.#level = options.level ?? 9;
    if (!Number.isSafeInteger(this.#maxPartSize) || this.#maxPartSize < 4) {
      throw new AosError(
        "invalidArgument",
        `Cannot archive logs: part size ${this.#maxPartSize} is too small`,
      );
    }
    if (!Number.isSafeInteger(this.#maxPartCount) || this.#maxPartCount < 1) {
      throw new AosError(
        "invalidArgument",
        `Cannot archive logs: part count ${this.#maxPartCount} is not positive`,
      );
    }
  }

  /** Uncompressed bytes added so far. */
  get size(): number {
    return this.#total;
  }

  /**
   * Adds text; it need not end at a line boundary (the rest of the line may follow).
   * @throws {AosError} `outOfRange` when the log needs more than `maxPartCount` parts.
   */
  add(text: string | Uint8Array): void {
    if (this.#finished) throw new AosError("wrongState", "Cannot add to a finished log archive");
    const bytes = typeof text === "string" ? this.#encoder.encode(text) : text;
    this.#total += bytes.length;
    let start = 0;
    for (;;) {
      const nl = bytes.indexOf(NEWLINE, start);
      if (nl < 0) break;
      this.#pushLinePiece(bytes.subarray(start, nl + 1));
      this.#addLine(this.#takeLine());
      start = nl + 1;
    }
    if (start < bytes.length) this.#pushLinePiece(bytes.subarray(start));
  }

  /** Closes the last part and returns the archive. */
  finish(): LogArchive {
    if (this.#finished) throw new AosError("wrongState", "Cannot finish a log archive twice");
    if (this.#lineSize) this.#addLine(this.#takeLine());
    this.#closePart();
    this.#finished = true;
    if (!this.#parts.length) {
      return {
        status: "empty",
        parts: [{ part: 1, partsCount: 1, content: new Uint8Array() }],
        size: 0,
      };
    }
    const partsCount = this.#parts.length;
    return {
      status: "ok",
      parts: this.#parts.map((content, i) => ({ part: i + 1, partsCount, content })),
      size: this.#total,
    };
  }

  #pushLinePiece(piece: Uint8Array): void {
    // Copy: callers may reuse their buffers once `add` returns.
    this.#line.push(piece.slice());
    this.#lineSize += piece.length;
    // A line longer than a part will be cut anyway: cut it now to bound memory.
    while (this.#lineSize > this.#maxPartSize) {
      const line = this.#takeLine();
      this.#closePart();
      const cut = utf8Cut(line, this.#maxPartSize);
      this.#write(line.subarray(0, cut));
      this.#closePart();
      this.#line = [line.subarray(cut)];
      this.#lineSize = line.length - cut;
    }
  }

  #takeLine(): Uint8Array {
    const line = this.#line.length === 1 ? this.#line[0]! : concat(this.#line, this.#lineSize);
    this.#line = [];
    this.#lineSize = 0;
    return line;
  }

  #addLine(line: Uint8Array): void {
    if (this.#currentSize + line.length > this.#maxPartSize) this.#closePart();
    this.#write(line);
  }

  #write(bytes: Uint8Array): void {
    if (!bytes.length) return;
    if (!this.#currentSize && this.#parts.length >= this.#maxPartCount) {
      throw new AosError(
        "outOfRange",
        `Cannot archive log: it exceeds ${this.#maxPartCount} parts of ${this.#maxPartSize} bytes ` +
          `(${this.#total} bytes read so far)`,
      );
    }
    this.#current.push(bytes);
    this.#currentSize += bytes.length;
  }

  #closePart(): void {
    if (!this.#currentSize) return;
    const data = concat(this.#current, this.#currentSize);
    this.#current = [];
    this.#currentSize = 0;
    this.#parts.push(gzipSync(data, { level: this.#level }));
  }
}

/** Largest `n <= max` such that `bytes[0, n)` does not end inside a UTF-8 sequence (if avoidable). */
function utf8Cut(bytes: Uint8Array, max: number): number {
  if (max >= bytes.length) return bytes.length;
  let cut = max;
  // Step back over continuation bytes (10xxxxxx) to the start of the character.
  while (cut > 0 && max - cut < 3 && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut--;
  return cut > 0 ? cut : max;
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Archives a whole log source (lines or arbitrary chunks of text).
 * @throws {AosError} `outOfRange` when more than `maxPartCount` parts are needed.
 */
export async function archiveLog(
  source: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>,
  options: LogArchiveOptions = {},
): Promise<LogArchive> {
  const archiver = new LogArchiver(options);
  for await (const chunk of source) {
    options.signal?.throwIfAborted();
    archiver.add(chunk);
  }
  options.signal?.throwIfAborted();
  return archiver.finish();
}

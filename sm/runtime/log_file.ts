/**
 * Per-instance log files with a size cap: `<name>.log` rotates to `.log.1`, `.log.2`… so an
 * instance never uses more than `maxBytes × files` on disk. Lines are prefixed with an RFC 3339
 * UTC time and the stream (`out`/`err`), ready for a later log provider to filter by time.
 * @module
 */
import { type Clock, Mutex, systemClock } from "@aos/shared/core";

/** Options of {@link RotatingLog}. */
export interface RotatingLogOptions {
  /** Cap of one file in bytes (default 1 MiB). */
  maxBytes?: number;
  /** Number of files kept, the live one included (default 3). */
  files?: number;
  /** Longest line kept; longer lines are split (default 16 KiB). */
  maxLineBytes?: number;
  clock?: Clock;
}

/** Default cap of one log file. */
export const DEFAULT_LOG_MAX_BYTES = 1024 * 1024;
/** Default number of log files per instance. */
export const DEFAULT_LOG_FILES = 3;

const enc = new TextEncoder();

/** An append-only, size-capped, rotating log file. Writes are serialized. */
export class RotatingLog implements AsyncDisposable {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #files: number;
  readonly #maxLine: number;
  readonly #clock: Clock;
  readonly #lock = new Mutex();
  #file: Deno.FsFile | undefined;
  #size = 0;
  #closed = false;

  private constructor(path: string, options: RotatingLogOptions) {
    this.path = path;
    this.#maxBytes = Math.max(256, options.maxBytes ?? DEFAULT_LOG_MAX_BYTES);
    this.#files = Math.max(1, options.files ?? DEFAULT_LOG_FILES);
    this.#maxLine = Math.min(options.maxLineBytes ?? 16 * 1024, this.#maxBytes - 64);
    this.#clock = options.clock ?? systemClock;
  }

  /** Opens (appending to) `path`. */
  static async open(path: string, options: RotatingLogOptions = {}): Promise<RotatingLog> {
    const log = new RotatingLog(path, options);
    await log.#openFile();
    return log;
  }

  /** Longest line body kept, in bytes. */
  get maxLineBytes(): number {
    return this.#maxLine;
  }

  async #openFile(): Promise<void> {
    this.#file = await Deno.open(this.path, { append: true, create: true, mode: 0o640 });
    this.#size = (await this.#file.stat()).size;
  }

  async #rotate(): Promise<void> {
    this.#file?.close();
    this.#file = undefined;
    for (let i = this.#files - 1; i >= 1; i--) {
      const from = i === 1 ? this.path : `${this.path}.${i - 1}`;
      try {
        await Deno.rename(from, `${this.path}.${i}`);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    if (this.#files === 1) await Deno.truncate(this.path).catch(() => {});
    await this.#openFile();
  }

  /** Appends one line (without its newline) from `stream`; long lines are truncated. */
  writeLine(stream: "out" | "err", line: string | Uint8Array): Promise<void> {
    return this.#lock.run(async () => {
      if (this.#closed) return;
      let body = typeof line === "string" ? enc.encode(line) : line;
      if (body.byteLength > this.#maxLine) body = body.subarray(0, this.#maxLine);
      const head = enc.encode(`${new Date(this.#clock.now()).toISOString()} ${stream} `);
      const record = new Uint8Array(head.byteLength + body.byteLength + 1);
      record.set(head, 0);
      record.set(body, head.byteLength);
      record[record.byteLength - 1] = 0x0a;
      if (this.#size > 0 && this.#size + record.byteLength > this.#maxBytes) await this.#rotate();
      let at = 0;
      while (at < record.byteLength) at += await this.#file!.write(record.subarray(at));
      this.#size += record.byteLength;
    });
  }

  /** Closes the file; later writes are dropped. */
  close(): Promise<void> {
    return this.#lock.run(() => {
      this.#closed = true;
      this.#file?.close();
      this.#file = undefined;
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Copies a byte stream into `log` line by line until it ends (a trailing partial line is
 * written too). Lines longer than the log's cap are split, never buffered without bound.
 */
export async function pipeLines(
  stream: ReadableStream<Uint8Array>,
  log: RotatingLog,
  tag: "out" | "err",
): Promise<void> {
  const max = log.maxLineBytes;
  let pending = new Uint8Array(0);
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let buf = pending.byteLength
        ? (() => {
          const b = new Uint8Array(pending.byteLength + value.byteLength);
          b.set(pending);
          b.set(value, pending.byteLength);
          return b;
        })()
        : value;
      for (;;) {
        const nl = buf.indexOf(0x0a);
        if (nl < 0) {
          if (buf.byteLength >= max) {
            await log.writeLine(tag, buf.subarray(0, max));
            buf = buf.subarray(max);
            continue;
          }
          break;
        }
        const line = buf.subarray(0, nl);
        for (let at = 0; at < line.byteLength || at === 0; at += max) {
          await log.writeLine(tag, line.subarray(at, at + max));
          if (line.byteLength === 0) break;
        }
        buf = buf.subarray(nl + 1);
      }
      pending = buf.slice();
    }
    if (pending.byteLength) await log.writeLine(tag, pending);
  } finally {
    reader.releaseLock();
  }
}

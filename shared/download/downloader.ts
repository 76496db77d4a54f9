import { createHash, type Hash } from "node:crypto";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as z from "zod/mini";
import { AosError, toAosError } from "../core/errors.ts";
import { type Logger, nullLogger } from "../core/logger.ts";
import { retry, sleep as realSleep } from "../core/retry.ts";

/** States of a `downloadProgressAlert` (cloud protocol v7). */
export type DownloadState = "started" | "paused" | "interrupted" | "finished";

/**
 * One progress report, shaped like the cloud `downloadProgressAlert` payload (CM maps `error`
 * to `errorInfo` with `toCloudErrorInfo`).
 *
 * `started` opens each attempt and repeats every progress interval while bytes flow;
 * `interrupted` reports a failed attempt (retried or final); `paused` a canceled download whose
 * partial file is kept for a later resume; `finished` a verified file.
 */
export interface DownloadProgress {
  digest: string;
  url: string;
  downloadedBytes: number;
  totalBytes: number;
  state: DownloadState;
  reason?: string;
  error?: AosError;
}

/** URL schemes the downloader knows. */
export type DownloadScheme = "http:" | "https:" | "file:";

/** Options of a {@link Downloader}. */
export interface DownloaderOptions {
  /** Logger (default drops everything). */
  logger?: Logger;
  /** Attempts per download, the first included (default 3). */
  tries?: number;
  /** First retry delay in ms (default 1000). */
  initialDelayMs?: number;
  /** Largest retry delay in ms (default 5000). */
  maxDelayMs?: number;
  /** Sleep port between attempts (tests). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Progress report period in ms while bytes flow (default 30000). */
  progressIntervalMs?: number;
  /** Receives every progress report of every download. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Egress allow-list: checked for every URL before a request, redirects included. */
  allowHost?: (url: URL) => boolean;
  /** Schemes accepted (default all of http, https, file). */
  schemes?: readonly DownloadScheme[];
  /** HTTP client for https (custom CA, proxy); the caller keeps ownership. */
  client?: Deno.HttpClient;
  /** PEM CA certificates for https; used to create a client the downloader owns and closes. */
  caCerts?: string[];
  /** Time allowed until response headers arrive, in ms (default 10000). */
  connectTimeoutMs?: number;
  /** Time allowed without a body byte, in ms (default 60000). */
  stallTimeoutMs?: number;
  /** Redirects followed (default 5). */
  maxRedirects?: number;
}

/** One blob to download. */
export interface DownloadRequest {
  /** `sha256:<64 lowercase hex>`: names the target file (`<dir>/sha256/<hex>`). */
  digest: string;
  /** `http(s)://` or `file://` source. */
  url: string;
  /** Directory that holds the blobs (created when missing). */
  dir: string;
  /** Expected size in bytes; unknown when absent or 0. */
  size?: number;
  /**
   * Check that SHA-256 of the downloaded bytes equals `digest` (default true). CM turns it off
   * for encrypted blobs, whose digest names the decrypted content, and checks `sha3_256`.
   */
  verifyDigest?: boolean;
  /** Expected SHA3-256 hex of the downloaded bytes, or `true` to only compute it. */
  sha3_256?: string | true;
  /** Stops waiting for this caller; the download stops when no caller waits any more. */
  signal?: AbortSignal;
  /** Progress reports of this download (in addition to the downloader-wide listener). */
  onProgress?: (progress: DownloadProgress) => void;
}

/** A verified downloaded file. */
export interface DownloadResult {
  digest: string;
  /** `<dir>/sha256/<hex>`. */
  path: string;
  size: number;
  /** SHA-256 hex of the file. */
  sha256: string;
  /** SHA3-256 hex when asked for. */
  sha3_256?: string;
  /** Bytes already on disk when the last attempt started (0 for a fresh download). */
  resumedFrom: number;
  /** True when the complete file was already there and nothing was fetched. */
  cached: boolean;
}

/** Where a download for `digest` lives under `dir`. */
export interface DownloadPaths {
  /** The verified file. */
  file: string;
  /** Bytes received so far. */
  part: string;
  /** The validator and size saved from the first response, so another process can resume. */
  meta: string;
}

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** Validates `sha256:<64 hex>` and returns the file locations; anything else is refused. */
export function downloadPaths(dir: string, digest: string): DownloadPaths {
  const m = DIGEST_RE.exec(digest);
  if (!m) {
    throw new AosError(
      "invalidArgument",
      `Cannot download blob: digest ${JSON.stringify(digest.slice(0, 80))} is not sha256:<64 hex>`,
    );
  }
  const file = join(dir, "sha256", m[1] ?? "");
  return { file, part: `${file}.part`, meta: `${file}.part.json` };
}

const metaSchema = z.object({
  version: z.literal(1),
  validator: z.optional(z.string().check(z.maxLength(1024))),
  totalBytes: z.optional(z.number().check(z.int(), z.nonnegative())),
});
type PartMeta = z.infer<typeof metaSchema>;

const CHUNK = 256 * 1024;
const NON_RETRYABLE = new Set(["invalidArgument", "invalidChecksum", "notFound", "canceled"]);

interface Hashers {
  sha256: Hash;
  sha3?: Hash;
}

interface Job {
  req: DownloadRequest;
  paths: DownloadPaths;
  signal: AbortSignal;
  emit: (p: Omit<DownloadProgress, "digest" | "url">) => void;
  downloaded: number;
  total: number;
  resumedFrom: number;
}

interface Entry {
  digest: string;
  controller: AbortController;
  waiters: number;
  promise: Promise<DownloadResult>;
}

function short(digest: string): string {
  return digest.length > 19 ? `${digest.slice(0, 19)}…` : digest;
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await file.write(data.subarray(off));
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const info = await stat(path);
    return info.isFile() ? Number(info.size) : undefined;
  } catch {
    return undefined;
  }
}

async function hashFile(path: string, hashers: Hashers, limit = Infinity): Promise<number> {
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(CHUNK);
  let total = 0;
  while (total < limit) {
    const n = await file.read(buf.subarray(0, Math.min(CHUNK, limit - total)));
    if (n === null) break;
    hashers.sha256.update(buf.subarray(0, n));
    hashers.sha3?.update(buf.subarray(0, n));
    total += n;
  }
  return total;
}

/** Parses `bytes a-b/T` or `bytes * /T` (without the space). */
function parseContentRange(
  v: string | null,
): { start?: number; end?: number; total?: number } | undefined {
  if (!v) return undefined;
  const m = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return undefined;
  const num = (s: string | undefined) => (s === undefined || s === "*" ? undefined : Number(s));
  const out: { start?: number; end?: number; total?: number } = {};
  const start = num(m[1]), end = num(m[2]), total = num(m[3]);
  if (start !== undefined) out.start = start;
  if (end !== undefined) out.end = end;
  if (total !== undefined) out.total = total;
  return out;
}

function contentLength(res: Response): number | undefined {
  const v = res.headers.get("content-length");
  if (v === null || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/** A strong validator for `If-Range`: a strong ETag, else Last-Modified. */
function validatorOf(res: Response): string | undefined {
  const etag = res.headers.get("etag");
  if (etag && !etag.startsWith("W/")) return etag;
  return res.headers.get("last-modified") ?? undefined;
}

/**
 * Downloads content-addressed blobs over HTTP(S) or from `file://`, streaming to disk while
 * hashing, with retries, resume across attempts and across process restarts, progress
 * reports, per-digest cancellation, and one shared download per digest.
 */
export class Downloader implements AsyncDisposable {
  readonly #log: Logger;
  readonly #opts: DownloaderOptions;
  readonly #client: Deno.HttpClient | undefined;
  readonly #ownsClient: boolean;
  readonly #active = new Map<string, Entry>();
  readonly #schemes: ReadonlySet<string>;
  #disposed = false;

  constructor(options: DownloaderOptions = {}) {
    this.#opts = options;
    this.#log = (options.logger ?? nullLogger).child({ module: "downloader" });
    this.#schemes = new Set(options.schemes ?? ["http:", "https:", "file:"]);
    if (options.client) {
      this.#client = options.client;
      this.#ownsClient = false;
    } else if (options.caCerts?.length) {
      this.#client = Deno.createHttpClient({ caCerts: options.caCerts });
      this.#ownsClient = true;
    } else {
      this.#client = undefined;
      this.#ownsClient = false;
    }
  }

  /** Digests being downloaded now. */
  get active(): string[] {
    return [...new Set([...this.#active.values()].map((e) => e.digest))];
  }

  /**
   * Downloads `req.url` into `<req.dir>/sha256/<hex>` and verifies it. A caller asking for a
   * file that is already being downloaded joins that download.
   */
  download(req: DownloadRequest): Promise<DownloadResult> {
    if (this.#disposed) {
      return Promise.reject(
        new AosError("wrongState", `Cannot download ${short(req.digest)}: downloader is closed`),
      );
    }
    let paths: DownloadPaths;
    try {
      paths = downloadPaths(req.dir, req.digest);
    } catch (err) {
      return Promise.reject(err);
    }
    const key = paths.file;
    let entry = this.#active.get(key);
    if (!entry) {
      const controller = new AbortController();
      const created: Entry = {
        digest: req.digest,
        controller,
        waiters: 0,
        promise: this.#run(req, paths, controller.signal).finally(() => {
          if (this.#active.get(key) === created) this.#active.delete(key);
        }),
      };
      entry = created;
      this.#active.set(key, entry);
    } else {
      this.#log.debug("joining running download", { digest: req.digest });
    }
    return this.#wait(entry, req.signal);
  }

  /** Cancels every running download of `digest`; returns whether one was running. */
  cancel(digest: string): boolean {
    let found = false;
    for (const entry of this.#active.values()) {
      if (entry.digest !== digest) continue;
      found = true;
      entry.controller.abort(
        new AosError("canceled", `Download of ${short(digest)} canceled`),
      );
    }
    return found;
  }

  /** Cancels all downloads, waits for them to stop, closes an owned HTTP client. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const running = [...this.#active.values()];
    for (const e of running) {
      e.controller.abort(new AosError("canceled", `Download of ${short(e.digest)} canceled`));
    }
    await Promise.allSettled(running.map((e) => e.promise));
    if (this.#ownsClient) this.#client?.close();
  }

  #wait(entry: Entry, signal: AbortSignal | undefined): Promise<DownloadResult> {
    entry.waiters++;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      if (--entry.waiters === 0) {
        entry.controller.abort(
          new AosError("canceled", `Download of ${short(entry.digest)} canceled`),
        );
      }
    };
    if (!signal) return entry.promise.finally(() => left = true);
    return new Promise<DownloadResult>((resolve, reject) => {
      const onAbort = () => {
        leave();
        reject(
          new AosError("canceled", `Download of ${short(entry.digest)} canceled by the caller`, {
            cause: signal.reason,
          }),
        );
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      entry.promise.then(resolve, reject).finally(() => {
        left = true;
        signal.removeEventListener("abort", onAbort);
      });
    });
  }

  async #run(req: DownloadRequest, paths: DownloadPaths, signal: AbortSignal) {
    const log = this.#log.child({ digest: req.digest });
    const emit = (p: Omit<DownloadProgress, "digest" | "url">) => {
      const full: DownloadProgress = { digest: req.digest, url: req.url, ...p };
      for (const listener of [this.#opts.onProgress, req.onProgress]) {
        try {
          listener?.(full);
        } catch (err) {
          log.warn("progress listener failed", { error: err });
        }
      }
    };
    let url: URL;
    try {
      url = new URL(req.url);
    } catch (cause) {
      throw new AosError(
        "invalidArgument",
        `Cannot download ${short(req.digest)}: bad URL ${JSON.stringify(req.url.slice(0, 200))}`,
        { cause },
      );
    }
    this.#checkUrl(req.digest, url);
    if (req.size !== undefined && (!Number.isSafeInteger(req.size) || req.size < 0)) {
      throw new AosError("invalidArgument", `Cannot download ${short(req.digest)}: bad size`);
    }
    if (typeof req.sha3_256 === "string" && !/^[0-9a-fA-F]{64}$/.test(req.sha3_256)) {
      throw new AosError(
        "invalidArgument",
        `Cannot download ${short(req.digest)}: sha3_256 is not 64 hex digits`,
      );
    }
    await mkdir(dirname(paths.file), { recursive: true });

    const cached = await this.#checkExisting(req, paths);
    if (cached) {
      emit({ downloadedBytes: cached.size, totalBytes: cached.size, state: "finished" });
      return cached;
    }

    const job: Job = {
      req,
      paths,
      signal,
      emit,
      downloaded: 0,
      total: req.size ?? 0,
      resumedFrom: 0,
    };
    let timer: ReturnType<typeof setInterval> | undefined;
    const interval = this.#opts.progressIntervalMs ?? 30_000;
    timer = setInterval(() => {
      if (job.downloaded > 0) {
        emit({ downloadedBytes: job.downloaded, totalBytes: job.total, state: "started" });
      }
    }, interval);
    try {
      const result = await retry(
        async () => {
          try {
            return url.protocol === "file:"
              ? await this.#copyFile(job, url)
              : await this.#fetchHttp(job, url);
          } catch (err) {
            throw this.#normalize(err, job, signal);
          }
        },
        {
          tries: this.#opts.tries ?? 3,
          initialDelayMs: this.#opts.initialDelayMs ?? 1000,
          maxDelayMs: this.#opts.maxDelayMs ?? 5000,
          signal,
          sleep: this.#opts.sleep ?? realSleep,
          shouldRetry: (err) => !(err instanceof AosError && NON_RETRYABLE.has(err.code)),
          onRetry: (err, attempt, delayMs) => {
            const e = toAosError(err);
            log.warn("download attempt failed, retrying", { attempt, delayMs, error: e.message });
            emit({
              downloadedBytes: job.downloaded,
              totalBytes: job.total,
              state: "interrupted",
              reason: e.message,
              error: e,
            });
          },
        },
      );
      emit({ downloadedBytes: result.size, totalBytes: result.size, state: "finished" });
      log.info("download finished", { size: result.size, resumedFrom: result.resumedFrom });
      return result;
    } catch (err) {
      const e = this.#normalize(err, job, signal);
      if (e.code === "canceled") {
        emit({
          downloadedBytes: job.downloaded,
          totalBytes: job.total,
          state: "paused",
          reason: e.message,
        });
      } else {
        emit({
          downloadedBytes: job.downloaded,
          totalBytes: job.total,
          state: "interrupted",
          reason: e.message,
          error: e,
        });
      }
      log.warn("download failed", { error: e.message, code: e.code });
      throw e;
    } finally {
      clearInterval(timer);
      timer = undefined;
    }
  }

  #normalize(err: unknown, job: Job, signal: AbortSignal): AosError {
    if (signal.aborted) {
      const reason = signal.reason;
      return reason instanceof AosError && reason.code === "canceled"
        ? reason
        : new AosError("canceled", `Download of ${short(job.req.digest)} canceled`, {
          cause: reason,
        });
    }
    if (err instanceof AosError) return err;
    return new AosError(
      "failed",
      `Cannot download ${short(job.req.digest)} from ${job.req.url}: ${
        err instanceof Error ? err.message : String(err)
      } (${job.downloaded} of ${job.total || "?"} bytes)`,
      { cause: err },
    );
  }

  #checkUrl(digest: string, url: URL): void {
    if (!this.#schemes.has(url.protocol)) {
      throw new AosError(
        "invalidArgument",
        `Cannot download ${short(digest)}: scheme "${url.protocol}" is not allowed`,
      );
    }
    if (url.protocol !== "file:" && this.#opts.allowHost && !this.#opts.allowHost(url)) {
      throw new AosError(
        "invalidArgument",
        `Cannot download ${short(digest)}: host "${url.host}" is not on the allow-list`,
      );
    }
  }

  /** A complete file from an earlier run is reused when it verifies; otherwise it goes. */
  async #checkExisting(
    req: DownloadRequest,
    paths: DownloadPaths,
  ): Promise<DownloadResult | undefined> {
    const size = await sizeOf(paths.file);
    if (size === undefined) return undefined;
    if (req.size && size !== req.size) {
      await rm(paths.file, { force: true });
      return undefined;
    }
    const hashers = this.#hashers(req);
    await hashFile(paths.file, hashers);
    try {
      return this.#verify(req, paths, hashers, size, 0, true);
    } catch {
      this.#log.warn("existing blob does not verify, downloading again", { digest: req.digest });
      await rm(paths.file, { force: true });
      return undefined;
    }
  }

  #hashers(req: DownloadRequest): Hashers {
    const h: Hashers = { sha256: createHash("sha256") };
    if (req.sha3_256 !== undefined) h.sha3 = createHash("sha3-256");
    return h;
  }

  #verify(
    req: DownloadRequest,
    paths: DownloadPaths,
    hashers: Hashers,
    size: number,
    resumedFrom: number,
    cached: boolean,
  ): DownloadResult {
    const sha256 = hashers.sha256.digest("hex");
    const sha3 = hashers.sha3?.digest("hex");
    if (req.size && size !== req.size) {
      throw new AosError(
        "invalidChecksum",
        `Downloaded ${short(req.digest)} has ${size} bytes, expected ${req.size}`,
      );
    }
    if (req.verifyDigest !== false && `sha256:${sha256}` !== req.digest) {
      throw new AosError(
        "invalidChecksum",
        `Downloaded ${short(req.digest)} has SHA-256 ${sha256.slice(0, 12)}…`,
      );
    }
    if (typeof req.sha3_256 === "string" && sha3 !== req.sha3_256.toLowerCase()) {
      throw new AosError(
        "invalidChecksum",
        `Downloaded ${short(req.digest)} has SHA3-256 ${sha3?.slice(0, 12)}…, expected ${
          req.sha3_256.slice(0, 12)
        }…`,
      );
    }
    const result: DownloadResult = {
      digest: req.digest,
      path: paths.file,
      size,
      sha256,
      resumedFrom,
      cached,
    };
    if (sha3 !== undefined) result.sha3_256 = sha3;
    return result;
  }

  async #discardPartial(paths: DownloadPaths): Promise<void> {
    await rm(paths.part, { force: true });
    await rm(paths.meta, { force: true });
  }

  async #readMeta(paths: DownloadPaths): Promise<PartMeta | undefined> {
    try {
      const text = await Deno.readTextFile(paths.meta);
      if (text.length > 4096) return undefined;
      return metaSchema.parse(JSON.parse(text));
    } catch {
      return undefined;
    }
  }

  async #writeMeta(paths: DownloadPaths, meta: PartMeta): Promise<void> {
    const tmp = `${paths.meta}.tmp`;
    await writeFile(tmp, JSON.stringify(meta));
    await rename(tmp, paths.meta);
  }

  /** Verifies the finished part file and moves it to its final name. */
  async #finish(job: Job, hashers: Hashers): Promise<DownloadResult> {
    let result: DownloadResult;
    try {
      result = this.#verify(
        job.req,
        job.paths,
        hashers,
        job.downloaded,
        job.resumedFrom,
        false,
      );
    } catch (err) {
      await this.#discardPartial(job.paths);
      throw err;
    }
    await rename(job.paths.part, job.paths.file);
    await rm(job.paths.meta, { force: true });
    return result;
  }

  /** Streams `body` into `file` while hashing; stops early on an overflow. */
  async #pump(
    job: Job,
    body: ReadableStream<Uint8Array>,
    file: Deno.FsFile,
    hashers: Hashers,
    expected: number | undefined,
    onChunk: () => void,
  ): Promise<void> {
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (expected !== undefined && job.downloaded + value.length > expected) {
          throw new AosError(
            "invalidChecksum",
            `Cannot download ${short(job.req.digest)}: source sends more than ${expected} bytes`,
          );
        }
        await writeAll(file, value);
        hashers.sha256.update(value);
        hashers.sha3?.update(value);
        job.downloaded += value.length;
        onChunk();
      }
    } catch (err) {
      await reader.cancel().catch(() => {});
      throw err;
    } finally {
      reader.releaseLock();
    }
  }

  async #copyFile(job: Job, url: URL): Promise<DownloadResult> {
    const { req, paths } = job;
    let path: string;
    try {
      path = fileURLToPath(url);
    } catch (cause) {
      throw new AosError("invalidArgument", `Cannot copy ${short(req.digest)}: bad file URL`, {
        cause,
      });
    }
    let src: Deno.FsFile;
    try {
      src = await Deno.open(path, { read: true });
    } catch (cause) {
      throw new AosError("notFound", `Cannot copy ${short(req.digest)}: cannot open ${path}`, {
        cause,
      });
    }
    const hashers = this.#hashers(req);
    job.downloaded = 0;
    job.resumedFrom = 0;
    try {
      const info = await src.stat();
      if (!info.isFile) {
        throw new AosError("notFound", `Cannot copy ${short(req.digest)}: ${path} is no file`);
      }
      if (req.size && info.size !== req.size) {
        throw new AosError(
          "invalidChecksum",
          `Cannot copy ${short(req.digest)}: ${path} has ${info.size} bytes, expected ${req.size}`,
        );
      }
      job.total = info.size;
      job.emit({ downloadedBytes: 0, totalBytes: job.total, state: "started" });
      await rm(paths.meta, { force: true });
      {
        using dst = await Deno.open(paths.part, {
          write: true,
          create: true,
          truncate: true,
          mode: 0o600,
        });
        await this.#pump(job, src.readable, dst, hashers, req.size || undefined, () => {
          job.signal.throwIfAborted();
        });
        await dst.syncData();
      }
    } catch (err) {
      if (err instanceof AosError && err.code === "invalidChecksum") {
        await this.#discardPartial(paths);
      }
      throw err;
    } finally {
      try {
        src.close();
      } catch {
        // The readable already closed it.
      }
    }
    return await this.#finish(job, hashers);
  }

  /** Fetches with manual redirects so that every hop passes the allow-list. */
  async #request(
    job: Job,
    start: URL,
    headers: Headers,
    signal: AbortSignal,
  ): Promise<{ res: Response; url: URL }> {
    let url = start;
    const max = this.#opts.maxRedirects ?? 5;
    for (let hop = 0;; hop++) {
      this.#checkUrl(job.req.digest, url);
      const init: RequestInit & { client?: Deno.HttpClient } = {
        headers,
        signal,
        redirect: "manual",
      };
      if (this.#client) init.client = this.#client;
      const res = await fetch(url, init);
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || res.status === 304 || !location) {
        return { res, url };
      }
      await res.body?.cancel();
      if (hop >= max) {
        throw new AosError(
          "failed",
          `Cannot download ${short(job.req.digest)}: more than ${max} redirects`,
        );
      }
      url = new URL(location, url);
    }
  }

  async #fetchHttp(job: Job, url: URL): Promise<DownloadResult> {
    const { req, paths } = job;
    const expectedSize = req.size || undefined;
    // One restart within an attempt: a partial file the server cannot extend is dropped and
    // the request repeated from zero without spending a retry.
    for (let round = 0; round < 2; round++) {
      let have = (await sizeOf(paths.part)) ?? 0;
      const meta = have > 0 ? await this.#readMeta(paths) : undefined;
      if (have > 0 && (!meta || (expectedSize !== undefined && have > expectedSize))) {
        // A part file without its metadata was not written by us (or is from a crash before
        // the first byte): it cannot be trusted to be a prefix of this blob.
        await this.#discardPartial(paths);
        have = 0;
      }
      const headers = new Headers({ "accept-encoding": "identity" });
      if (have > 0) {
        headers.set("range", `bytes=${have}-`);
        if (meta?.validator) headers.set("if-range", meta.validator);
      }

      const local = new AbortController();
      const signal = AbortSignal.any([job.signal, local.signal]);
      let watchdog: ReturnType<typeof setTimeout> | undefined;
      const arm = (ms: number, what: string) => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          local.abort(
            new AosError(
              "timeout",
              `Cannot download ${
                short(req.digest)
              }: ${what} for ${ms} ms (${job.downloaded} bytes)`,
            ),
          );
        }, ms);
      };
      try {
        arm(this.#opts.connectTimeoutMs ?? 10_000, "no response");
        let res: Response;
        try {
          ({ res } = await this.#request(job, url, headers, signal));
        } catch (err) {
          if (local.signal.aborted) throw local.signal.reason;
          throw err;
        }
        const stall = this.#opts.stallTimeoutMs ?? 60_000;
        arm(stall, "no data");

        if (res.status === 416 && have > 0) {
          await res.body?.cancel();
          const cr = parseContentRange(res.headers.get("content-range"));
          if (cr?.total === have && (expectedSize === undefined || have === expectedSize)) {
            // The part file already holds everything: a crash hit between the last byte and
            // the rename.
            const hashers = this.#hashers(req);
            job.downloaded = await hashFile(paths.part, hashers);
            job.total = have;
            job.resumedFrom = have;
            return await this.#finish(job, hashers);
          }
          this.#log.info("range not satisfiable, restarting from zero", { digest: req.digest });
          await this.#discardPartial(paths);
          continue;
        }
        if (res.status !== 200 && res.status !== 206) {
          await res.body?.cancel();
          const what = `Cannot download ${short(req.digest)}: HTTP ${res.status} from ${url.host}`;
          if (res.status === 404 || res.status === 410) throw new AosError("notFound", what);
          if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
            throw new AosError("failed", what + " (not retried)");
          }
          throw new AosError("failed", what);
        }
        if (!res.body) {
          throw new AosError("failed", `Cannot download ${short(req.digest)}: empty response`);
        }

        const hashers = this.#hashers(req);
        let file: Deno.FsFile;
        if (res.status === 206) {
          const cr = parseContentRange(res.headers.get("content-range"));
          if (have === 0 || cr?.start !== have) {
            await res.body.cancel();
            await this.#discardPartial(paths);
            this.#log.info("server answered another range, restarting from zero", {
              asked: have,
              got: cr?.start,
            });
            continue;
          }
          job.total = cr.total ?? have + (contentLength(res) ?? NaN);
          if (Number.isNaN(job.total)) job.total = expectedSize ?? 0;
          job.resumedFrom = have;
          job.downloaded = await hashFile(paths.part, hashers, have);
          if (job.downloaded !== have) {
            await res.body.cancel();
            throw new AosError("failed", `Cannot resume ${short(req.digest)}: part file changed`);
          }
          file = await Deno.open(paths.part, { write: true, append: true });
        } else {
          // 200: the server ignored the range or the validator changed: start clean.
          if (have > 0) {
            this.#log.info("server sent the whole file, restarting from zero", {
              digest: req.digest,
              had: have,
            });
          }
          job.total = contentLength(res) ?? expectedSize ?? 0;
          job.resumedFrom = 0;
          job.downloaded = 0;
          const validator = validatorOf(res);
          const m: PartMeta = { version: 1 };
          if (validator !== undefined) m.validator = validator;
          if (job.total) m.totalBytes = job.total;
          // Metadata first: a part file without it is never resumed.
          await this.#writeMeta(paths, m);
          file = await Deno.open(paths.part, {
            write: true,
            create: true,
            truncate: true,
            mode: 0o600,
          });
        }
        if (expectedSize !== undefined && job.total && job.total !== expectedSize) {
          file.close();
          await res.body.cancel();
          await this.#discardPartial(paths);
          throw new AosError(
            "invalidChecksum",
            `Cannot download ${
              short(req.digest)
            }: server has ${job.total} bytes, expected ${expectedSize}`,
          );
        }
        job.emit({ downloadedBytes: job.downloaded, totalBytes: job.total, state: "started" });
        try {
          await this.#pump(
            job,
            res.body,
            file,
            hashers,
            expectedSize ?? (job.total || undefined),
            () => arm(stall, "no data"),
          );
          await file.syncData();
        } catch (err) {
          file.close();
          if (err instanceof AosError && err.code === "invalidChecksum") {
            await this.#discardPartial(paths);
          }
          if (local.signal.aborted && !job.signal.aborted) throw local.signal.reason;
          throw err;
        }
        file.close();
        if (job.total && job.downloaded < job.total) {
          throw new AosError(
            "failed",
            `Cannot download ${
              short(req.digest)
            }: body ended at ${job.downloaded} of ${job.total} bytes`,
          );
        }
        try {
          return await this.#finish(job, hashers);
        } catch (err) {
          // A resumed file that fails verification may carry a stale prefix: one clean try.
          if (job.resumedFrom > 0 && err instanceof AosError && err.code === "invalidChecksum") {
            this.#log.warn("resumed download does not verify, restarting from zero", {
              digest: req.digest,
            });
            continue;
          }
          throw err;
        }
      } finally {
        clearTimeout(watchdog);
      }
    }
    throw new AosError(
      "failed",
      `Cannot download ${short(req.digest)}: server keeps refusing to continue the part file`,
    );
  }
}

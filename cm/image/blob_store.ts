/**
 * CM's blob store: `EnsureBlob` (spec cm.md §6.3 step 4 a–i) and the files behind it.
 *
 * Verified blobs live at `<installPath>/blobs/sha256/<hex>` (the file server's root is
 * `<installPath>/blobs`); downloads go to `<downloadPath>/blobs/sha256/<hex>` (with the
 * downloader's `.part` files, which make a restarted process resume). A blob is decrypted into
 * `<installPath>/tmp/` and renamed to its final name only after its signature and its SHA-256
 * verified, so a name under `blobs/` always means a verified blob: nothing that failed a check is
 * ever served.
 * @module
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  type Certificate,
  createDecryptStream,
  decryptParamsFromInfo,
  hashFileHex,
  verifyBlobSignature,
} from "@aos/shared/crypto";
import { type Downloader, downloadPaths, type DownloadProgress } from "@aos/shared/download";
import { AosError, toCloudErrorInfo } from "@aos/shared/errors";
import { type Logger, nullLogger } from "@aos/shared/logger";
import { type Clock, sleep as realSleep, systemClock } from "@aos/shared/core";
import type { SpaceAllocator } from "@aos/shared/space";
import { tryParseDigest } from "@aos/shared/oci";
import type { BlobInfo, BlobInfoSource, BlobTrust, DownloadAlertSink } from "./types.ts";

/** Options of a {@link BlobStore}. */
export interface BlobStoreOptions {
  /** Root of installed blobs (`imageManager.installPath`). */
  installPath: string;
  /** Root of downloads (`imageManager.downloadPath`). */
  downloadPath: string;
  /** The cloud link's `requestBlobUrls`. */
  blobInfo: BlobInfoSource;
  /** Trusted root CAs (`caCert`). */
  roots: readonly Certificate[];
  /** Accounts installed blobs. */
  installSpace: SpaceAllocator;
  /** Accounts downloaded (encrypted) files while they exist. */
  downloadSpace: SpaceAllocator;
  /** Fetches files; the store asks it for http(s) URLs only. */
  downloader: Downloader;
  /** Egress allow-list; a URL it refuses is never requested. */
  allowHost?: (url: URL) => boolean;
  /** Receives `downloadProgressAlert`s. */
  onAlert?: DownloadAlertSink;
  logger?: Logger;
  clock?: Clock;
  /** Delay between blob-info requests and between download rounds (default 2000 ms, upstream). */
  retryDelayMs?: number;
  /**
   * Blob-info requests and download rounds per blob before the item fails (default: unbounded,
   * as upstream, which retries until the update is canceled).
   */
  maxAttempts?: number;
  /**
   * Downloads whose SHA3-256 or size is wrong before the item fails (default 3). Upstream
   * re-downloads forever; a file the cloud describes wrongly never gets right by itself.
   */
  checksumAttempts?: number;
  /** Refuse blobs without `signInfo` (default false: upstream tolerates them). */
  requireSignature?: boolean;
  /** Sleep port (tests). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** What {@link BlobStore.ensure} did. */
export interface EnsureResult {
  digest: string;
  /** Bytes of the installed blob. */
  size: number;
  /** False when a verified blob was already installed. */
  fetched: boolean;
}

const CHUNK_LIMIT_FOR_SHORT = 19;

/** `sha256:0123456789ab…` for messages. */
export function shortDigest(digest: string): string {
  return digest.length > CHUNK_LIMIT_FOR_SHORT ? `${digest.slice(0, 19)}…` : digest;
}

const NON_RETRYABLE = new Set(["invalidArgument", "notSupported", "canceled"]);

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? Number(s.size) : undefined;
  } catch {
    return undefined;
  }
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await file.write(data.subarray(off));
}

/** Normalises the `sha256` field (hex, or the base64 the schema documents) to lowercase hex. */
function sha3Hex(value: string, digest: string): string {
  if (/^[0-9a-fA-F]{64}$/.test(value)) return value.toLowerCase();
  if (/^[A-Za-z0-9+/]{43}=$/.test(value)) {
    const bin = atob(value);
    return Array.from(bin, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
  }
  throw new AosError(
    "invalidArgument",
    `Cannot download blob ${shortDigest(digest)}: its sha256 (SHA3-256) field is not 64 hex digits`,
  );
}

function canceled(digest: string, signal: AbortSignal): AosError {
  const reason = signal.reason;
  if (reason instanceof AosError && reason.code === "canceled") return reason;
  return new AosError("canceled", `Download of blob ${shortDigest(digest)} canceled`, {
    cause: reason,
  });
}

/** Rejects with the signal's reason when it aborts first; cleans its listener either way. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Installs blobs from cloud URLs: download, SHA3-256 check, AES decrypt, signature, SHA-256,
 * space accounting. One `ensure` per digest runs at a time; later callers wait and then find the
 * blob installed.
 */
export class BlobStore {
  /** Directory the file server serves (`<installPath>/blobs`). */
  readonly blobRoot: string;
  readonly #o: BlobStoreOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #tmpDir: string;
  readonly #downloadDir: string;
  readonly #locks = new Map<string, Promise<void>>();
  /** Blobs hashed in this process, by digest: the stat they had then. */
  readonly #verified = new Map<string, { size: number; mtime: number; ino: number | null }>();

  constructor(options: BlobStoreOptions) {
    this.#o = options;
    this.#log = (options.logger ?? nullLogger).child({ module: "blobstore" });
    this.#clock = options.clock ?? systemClock;
    this.blobRoot = join(options.installPath, "blobs");
    this.#tmpDir = join(options.installPath, "tmp");
    this.#downloadDir = join(options.downloadPath, "blobs");
  }

  /** Creates the directories and drops temporary files a crash left behind. */
  async init(): Promise<void> {
    await rm(this.#tmpDir, { recursive: true, force: true });
    await mkdir(join(this.blobRoot, "sha256"), { recursive: true });
    await mkdir(this.#tmpDir, { recursive: true });
    await mkdir(join(this.#downloadDir, "sha256"), { recursive: true });
  }

  /** Path of an installed blob (the digest is validated, so the path is safe). */
  path(digest: string): string {
    const d = tryParseDigest(digest);
    if (!d || d.algorithm !== "sha256") {
      throw new AosError(
        "invalidArgument",
        `Invalid blob digest ${JSON.stringify(digest.slice(0, 80))}: expected sha256:<64 hex>`,
      );
    }
    return join(this.blobRoot, "sha256", d.hex);
  }

  /** Whether a blob is installed (only verified blobs ever get their final name). */
  async has(digest: string): Promise<boolean> {
    const d = tryParseDigest(digest);
    if (!d || d.algorithm !== "sha256") return false;
    return (await sizeOf(this.path(digest))) !== undefined;
  }

  /**
   * Checks an installed blob by hashing it (step a). A file that does not match its name is
   * deleted. `force` hashes even a file this process verified before and has not changed since.
   * @returns the size, or `undefined` when the blob is not (validly) installed.
   */
  async verify(digest: string, force = false): Promise<number | undefined> {
    const path = this.path(digest);
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch {
      this.#verified.delete(digest);
      return undefined;
    }
    if (!info.isFile) return undefined;
    const mark = { size: info.size, mtime: info.mtime?.getTime() ?? 0, ino: info.ino };
    const seen = this.#verified.get(digest);
    if (
      !force && seen && seen.size === mark.size && seen.mtime === mark.mtime &&
      seen.ino === mark.ino
    ) {
      return info.size;
    }
    const hex = await hashFileHex("sha256", path);
    if (`sha256:${hex}` === digest) {
      this.#verified.set(digest, mark);
      return info.size;
    }
    this.#log.warn("installed blob does not match its digest, deleting it", { digest });
    await this.remove(digest);
    return undefined;
  }

  /**
   * Deletes an installed blob; returns its size (0 when absent). `credit` returns the space to
   * the install allocator (false when the allocator evicts and credits it itself).
   */
  async remove(digest: string, credit = true): Promise<number> {
    const path = this.path(digest);
    const size = await sizeOf(path);
    this.#verified.delete(digest);
    if (size === undefined) return 0;
    await rm(path, { force: true });
    if (credit) this.#o.installSpace.free(size);
    return size;
  }

  /** Installed blobs by digest, with their sizes; stray names are listed as `undefined` keys. */
  async installed(): Promise<{ blobs: Map<string, number>; stray: string[] }> {
    const dir = join(this.blobRoot, "sha256");
    const blobs = new Map<string, number>();
    const stray: string[] = [];
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return { blobs, stray };
    }
    for (const name of names) {
      const path = join(dir, name);
      const size = await sizeOf(path);
      if (/^[0-9a-f]{64}$/.test(name) && size !== undefined) blobs.set(`sha256:${name}`, size);
      else stray.push(path);
    }
    return { blobs, stray };
  }

  /** Deletes every download and partial download (no download may run). */
  async clearDownloads(): Promise<void> {
    await rm(join(this.#downloadDir, "sha256"), { recursive: true, force: true });
    await mkdir(join(this.#downloadDir, "sha256"), { recursive: true });
  }

  /**
   * EnsureBlob: returns at once when a verified blob is installed; else gets its info from the
   * cloud, downloads, checks, decrypts, verifies and installs it.
   * @throws AosError `canceled` when `signal` aborts, the check's error otherwise.
   */
  async ensure(digest: string, trust: BlobTrust, signal: AbortSignal): Promise<EnsureResult> {
    this.path(digest);
    const unlock = await this.#lock(digest, signal);
    try {
      const existing = await this.verify(digest);
      if (existing !== undefined) return { digest, size: existing, fetched: false };
      const info = await this.#blobInfo(digest, signal);
      const size = await this.#fetchAndInstall(info, trust, signal);
      return { digest, size, fetched: true };
    } catch (err) {
      if (signal.aborted) throw canceled(digest, signal);
      throw err;
    } finally {
      unlock();
    }
  }

  async #lock(digest: string, signal: AbortSignal): Promise<() => void> {
    for (;;) {
      const held = this.#locks.get(digest);
      if (!held) break;
      await abortable(held, signal);
    }
    let release!: () => void;
    const p = new Promise<void>((r) => (release = r));
    this.#locks.set(digest, p);
    return () => {
      if (this.#locks.get(digest) === p) this.#locks.delete(digest);
      release();
    };
  }

  #sleep(signal: AbortSignal): Promise<void> {
    return (this.#o.sleep ?? realSleep)(this.#o.retryDelayMs ?? 2000, signal);
  }

  /** Step b: asks the cloud until it answers with a usable description of the blob. */
  async #blobInfo(digest: string, signal: AbortSignal): Promise<BlobInfo> {
    const max = this.#o.maxAttempts ?? Infinity;
    for (let attempt = 1;; attempt++) {
      signal.throwIfAborted();
      try {
        const infos = await this.#o.blobInfo.requestBlobUrls([digest], signal);
        const info = infos.find((i) => i.digest === digest);
        if (!info) {
          throw new AosError(
            "notFound",
            `Cannot download blob ${shortDigest(digest)}: the cloud sent no URL for it`,
          );
        }
        return this.#checkInfo(info);
      } catch (err) {
        if (signal.aborted) throw canceled(digest, signal);
        const e = err instanceof AosError ? err : new AosError(
          "failed",
          `Cannot get URLs of blob ${shortDigest(digest)}: ${(err as Error)?.message ?? err}`,
          { cause: err },
        );
        if (NON_RETRYABLE.has(e.code) || attempt >= max) throw e;
        this.#log.warn("blob info request failed, retrying", { digest, attempt, error: e.message });
        await this.#sleep(signal);
      }
    }
  }

  #checkInfo(info: BlobInfo): BlobInfo {
    const d = shortDigest(info.digest);
    if (!Number.isSafeInteger(info.size) || info.size < 0) {
      throw new AosError(
        "invalidArgument",
        `Cannot download blob ${d}: size ${info.size} is invalid`,
      );
    }
    if (!Array.isArray(info.urls) || info.urls.length === 0) {
      throw new AosError("invalidArgument", `Cannot download blob ${d}: the cloud sent no URL`);
    }
    if (!info.signInfo && this.#o.requireSignature) {
      throw new AosError("invalidArgument", `Cannot install blob ${d}: it has no signature`);
    }
    if (info.decryptInfo) decryptParamsFromInfo(info.decryptInfo);
    return { ...info, sha256: sha3Hex(info.sha256, info.digest) };
  }

  /** URLs we may request, in the cloud's order; the refusal says why when none is left. */
  #usableUrls(info: BlobInfo): URL[] {
    const reasons: string[] = [];
    const ok: URL[] = [];
    for (const text of info.urls) {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        reasons.push(`bad URL ${JSON.stringify(String(text).slice(0, 100))}`);
        continue;
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        reasons.push(`scheme "${url.protocol}" of ${url.host || "a URL"} is not allowed`);
      } else if (this.#o.allowHost && !this.#o.allowHost(url)) {
        reasons.push(`host "${url.host}" is not on the allow-list`);
      } else {
        ok.push(url);
      }
    }
    if (!ok.length) {
      throw new AosError(
        "invalidArgument",
        `Cannot download blob ${shortDigest(info.digest)}: ${reasons.join("; ")}`,
      );
    }
    return ok;
  }

  #alert(p: DownloadProgress): void {
    const sink = this.#o.onAlert;
    if (!sink) return;
    const alert: Parameters<DownloadAlertSink>[0] = {
      tag: "downloadProgressAlert",
      timestamp: new Date(this.#clock.now()),
      digest: p.digest,
      url: p.url,
      downloadedBytes: p.downloadedBytes,
      totalBytes: p.totalBytes,
      state: p.state,
    };
    if (p.reason !== undefined) alert.reason = p.reason;
    if (p.error) alert.errorInfo = toCloudErrorInfo(p.error);
    try {
      sink(alert);
    } catch (err) {
      this.#log.warn("alert sink failed", { error: err });
    }
  }

  /** Steps c–i. */
  async #fetchAndInstall(info: BlobInfo, trust: BlobTrust, signal: AbortSignal): Promise<number> {
    const urls = this.#usableUrls(info);
    const paths = downloadPaths(this.#downloadDir, info.digest);
    // c: what is already on disk (a finished download or a part file) needs no new space.
    const have = (await sizeOf(paths.file)) ?? (await sizeOf(paths.part)) ?? 0;
    using _dlSpace = await this.#o.downloadSpace.allocate(Math.max(0, info.size - have));
    const downloaded = await this.#download(info, urls, signal);
    return await this.#install(info, downloaded, trust, signal);
  }

  /** Steps d–e: download rounds over the mirrors until the file's SHA3-256 and size are right. */
  async #download(info: BlobInfo, urls: URL[], signal: AbortSignal): Promise<string> {
    const max = this.#o.maxAttempts ?? Infinity;
    const maxChecksum = this.#o.checksumAttempts ?? 3;
    let checksumFailures = 0;
    for (let attempt = 1;; attempt++) {
      const url = urls[(attempt - 1) % urls.length]!;
      try {
        const res = await this.#o.downloader.download({
          digest: info.digest,
          url: url.href,
          dir: this.#downloadDir,
          size: info.size,
          // The digest names the decrypted content: it is checked after decryption (step h).
          verifyDigest: false,
          sha3_256: info.sha256,
          signal,
          onProgress: (p) => this.#alert(p),
        });
        return res.path;
      } catch (err) {
        if (signal.aborted) throw canceled(info.digest, signal);
        const e = err instanceof AosError ? err : new AosError("failed", String(err), {
          cause: err,
        });
        if (NON_RETRYABLE.has(e.code)) throw e;
        if (e.code === "invalidChecksum" && ++checksumFailures >= maxChecksum) {
          throw new AosError(
            "invalidChecksum",
            `Cannot download blob ${
              shortDigest(info.digest)
            }: the file does not match its SHA3-256 or size after ${checksumFailures} downloads: ${e.message}`,
            { cause: e },
          );
        }
        if (attempt >= max) throw e;
        this.#log.warn("blob download failed, retrying", {
          digest: info.digest,
          attempt,
          error: e.message,
        });
        await this.#sleep(signal);
      }
    }
  }

  /** Steps f–i: decrypt into a temp file, verify signature and digest, rename, account. */
  async #install(
    info: BlobInfo,
    downloaded: string,
    trust: BlobTrust,
    signal: AbortSignal,
  ): Promise<number> {
    const digest = info.digest;
    const final = this.path(digest);
    const tmp = join(this.#tmpDir, `${digest.slice(7)}.${crypto.randomUUID()}`);
    using space = await this.#o.installSpace.allocate(info.size);
    let verdict = false;
    try {
      const { size, sha256 } = await this.#decryptTo(downloaded, tmp, info, signal);
      signal.throwIfAborted();
      if (info.signInfo) {
        const file = await Deno.open(tmp, { read: true });
        // verifyBlobSignature reads the stream to its end or cancels it: either closes the file.
        await verifyBlobSignature(file.readable, info.signInfo, {
          certificates: trust.certificates,
          chains: trust.chains,
          roots: this.#o.roots,
        });
      }
      if (`sha256:${sha256}` !== digest) {
        throw new AosError(
          "invalidChecksum",
          `decrypted content has SHA-256 ${sha256.slice(0, 12)}…, expected ${
            digest.slice(7, 19)
          }… (wrong blob for this digest)`,
        );
      }
      verdict = true;
      space.resize(size);
      await rename(tmp, final);
      space.accept();
      const s = await Deno.stat(final);
      this.#verified.set(digest, { size: s.size, mtime: s.mtime?.getTime() ?? 0, ino: s.ino });
      this.#log.info("blob installed", { digest, size });
      await rm(downloaded, { force: true });
      return size;
    } catch (err) {
      await rm(tmp, { force: true });
      if (signal.aborted) throw canceled(digest, signal);
      // A file that decrypted to something wrong is useless: the next try downloads it again.
      if (!verdict) await rm(downloaded, { force: true });
      const e = err instanceof AosError ? err : new AosError("failed", String(err), {
        cause: err,
      });
      throw new AosError(e.code, `Cannot install blob ${shortDigest(digest)}: ${e.message}`, {
        cause: e,
      });
    }
  }

  async #decryptTo(
    src: string,
    dst: string,
    info: BlobInfo,
    signal: AbortSignal,
  ): Promise<{ size: number; sha256: string }> {
    const input = await Deno.open(src, { read: true });
    let stream: ReadableStream<Uint8Array> = input.readable;
    if (info.decryptInfo) {
      stream = stream.pipeThrough(createDecryptStream(decryptParamsFromInfo(info.decryptInfo)));
    }
    const hash = createHash("sha256");
    let size = 0;
    const out = await Deno.open(dst, { write: true, createNew: true, mode: 0o644 });
    try {
      for await (const chunk of stream) {
        signal.throwIfAborted();
        hash.update(chunk);
        await writeAll(out, chunk);
        size += chunk.byteLength;
      }
      await out.syncData();
    } finally {
      out.close();
    }
    return { size, sha256: hash.digest("hex") };
  }
}

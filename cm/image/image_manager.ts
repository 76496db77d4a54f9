/**
 * CM's image manager: desired update items → verified blobs on disk, item states in the DB,
 * removal with TTL and eviction (spec cm.md §6).
 * @module
 */
import { rm } from "node:fs/promises";
import { type Certificate, parseCertificates } from "@aos/shared/crypto";
import type { Database } from "@aos/shared/db";
import { Downloader, type DownloaderOptions } from "@aos/shared/download";
import { AosError } from "@aos/shared/errors";
import { type Logger, nullLogger } from "@aos/shared/logger";
import { type Clock, Mutex, systemClock } from "@aos/shared/core";
import {
  type ImageIndex,
  imageIndexSchema,
  imageManifestSchema,
  manifestItemConfig,
  tryParseDigest,
} from "@aos/shared/oci";
import type { SpaceAllocator, SpaceRegistry } from "@aos/shared/space";
import { BlobStore, type BlobStoreOptions, shortDigest } from "./blob_store.ts";
import { ImageItemTable, type ItemRow } from "./db.ts";
import type {
  BlobInfoSource,
  BlobTrust,
  DesiredItem,
  DownloadAlertSink,
  ItemStatus,
} from "./types.ts";

/** Upstream compile-time limit of update items in a desired status. */
export const MAX_UPDATE_ITEMS = 64;

/** Largest index or manifest blob read (they are small JSON documents). */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/** Nesting of indexes inside an index that we follow. */
const MAX_INDEX_DEPTH = 4;

const DAY_MS = 24 * 3600 * 1000;

/** Options of {@link createImageManager}. */
export interface ImageManagerOptions {
  /** CM's database, migrated with {@link CM_IMAGE_MIGRATION}; the caller owns it. */
  database: Database;
  /** `imageManager.installPath`. */
  installPath: string;
  /** `imageManager.downloadPath`. */
  downloadPath: string;
  /** The cloud link's `requestBlobUrls`. */
  blobInfo: BlobInfoSource;
  /** The unit's root CA (`caCert`): PEM text or parsed certificates. */
  caCert: string | readonly Certificate[];
  /** The process' space registry; the manager takes one allocator per path from it. */
  space: SpaceRegistry;
  /** Egress allow-list for blob URLs (default: every host). */
  allowHost?: (url: URL) => boolean;
  /** Receives `downloadProgressAlert`s. */
  onAlert?: DownloadAlertSink;
  /** `imageManager.updateItemTtl` in ms (default 30 days). */
  updateItemTtlMs?: number;
  /** `imageManager.removeOutdatedPeriod` in ms (default 24 h); 0 runs no timer. */
  removeOutdatedPeriodMs?: number;
  /** Share of the partition installed blobs may use, 0–100 (default 0: no own limit). */
  installLimitPercent?: number;
  clock?: Clock;
  logger?: Logger;
  /** Downloader tuning (retries, timeouts, progress period, HTTPS CA). */
  downloader?: Omit<DownloaderOptions, "allowHost" | "logger" | "schemes" | "onProgress">;
  /** Blob retry tuning and the signature policy. */
  blobs?: Pick<
    BlobStoreOptions,
    "retryDelayMs" | "maxAttempts" | "checksumAttempts" | "requireSignature" | "sleep"
  >;
}

/** The image manager settings of a resolved `cm.cfg` as {@link ImageManagerOptions} fields. */
export function imageManagerPaths(cfg: {
  installPath: string;
  downloadPath: string;
  updateItemTtl: number;
  removeOutdatedPeriod: number;
}): Pick<
  ImageManagerOptions,
  "installPath" | "downloadPath" | "updateItemTtlMs" | "removeOutdatedPeriodMs"
> {
  return {
    installPath: cfg.installPath,
    downloadPath: cfg.downloadPath,
    updateItemTtlMs: cfg.updateItemTtl,
    removeOutdatedPeriodMs: cfg.removeOutdatedPeriod,
  };
}

/** Why an item row disappeared (for the launcher, which drops the item's instances). */
export interface RemovedItem {
  id: string;
  type: string;
  version: string;
}

interface Task {
  item: DesiredItem;
  controller: AbortController;
  promise: Promise<ItemStatus>;
}

function itemKey(id: string, version: string): string {
  return JSON.stringify([id, version]);
}

function statusOf(row: ItemRow): ItemStatus {
  const s: ItemStatus = { id: row.itemId, type: row.type, version: row.version, state: row.state };
  if (row.error && row.state === "failed") s.error = row.error;
  return s;
}

function label(item: { id: string; version: string }): string {
  return `${item.id} ${item.version}`;
}

function validateItems(items: readonly DesiredItem[]): void {
  if (items.length > MAX_UPDATE_ITEMS) {
    throw new AosError(
      "outOfRange",
      `Cannot download update items: ${items.length} given, at most ${MAX_UPDATE_ITEMS}`,
    );
  }
  const ids = new Set<string>();
  for (const item of items) {
    if (!item.id || !item.version || typeof item.type !== "string") {
      throw new AosError(
        "invalidArgument",
        `Cannot download update item ${JSON.stringify(item.id ?? "")}: id and version are required`,
      );
    }
    const d = tryParseDigest(item.indexDigest);
    if (!d || d.algorithm !== "sha256") {
      throw new AosError(
        "invalidArgument",
        `Cannot download update item ${label(item)}: index digest ${
          JSON.stringify(String(item.indexDigest).slice(0, 80))
        } is not sha256:<64 hex>`,
      );
    }
    if (ids.has(item.id)) {
      throw new AosError(
        "invalidArgument",
        `Cannot download update items: item ${item.id} is listed twice`,
      );
    }
    ids.add(item.id);
  }
}

/**
 * Downloads, verifies and keeps the blobs of update items; one instance per CM process.
 *
 * `downloadItems` brings every desired item to `pending` (or `failed`), `installItems` finalizes
 * (`installed`; the rest `removed`), `removeOutdatedItems` applies the TTL. A new
 * `downloadItems` call cancels the downloads of items it no longer lists and joins those it
 * still does.
 */
export class ImageManager implements AsyncDisposable {
  readonly #o: ImageManagerOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #table: ImageItemTable;
  readonly #store: BlobStore;
  readonly #downloader: Downloader;
  readonly #installSpace: SpaceAllocator;
  readonly #downloadSpace: SpaceAllocator;
  readonly #tasks = new Map<string, Task>();
  readonly #statusListeners = new Set<(s: ItemStatus) => void>();
  readonly #removedListeners = new Set<(r: RemovedItem) => void>();
  #trust: BlobTrust = { certificates: [], chains: [] };
  /** One action at a time: download set-up, install step, TTL sweep, cleanup. */
  readonly #action = new Mutex();
  #closed = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** @internal Use {@link createImageManager}. */
  constructor(
    options: ImageManagerOptions,
    deps: {
      store: BlobStore;
      downloader: Downloader;
      installSpace: SpaceAllocator;
      downloadSpace: SpaceAllocator;
      /** Receives the eviction callback the install allocator was created with. */
      bindEvict: (evict: (key: string) => Promise<void>) => void;
    },
  ) {
    this.#o = options;
    this.#log = (options.logger ?? nullLogger).child({ module: "imagemanager" });
    this.#clock = options.clock ?? systemClock;
    this.#table = new ImageItemTable(options.database);
    this.#store = deps.store;
    this.#downloader = deps.downloader;
    this.#installSpace = deps.installSpace;
    this.#downloadSpace = deps.downloadSpace;
    deps.bindEvict((key) => this.#evict(key));
  }

  /** What the blob file server serves (`startFileServer({ root: blobRoot })`). */
  get blobRoot(): string {
    return this.#store.blobRoot;
  }

  /** Whether a verified blob is installed (SM controller's `GetBlobsInfos`). */
  hasBlob(digest: string): Promise<boolean> {
    return this.#store.has(digest);
  }

  /** Path of an installed blob. */
  blobPath(digest: string): string {
    return this.#store.path(digest);
  }

  /** Statuses of every stored item version (`removed` ones included), oldest first. */
  statuses(): ItemStatus[] {
    return this.#table.list().map(statusOf);
  }

  /** Digests an item version references (index, manifests, configs, layers). */
  itemBlobs(id: string, version: string): string[] {
    return this.#table.blobs(id, version).map((b) => b.digest);
  }

  /** Calls `listener` on every item state change; returns the unsubscribe function. */
  onStatusChange(listener: (status: ItemStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  /** Calls `listener` when an item version's row and blobs are gone for good. */
  onItemRemoved(listener: (item: RemovedItem) => void): () => void {
    this.#removedListeners.add(listener);
    return () => this.#removedListeners.delete(listener);
  }

  /** @internal Start-up: repair interrupted states, register removed items, first TTL sweep. */
  async init(): Promise<void> {
    await this.#store.init();
    const now = this.#clock.now();
    for (const row of this.#table.list({ state: "installing" })) {
      // Killed during the install step: the item is as downloaded as before it.
      this.#table.setState(row.itemId, row.version, "pending", now);
    }
    for (const row of this.#table.list({ state: "removed" })) {
      await this.#registerOutdated(row);
    }
    await this.removeOutdatedItems();
    const period = this.#o.removeOutdatedPeriodMs ?? DAY_MS;
    if (period > 0) {
      this.#timer = setInterval(() => {
        this.removeOutdatedItems().catch((err) =>
          this.#log.error("outdated item sweep failed", { error: err })
        );
      }, period);
    }
  }

  /**
   * Brings every listed item to `pending` (or keeps it `installed`/`pending` after checking its
   * blobs), or `failed` with the reason. Items no longer listed stop downloading; their
   * `downloading`, `pending` and `failed` rows go. Resolves when the listed items are done.
   * @returns the status of each listed item, in order (`failed` with a `canceled` error when a
   * later call or {@link cancel} stopped it).
   */
  async downloadItems(items: readonly DesiredItem[], trust: BlobTrust): Promise<ItemStatus[]> {
    this.#checkOpen("download update items");
    validateItems(items);
    // Set-up runs under the action lock: an install step, a sweep or the cleanup of an earlier
    // call never sees tasks half started.
    const running = await this.#action.run(async () => {
      this.#checkOpen("download update items");
      this.#trust = trust;
      const wanted = new Set(items.map((i) => itemKey(i.id, i.version)));
      const stopping: Promise<unknown>[] = [];
      for (const [key, task] of this.#tasks) {
        if (wanted.has(key)) continue;
        task.controller.abort(
          new AosError(
            "canceled",
            `Download of item ${label(task.item)} canceled: no longer desired`,
          ),
        );
        stopping.push(task.promise);
      }
      await Promise.allSettled(stopping);
      for (const row of this.#table.list()) {
        const key = itemKey(row.itemId, row.version);
        if (wanted.has(key) || this.#tasks.has(key)) continue;
        if (row.state === "installed" || row.state === "removed") continue;
        this.#table.delete(row.itemId, row.version);
      }
      return items.map((item) =>
        this.#tasks.get(itemKey(item.id, item.version))?.promise ?? this.#start(item)
      );
    });
    const results = await Promise.all(running);
    await this.#action.run(async () => {
      if (this.#tasks.size === 0 && !this.#closed) await this.#cleanup();
    });
    return results;
  }

  /**
   * The finalize step: re-checks each listed `pending`/`installed` item's blobs (SHA-256) and sets
   * it `installed` (dropping its other versions); every other installed item becomes `removed`,
   * other rows go, and unreferenced blobs are deleted.
   */
  installItems(items: readonly DesiredItem[]): Promise<ItemStatus[]> {
    return this.#action.run(() => this.#installItems(items));
  }

  async #installItems(items: readonly DesiredItem[]): Promise<ItemStatus[]> {
    this.#checkOpen("install update items");
    if (this.#tasks.size > 0) {
      throw new AosError(
        "wrongState",
        `Cannot install update items: ${this.#tasks.size} download(s) in progress`,
      );
    }
    const wanted = new Set(items.map((i) => itemKey(i.id, i.version)));
    const results: ItemStatus[] = [];
    for (const item of items) results.push(await this.#install(item));
    const now = this.#clock.now();
    for (const row of this.#table.list()) {
      if (wanted.has(itemKey(row.itemId, row.version))) continue;
      if (row.state === "removed") continue;
      if (row.state === "installed") {
        this.#table.setState(row.itemId, row.version, "removed", now);
        const removed = { ...row, state: "removed" as const, timestamp: now };
        this.#emit(removed);
        await this.#registerOutdated(removed);
      } else {
        this.#table.delete(row.itemId, row.version);
      }
    }
    await this.#cleanup();
    return results;
  }

  /** Stops every running download; their `downloadItems` calls resolve with `canceled`. */
  cancel(): void {
    for (const task of this.#tasks.values()) {
      task.controller.abort(
        new AosError("canceled", `Download of item ${label(task.item)} canceled`),
      );
    }
  }

  /**
   * Deletes `removed` items older than the TTL with their unshared blobs (skipped while a
   * download or install runs: the next period catches up).
   * @returns the items deleted.
   */
  removeOutdatedItems(): Promise<RemovedItem[]> {
    return this.#action.run(() => this.#removeOutdatedItems());
  }

  async #removeOutdatedItems(): Promise<RemovedItem[]> {
    if (this.#tasks.size > 0 || this.#closed) return [];
    const ttl = this.#o.updateItemTtlMs ?? 30 * DAY_MS;
    const now = this.#clock.now();
    const out: RemovedItem[] = [];
    for (const row of this.#table.list({ state: "removed" })) {
      if (row.timestamp + ttl > now) continue;
      this.#installSpace.restoreOutdatedItem(itemKey(row.itemId, row.version));
      await this.#deleteItem(row, true);
      out.push({ id: row.itemId, type: row.type, version: row.version });
    }
    return out;
  }

  /** Cancels downloads, stops the sweep timer, closes the downloader and the allocators. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.cancel();
    await Promise.allSettled([...this.#tasks.values()].map((t) => t.promise));
    await this.#downloader[Symbol.asyncDispose]();
    this.#installSpace.close();
    this.#downloadSpace.close();
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new AosError("wrongState", `Cannot ${what}: image manager is closed`);
  }

  #emit(row: ItemRow): void {
    const status = statusOf(row);
    for (const listener of this.#statusListeners) {
      try {
        listener(status);
      } catch (err) {
        this.#log.warn("status listener failed", { error: err });
      }
    }
  }

  #emitRemoved(row: ItemRow): void {
    const item = { id: row.itemId, type: row.type, version: row.version };
    for (const listener of this.#removedListeners) {
      try {
        listener(item);
      } catch (err) {
        this.#log.warn("removed-item listener failed", { error: err });
      }
    }
  }

  #start(item: DesiredItem): Promise<ItemStatus> {
    const key = itemKey(item.id, item.version);
    const controller = new AbortController();
    const task: Task = { item, controller, promise: Promise.resolve() as never };
    task.promise = this.#runItem(item, controller.signal).finally(() => {
      if (this.#tasks.get(key) === task) this.#tasks.delete(key);
    });
    this.#tasks.set(key, task);
    return task.promise;
  }

  async #runItem(item: DesiredItem, signal: AbortSignal): Promise<ItemStatus> {
    const now = this.#clock.now();
    const existing = this.#table.get(item.id, item.version);
    const same = existing?.indexDigest === item.indexDigest && existing.type === item.type;
    // Installed and pending items are only re-checked (missing blobs fetched again).
    const keepState = same && (existing.state === "installed" || existing.state === "pending");
    let row: ItemRow;
    if (keepState) {
      row = existing;
    } else {
      if (existing?.state === "removed") {
        this.#installSpace.restoreOutdatedItem(itemKey(item.id, item.version));
      }
      this.#limitVersions(item);
      row = {
        itemId: item.id,
        version: item.version,
        type: item.type,
        indexDigest: item.indexDigest,
        state: "downloading",
        timestamp: now,
      };
      this.#table.put(row);
      this.#emit(row);
    }
    try {
      await this.#walk(item, signal);
      if (!keepState) {
        row = { ...row, state: "pending", timestamp: this.#clock.now() };
        this.#table.setState(item.id, item.version, "pending", row.timestamp);
        this.#emit(row);
      }
      this.#log.info("item ready", { id: item.id, version: item.version, state: row.state });
      return statusOf(row);
    } catch (err) {
      if (signal.aborted) {
        const reason = signal.reason instanceof AosError
          ? signal.reason
          : new AosError("canceled", `Download of item ${label(item)} canceled`);
        if (!keepState) this.#table.delete(item.id, item.version);
        this.#log.info("item download canceled", { id: item.id, version: item.version });
        return { ...statusOf(row), state: keepState ? row.state : "failed", error: reason };
      }
      const cause = err instanceof AosError ? err : new AosError("failed", String(err), {
        cause: err,
      });
      const error = new AosError(
        cause.code,
        `Cannot download item ${label(item)}: ${cause.message}`,
        { cause },
      );
      row = { ...row, state: "failed", timestamp: this.#clock.now(), error };
      this.#table.setState(item.id, item.version, "failed", row.timestamp, error);
      this.#emit(row);
      this.#log.warn("item failed", { id: item.id, version: item.version, error: error.message });
      return statusOf(row);
    }
  }

  /** At most two versions per item id: the installed one and the one coming. */
  #limitVersions(item: DesiredItem): void {
    for (const other of this.#table.list({ itemId: item.id })) {
      if (other.version === item.version || other.state === "installed") continue;
      if (other.state === "removed") {
        this.#installSpace.restoreOutdatedItem(itemKey(other.itemId, other.version));
        this.#emitRemoved(other);
      }
      this.#table.delete(other.itemId, other.version);
    }
  }

  /** Walks index → manifests → config, item config, layers, ensuring each blob. */
  async #walk(item: DesiredItem, signal: AbortSignal): Promise<void> {
    const seen = new Set<string>();
    const ensure = async (digest: string, size = 0) => {
      // Referenced before it is fetched, so an eviction running meanwhile keeps a shared blob.
      this.#table.addBlob(item.id, item.version, { digest, size });
      const res = await this.#store.ensure(digest, this.#trust, signal);
      this.#table.addBlob(item.id, item.version, { digest, size: res.size });
      seen.add(digest);
    };
    const walkIndex = async (digest: string, size: number, depth: number) => {
      await ensure(digest, size);
      const doc = await this.#readJson(digest, "image index");
      if (doc && typeof doc === "object" && "config" in doc && !("manifests" in doc)) {
        // The item names a manifest directly: accept it as a one-manifest image.
        return await walkManifest(digest, doc);
      }
      const index = this.#parse(imageIndexSchema, doc, digest, "image index") as ImageIndex;
      for (const m of index.manifests) {
        signal.throwIfAborted();
        if (seen.has(m.digest)) continue;
        if (m.mediaType.includes("index") || m.mediaType.includes("manifest.list")) {
          if (depth >= MAX_INDEX_DEPTH) {
            throw new AosError(
              "outOfRange",
              `image index ${shortDigest(digest)} nests indexes deeper than ${MAX_INDEX_DEPTH}`,
            );
          }
          await walkIndex(m.digest, m.size, depth + 1);
          continue;
        }
        await ensure(m.digest, m.size);
        await walkManifest(m.digest, await this.#readJson(m.digest, "image manifest"));
      }
    };
    const walkManifest = async (digest: string, doc: unknown) => {
      const manifest = this.#parse(imageManifestSchema, doc, digest, "image manifest");
      const parts = [manifest.config, manifestItemConfig(manifest), ...manifest.layers];
      for (const d of parts) {
        if (!d || seen.has(d.digest)) continue;
        signal.throwIfAborted();
        await ensure(d.digest, d.size);
      }
    };
    await walkIndex(item.indexDigest, 0, 0);
    // A re-walk may find a different tree (the row was reused): forget blobs no longer in it.
    for (const ref of this.#table.blobs(item.id, item.version)) {
      if (!seen.has(ref.digest)) {
        this.#table.db.prepare(
          "DELETE FROM imagemanager_blobs WHERE itemID = ? AND version = ? AND digest = ?",
        ).run(item.id, item.version, ref.digest);
      }
    }
  }

  async #readJson(digest: string, what: string): Promise<unknown> {
    const path = this.#store.path(digest);
    const size = (await Deno.stat(path)).size;
    if (size > MAX_MANIFEST_SIZE) {
      throw new AosError(
        "outOfRange",
        `Cannot read ${what} ${shortDigest(digest)}: ${size} bytes, at most ${MAX_MANIFEST_SIZE}`,
      );
    }
    try {
      return JSON.parse(await Deno.readTextFile(path));
    } catch (cause) {
      throw new AosError(
        "invalidArgument",
        `Cannot read ${what} ${shortDigest(digest)}: not JSON`,
        { cause },
      );
    }
  }

  #parse<T>(
    schema: {
      safeParse(v: unknown): { success: true; data: T } | { success: false; error: Error };
    },
    doc: unknown,
    digest: string,
    what: string,
  ): T {
    const r = schema.safeParse(doc);
    if (r.success) return r.data;
    throw new AosError(
      "invalidArgument",
      `Cannot read ${what} ${shortDigest(digest)}: ${r.error.message.slice(0, 500)}`,
    );
  }

  async #install(item: DesiredItem): Promise<ItemStatus> {
    const row = this.#table.get(item.id, item.version);
    if (!row) {
      return {
        id: item.id,
        type: item.type,
        version: item.version,
        state: "failed",
        error: new AosError(
          "notFound",
          `Cannot install item ${label(item)}: it was not downloaded`,
        ),
      };
    }
    if (row.state !== "pending" && row.state !== "installed" && row.state !== "installing") {
      return statusOf(row);
    }
    if (row.state === "pending") {
      this.#table.setState(item.id, item.version, "installing", this.#clock.now());
      this.#emit({ ...row, state: "installing" });
    }
    const blobs = this.#table.blobs(item.id, item.version);
    let error: AosError | undefined;
    if (!blobs.some((b) => b.digest === row.indexDigest)) {
      error = new AosError("notFound", `Cannot install item ${label(item)}: no blobs recorded`);
    }
    for (const b of blobs) {
      if (error) break;
      if ((await this.#store.verify(b.digest, true)) === undefined) {
        error = new AosError(
          "invalidChecksum",
          `Cannot install item ${label(item)}: blob ${
            shortDigest(b.digest)
          } is missing or does not match its digest`,
        );
      }
    }
    const now = this.#clock.now();
    if (error) {
      const failed: ItemRow = { ...row, state: "failed", timestamp: now, error };
      this.#table.setState(item.id, item.version, "failed", now, error);
      this.#emit(failed);
      return statusOf(failed);
    }
    const installed: ItemRow = { ...row, state: "installed", timestamp: now };
    if (row.state !== "installed") {
      this.#table.setState(item.id, item.version, "installed", now);
      this.#emit(installed);
    }
    for (const other of this.#table.list({ itemId: item.id })) {
      if (other.version === item.version) continue;
      if (other.state === "removed") {
        this.#installSpace.restoreOutdatedItem(itemKey(other.itemId, other.version));
      }
      this.#table.delete(other.itemId, other.version);
      if (other.state === "installed" || other.state === "removed") this.#emitRemoved(other);
    }
    return statusOf(row.state === "installed" ? row : installed);
  }

  async #registerOutdated(row: ItemRow): Promise<void> {
    const size = this.#table.exclusiveBlobs(row.itemId, row.version)
      .reduce((sum, b) => sum + b.size, 0);
    await this.#installSpace.addOutdatedItem(
      itemKey(row.itemId, row.version),
      size,
      row.timestamp,
    );
  }

  /** The space allocator's eviction callback: it credits the space itself. */
  async #evict(key: string): Promise<void> {
    let id: string, version: string;
    try {
      [id, version] = JSON.parse(key) as [string, string];
    } catch {
      return;
    }
    const row = this.#table.get(id, version);
    if (!row || row.state !== "removed") return;
    this.#log.info("evicting removed item for space", { id, version });
    await this.#deleteItem(row, false);
  }

  async #deleteItem(row: ItemRow, credit: boolean): Promise<void> {
    const blobs = this.#table.exclusiveBlobs(row.itemId, row.version);
    this.#table.delete(row.itemId, row.version);
    for (const b of blobs) await this.#store.remove(b.digest, credit);
    this.#emitRemoved(row);
  }

  /** Deletes blobs no row references and every download file (nothing may be running). */
  async #cleanup(): Promise<void> {
    const refs = this.#table.referencedDigests();
    const { blobs, stray } = await this.#store.installed();
    for (const digest of blobs.keys()) {
      if (!refs.has(digest)) {
        this.#log.debug("deleting unreferenced blob", { digest });
        await this.#store.remove(digest);
      }
    }
    for (const path of stray) await rm(path, { recursive: true, force: true });
    await this.#store.clearDownloads();
  }
}

/**
 * Creates the image manager: directories, allocators (the install one evicts removed items),
 * the downloader (http/https only, behind `allowHost`), start-up repair and the first TTL sweep.
 */
export async function createImageManager(options: ImageManagerOptions): Promise<ImageManager> {
  const roots = typeof options.caCert === "string"
    ? parseCertificates(options.caCert)
    : [...options.caCert];
  if (!roots.length) {
    throw new AosError(
      "invalidArgument",
      "Cannot create the image manager: caCert has no certificate",
    );
  }
  await Deno.mkdir(options.installPath, { recursive: true });
  await Deno.mkdir(options.downloadPath, { recursive: true });
  let evict: ((key: string) => Promise<void>) | undefined;
  const installSpace = await options.space.allocator({
    path: options.installPath,
    limitPercent: options.installLimitPercent ?? 0,
    remove: (key) => evict?.(key),
  });
  const downloadSpace = await options.space.allocator({ path: options.downloadPath });
  const downloaderOptions: DownloaderOptions = {
    ...options.downloader,
    schemes: ["http:", "https:"],
  };
  if (options.logger) downloaderOptions.logger = options.logger;
  if (options.allowHost) downloaderOptions.allowHost = options.allowHost;
  const downloader = new Downloader(downloaderOptions);
  const storeOptions: BlobStoreOptions = {
    ...options.blobs,
    installPath: options.installPath,
    downloadPath: options.downloadPath,
    blobInfo: options.blobInfo,
    roots,
    installSpace,
    downloadSpace,
    downloader,
  };
  if (options.allowHost) storeOptions.allowHost = options.allowHost;
  if (options.onAlert) storeOptions.onAlert = options.onAlert;
  if (options.logger) storeOptions.logger = options.logger;
  if (options.clock) storeOptions.clock = options.clock;
  const manager = new ImageManager(options, {
    store: new BlobStore(storeOptions),
    downloader,
    installSpace,
    downloadSpace,
    bindEvict: (fn) => (evict = fn),
  });
  try {
    await manager.init();
  } catch (err) {
    await manager[Symbol.asyncDispose]();
    throw err;
  }
  return manager;
}

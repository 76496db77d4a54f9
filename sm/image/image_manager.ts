/**
 * The SM image manager: installs update items (OCI images named by a manifest or index digest)
 * from the CM's blob server into the local store, keeps them in `servicemanager.db`, and
 * removes them by TTL, by space pressure and by version count.
 * @module
 */
import { randomUUID } from "node:crypto";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Database } from "@aos/shared/db";
import {
  AosError,
  type Clock,
  type Logger,
  nullLogger,
  systemClock,
  toAosError,
} from "@aos/shared/core";
import type { Downloader } from "@aos/shared/download";
import {
  aosDirDigest,
  DEFAULT_EXTRACT_LIMITS,
  extractLayerFile,
  type ExtractLimits,
  type ExtractOptions,
  hashFile,
} from "@aos/shared/layer";
import {
  type Descriptor,
  type ImageConfig,
  imageConfigSchema,
  type ImageIndex,
  imageIndexSchema,
  type ImageManifest,
  imageManifestSchema,
  isIndexMediaType,
  isManifestMediaType,
  type ItemConfig,
  itemConfigSchema,
  layerCompression,
  manifestItemConfig,
  MAX_OCI_JSON_BYTES,
  MediaType,
  parseDigest,
  parseOciJson,
  tryParseDigest,
} from "@aos/shared/oci";
import type { Space, SpaceAllocator, SpaceRegistry } from "@aos/shared/space";
import {
  type BlobRole,
  type BlobRow,
  ImageTables,
  type ItemRow,
  type ItemState,
  type LayerRow,
} from "../db.ts";
import { KeyedMutex, PinSet } from "./keyed.ts";
import { ImageLayout } from "./layout.ts";
import { scanLayer } from "./layer_scan.ts";

/**
 * The CM side of blob delivery (`SMService.GetBlobsInfos`): URLs for each digest. A digest the
 * CM does not have is either missing from the map or makes the call fail.
 */
export interface BlobSource {
  getBlobsInfos(digests: string[]): Promise<Map<string, string[]>>;
}

/** Item types: services and layers are unpacked; components are stored as is. */
export type ItemType = "service" | "layer" | "component";

const ITEM_TYPES: readonly ItemType[] = ["service", "layer", "component"];

/** What to install: the fields of `InstanceInfo` that name an image. */
export interface InstallRequest {
  itemId: string;
  version: string;
  /** `manifest_digest` from the CM: an image manifest or an image index. */
  manifestDigest: string;
  /** Default `service`. */
  type?: ItemType;
}

/** Paths of an item's blobs in the store. */
export interface ItemBlobPaths {
  index?: string;
  manifest: string;
  config?: string;
  itemConfig?: string;
  /** Raw layer blobs (components only; service layers are kept unpacked). */
  layers: string[];
}

/** An item version in the store. */
export interface InstalledItem {
  itemId: string;
  version: string;
  type: ItemType;
  /** The digest the CM named the item by. */
  manifestDigest: string;
  /** The image manifest's own digest (differs from `manifestDigest` for an index). */
  resolvedManifestDigest: string;
  state: ItemState;
  /** Installed or removed at (Unix ms). */
  timestamp: number;
  index?: ImageIndex;
  manifest: ImageManifest;
  /** The OCI image config (absent for components without one). */
  imageConfig?: ImageConfig;
  /** The Aos item config, when the manifest has one. */
  itemConfig?: ItemConfig;
  /**
   * Unpacked layer dirs in `rootfs.diff_ids` order. Index 0 is the top-most overlay lowerdir
   * (the Aos convention, spec §3.4). Empty for components.
   */
  layerPaths: string[];
  /** diffIDs of `layerPaths` (services), or the layer blob digests (components). */
  layerDigests: string[];
  blobPaths: ItemBlobPaths;
}

/** Progress of installs and removals, for logs and tests. */
export interface ImageEvent {
  type: "download" | "extract" | "reuse" | "installed" | "removed";
  itemId: string;
  version: string;
  digest?: string;
}

/** Options of {@link createImageManager}. */
export interface ImageManagerOptions {
  /** The store root (`imageManager.imagePath`). */
  imagePath: string;
  /** `servicemanager.db`, migrated with `SM_MIGRATIONS`; the caller closes it. */
  db: Database;
  /** Fetches blobs; the caller owns it (and its allow-list). */
  downloader: Downloader;
  /** Where blob URLs come from (the CM). */
  blobSource: BlobSource;
  /** The process-wide space registry. */
  space: SpaceRegistry;
  /** `imagesPartLimit`: percent of the partition the store may use (0 = no own limit). */
  limitPercent?: number;
  /** `updateItemTtl`: how long a removed item is kept, ms (default 30 days). */
  updateItemTtlMs?: number;
  /** `removeOutdatedPeriod`: period of the TTL sweep and integrity check, ms (0 = no timer; default 24 h). */
  removeOutdatedPeriodMs?: number;
  /** Versions kept per item id (default 2, like upstream). */
  maxVersionsPerItem?: number;
  /** Item versions kept in total (default 128, like upstream). */
  maxItems?: number;
  /** Layers per image (default 16, like upstream). */
  maxLayers?: number;
  /** Largest manifest, index or config JSON, bytes (default 4 MiB). */
  maxJsonBytes?: number;
  /** Extraction settings (whiteouts default to overlayfs whiteouts, as AosCore does). */
  extract?: Pick<
    ExtractOptions,
    "whiteoutMode" | "allowDevices" | "chown" | "mknod" | "setXattr" | "symlink"
  >;
  /** Extraction bounds (default the shared extractor's). */
  extractLimits?: Partial<ExtractLimits>;
  /**
   * Check each layer's uncompressed digest against its diffID (default true). Upstream does not,
   * which lets an image with a false diffID poison the layer dir other images share.
   */
  verifyDiffIds?: boolean;
  /** Picks the manifest of an index (default: the first image manifest). */
  platform?: { architecture?: string; os?: string; variant?: string };
  /** Integrity check at start: `full` rehashes everything (default), `quick` checks presence. */
  validateOnStart?: "none" | "quick" | "full";
  clock?: Clock;
  logger?: Logger;
  onEvent?: (event: ImageEvent) => void;
  /** Called after an item version left the store (TTL, eviction, version limit, broken). */
  onItemRemoved?: (item: { itemId: string; version: string }) => void;
}

/** What {@link ImageManager.validate} found. */
export interface ValidationResult {
  /** Item versions checked. */
  checked: number;
  /** Item versions found broken and removed, with the reason. */
  removed: { itemId: string; version: string; reason: string }[];
}

const DAY_MS = 24 * 60 * 60 * 1000;
const TEXT_LIMIT = 256;

function short(digest: string): string {
  return digest.length > 19 ? `${digest.slice(0, 19)}…` : digest;
}

function shown(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

function itemKey(itemId: string, version: string): string {
  return JSON.stringify([itemId, version]);
}

function parseItemKey(key: string): { itemId: string; version: string } | undefined {
  try {
    const v: unknown = JSON.parse(key);
    if (
      Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string"
    ) {
      return { itemId: v[0], version: v[1] };
    }
  } catch {
    // not ours
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function checkText(what: string, value: unknown): string {
  if (
    typeof value !== "string" || value.length === 0 || value.length > TEXT_LIMIT ||
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f]/.test(value)
  ) {
    throw new AosError(
      "invalidArgument",
      `Cannot install item: ${what} ${
        typeof value === "string" ? shown(value) : String(value)
      } is not 1..${TEXT_LIMIT} printable characters`,
    );
  }
  return value;
}

function sha256Digest(what: string, digest: string): string {
  const parsed = tryParseDigest(digest);
  if (!parsed) parseDigest(digest); // throws the standard message
  if (parsed?.algorithm !== "sha256") {
    throw new AosError("notSupported", `${what} ${short(digest)}: only sha256 blobs are supported`);
  }
  return digest;
}

/** State of one running install. */
class InstallContext {
  readonly pinned: string[] = [];
  readonly createdBlobs: string[] = [];
  readonly createdLayers: string[] = [];
  readonly urls = new Map<string, string[]>();
  constructor(
    readonly itemId: string,
    readonly version: string,
    readonly signal: AbortSignal,
  ) {}
}

/**
 * The image store of one SM. Create with {@link createImageManager}; dispose to stop the timer
 * and cancel installs.
 *
 * Crash safety: content is written to `tmp/` and renamed into place; an item is registered in
 * the database only once all of its content is in place, in one transaction; removals delete
 * database rows first and files after. At start, `tmp/` is emptied and anything on disk the
 * database does not reference is deleted, so an interrupted install leaves nothing and can
 * simply be retried.
 */
export class ImageManager implements AsyncDisposable {
  readonly layout: ImageLayout;
  readonly #o: ImageManagerOptions;
  readonly #tables: ImageTables;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #locks = new KeyedMutex();
  readonly #pins = new PinSet();
  readonly #installs = new Map<string, { req: InstallRequest; promise: Promise<InstalledItem> }>();
  readonly #cache = new Map<string, InstalledItem>();
  /** Layers extracted by this process that are not registered yet (shared by concurrent installs). */
  readonly #fresh = new Map<string, LayerRow>();
  readonly #stop = new AbortController();
  #allocator: SpaceAllocator | undefined;
  #active = 0;
  #idle: (() => void)[] = [];
  #maintenance: Promise<unknown> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** @internal Use {@link createImageManager}. */
  constructor(options: ImageManagerOptions) {
    this.#o = options;
    this.layout = new ImageLayout(options.imagePath);
    this.#tables = new ImageTables(options.db);
    this.#log = (options.logger ?? nullLogger).child({ module: "imagemanager" });
    this.#clock = options.clock ?? systemClock;
  }

  get #ttl(): number {
    return this.#o.updateItemTtlMs ?? 30 * DAY_MS;
  }

  get #maxJson(): number {
    return this.#o.maxJsonBytes ?? MAX_OCI_JSON_BYTES;
  }

  get #limits(): ExtractLimits {
    return { ...DEFAULT_EXTRACT_LIMITS, ...this.#o.extractLimits };
  }

  get #space(): SpaceAllocator {
    if (!this.#allocator) throw new AosError("wrongState", "image manager is not started");
    return this.#allocator;
  }

  /** @internal Prepares the store; called by {@link createImageManager}. */
  async init(): Promise<void> {
    const l = this.layout;
    for (const dir of [l.root, l.blobsDir, l.layersDir]) await mkdir(dir, { recursive: true });
    // Downloads, extractions and removals in progress when the process stopped.
    await rm(l.tmpDir, { recursive: true, force: true });
    await mkdir(l.downloadDir, { recursive: true });

    this.#tables.db.transaction(() => this.#dropUnreferencedRows());
    const mode = this.#o.validateOnStart ?? "full";
    if (mode !== "none") await this.#validate(mode === "full");
    await this.#sweepOrphans();

    // Created after the cleanup, so that a limit counts only what stays.
    this.#allocator = await this.#o.space.allocator({
      path: l.root,
      limitPercent: this.#o.limitPercent ?? 0,
      remove: (id) => this.#evict(id),
    });

    for (const row of this.#tables.listItems({ state: "removed" })) {
      await this.#space.addOutdatedItem(
        itemKey(row.itemId, row.version),
        this.#tables.exclusiveSize(row.itemId, row.version),
        row.timestamp,
      );
    }
    await this.removeOutdated(this.#clock.now());

    const period = this.#o.removeOutdatedPeriodMs ?? DAY_MS;
    if (period > 0) {
      this.#timer = setInterval(() => {
        this.#periodic().catch((err) => this.#log.error("periodic cleanup failed", { err }));
      }, period);
    }
  }

  /**
   * Installs an item version: fetches the manifest (or index → manifest), the item config, the
   * image config and the layers, verifies and unpacks them, then registers the item. An item
   * version already installed with the same digest is returned as is; a removed one is
   * re-validated and restored; concurrent calls for one item version share the work.
   */
  installItem(req: InstallRequest, signal?: AbortSignal): Promise<InstalledItem> {
    let key: string;
    try {
      if (this.#closed) throw new AosError("wrongState", "image manager is closed");
      checkText("item id", req.itemId);
      checkText("version", req.version);
      if (req.type !== undefined && !ITEM_TYPES.includes(req.type)) {
        throw new AosError("notSupported", `item type ${shown(String(req.type))} is not supported`);
      }
      sha256Digest("manifest digest", String(req.manifestDigest));
      key = itemKey(req.itemId, req.version);
    } catch (err) {
      return Promise.reject(this.#installError(req, err));
    }
    const running = this.#installs.get(key);
    if (running?.req.manifestDigest === req.manifestDigest && running.req.type === req.type) {
      return running.promise;
    }
    // Another digest for the same version: queue behind the running install.
    const start = running
      ? running.promise.then(() => {}, () => {}).then(() => this.#runInstall(req, signal))
      : this.#runInstall(req, signal);
    const entry = {
      req,
      promise: start.finally(() => {
        if (this.#installs.get(key) === entry) this.#installs.delete(key);
      }),
    };
    this.#installs.set(key, entry);
    return entry.promise;
  }

  /** An item version (installed or removed), or `undefined`. */
  async getItem(itemId: string, version: string): Promise<InstalledItem | undefined> {
    const row = this.#tables.getItem(itemId, version);
    return row ? await this.#load(row) : undefined;
  }

  /** All item rows, oldest first (cheap: no JSON is read). */
  listItems(filter: { itemId?: string; state?: ItemState } = {}): ItemRow[] {
    return this.#tables.listItems(filter);
  }

  /** Path of a stored blob; `notFound` when it is not in the store. */
  async getBlobPath(digest: string): Promise<string> {
    const path = this.layout.blobPath(digest);
    if (!this.#tables.getBlob(digest) || !(await exists(path))) {
      throw new AosError("notFound", `blob ${short(digest)} is not in the image store`);
    }
    return path;
  }

  /** Path of an unpacked layer by diffID; `notFound` when it is not in the store. */
  async getLayerPath(diffDigest: string): Promise<string> {
    const path = this.layout.layerPath(diffDigest);
    if (!this.#tables.getLayer(diffDigest) || !(await exists(path))) {
      throw new AosError("notFound", `layer ${short(diffDigest)} is not in the image store`);
    }
    return path;
  }

  /**
   * Marks an item version removed (its last instance stopped). Nothing is deleted yet: it stays
   * until `updateItemTtl` passes or its space is needed (oldest removed first), and installing
   * it again restores it. Returns false when the version is unknown.
   */
  async removeItem(itemId: string, version: string): Promise<boolean> {
    const row = this.#tables.getItem(itemId, version);
    if (!row) return false;
    if (row.state === "removed") return true;
    const now = this.#clock.now();
    this.#tables.setState(itemId, version, "removed", now);
    this.#cache.delete(itemKey(itemId, version));
    this.#emit({ type: "removed", itemId, version });
    this.#log.info("item marked removed", { itemId, version });
    await this.#space.addOutdatedItem(
      itemKey(itemId, version),
      this.#tables.exclusiveSize(itemId, version),
      now,
    );
    return true;
  }

  /** Deletes removed item versions whose TTL has passed at `now`; returns them. */
  async removeOutdated(now: number = this.#clock.now()): Promise<ItemRow[]> {
    const expired = this.#tables.listItems({ state: "removed" }).filter((r) =>
      r.timestamp + this.#ttl <= now
    );
    if (!expired.length) return [];
    for (const r of expired) this.#space.restoreOutdatedItem(itemKey(r.itemId, r.version));
    await this.#deleteItems(expired, { credit: true, reason: "TTL expired" });
    return expired;
  }

  /**
   * Integrity check of every registered item version: blobs present (and hashing to their
   * digest when `deep`), unpacked layers present (and matching their recorded dirhash when
   * `deep`). Broken item versions are deleted. Runs while no install is in progress.
   */
  validate(options: { deep?: boolean } = {}): Promise<ValidationResult> {
    return this.#exclusive(() => this.#validate(options.deep ?? true));
  }

  /** Stops the periodic task, cancels installs in progress and waits for them. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#stop.abort(new AosError("canceled", "image manager is closing"));
    await Promise.allSettled([...this.#installs.values()].map((i) => i.promise));
    await this.#maintenance?.catch(() => {});
    this.#allocator?.close();
  }

  // ---- install ------------------------------------------------------------------------------

  async #runInstall(req: InstallRequest, signal?: AbortSignal): Promise<InstalledItem> {
    while (this.#maintenance) await this.#maintenance.catch(() => {});
    this.#active++;
    const type = req.type ?? "service";
    const ctx = new InstallContext(
      req.itemId,
      req.version,
      signal ? AbortSignal.any([signal, this.#stop.signal]) : this.#stop.signal,
    );
    const existing = this.#tables.getItem(req.itemId, req.version);
    try {
      if (
        existing?.state === "installed" && existing.manifestDigest === req.manifestDigest &&
        existing.type === type
      ) {
        try {
          return await this.#load(existing);
        } catch (err) {
          this.#log.warn("installed item is unreadable, installing again", {
            itemId: req.itemId,
            version: req.version,
            err,
          });
        }
      }
      if (existing?.state === "removed") {
        // Back in use: it must not be evicted while (and after) it is re-validated.
        this.#space.restoreOutdatedItem(itemKey(req.itemId, req.version));
        await this.#dropBrokenContent(ctx, existing);
      }
      return await this.#install(ctx, req, type);
    } catch (err) {
      await this.#discardCreated(ctx);
      if (existing?.state === "removed") {
        await this.#reRegisterOutdated(req.itemId, req.version);
      }
      throw this.#installError(req, err);
    } finally {
      for (const key of ctx.pinned) this.#pins.unpin(key);
      if (--this.#active === 0) { for (const wake of this.#idle.splice(0)) wake(); }
    }
  }

  /**
   * Before a removed item is reused: content of it that no longer verifies is deleted, so that
   * the install fetches it again instead of trusting it.
   */
  async #dropBrokenContent(ctx: InstallContext, row: ItemRow): Promise<void> {
    for (const ref of this.#tables.itemBlobs(row.itemId, row.version)) {
      this.#pin(ctx, ref.digest);
      await this.#locks.run(ref.digest, async () => {
        const why = await this.#checkBlob(ref.digest, true);
        if (!why) return;
        this.#log.warn("stored blob is broken, fetching it again", { reason: why });
        await rm(this.layout.blobPath(ref.digest), { force: true });
      });
    }
    for (const layer of this.#tables.itemLayers(row.itemId, row.version)) {
      this.#pin(ctx, layer.diffDigest);
      await this.#locks.run(layer.diffDigest, async () => {
        const why = await this.#checkLayer(layer, true);
        if (!why) return;
        this.#log.warn("stored layer is broken, unpacking it again", { reason: why });
        await this.#trash(this.layout.layerDir(layer.diffDigest));
      });
    }
  }

  async #install(ctx: InstallContext, req: InstallRequest, type: ItemType): Promise<InstalledItem> {
    const blobs: (BlobRow & { role: BlobRole; position: number })[] = [];
    const unpack = type !== "component";

    const top = await this.#fetchJson(ctx, {
      digest: req.manifestDigest,
      mediaType: "",
      size: 0,
    }, "manifest");
    let index: ImageIndex | undefined;
    let manifest: ImageManifest;
    let manifestDigest = req.manifestDigest;
    const kind = documentKind(top.json);
    if (kind === "index") {
      index = parseOciJson(
        `image index ${short(req.manifestDigest)}`,
        top.bytes,
        imageIndexSchema,
        {
          maxBytes: this.#maxJson,
        },
      );
      blobs.push({ ...top.row(MediaType.ociIndex), role: "index", position: 0 });
      const chosen = this.#chooseManifest(index, req.manifestDigest);
      manifestDigest = sha256Digest("manifest", chosen.digest);
      this.#checkJsonSize("manifest", chosen);
      const m = await this.#fetchJson(ctx, chosen, "manifest");
      if (documentKind(m.json) !== "manifest") {
        throw new AosError(
          "invalidArgument",
          `index entry ${short(chosen.digest)} is not an image manifest`,
        );
      }
      manifest = parseManifest(chosen.digest, m.bytes, this.#maxJson);
      blobs.push({ ...m.row(chosen.mediaType), role: "manifest", position: 0 });
    } else {
      manifest = parseManifest(req.manifestDigest, top.bytes, this.#maxJson);
      blobs.push({
        ...top.row(manifest.mediaType ?? MediaType.ociManifest),
        role: "manifest",
        position: 0,
      });
    }

    // Check the whole tree before fetching anything big.
    const itemConfigDesc = manifestItemConfig(manifest);
    if (itemConfigDesc) {
      if (
        itemConfigDesc.mediaType !== MediaType.aosItemConfig &&
        itemConfigDesc.mediaType !== MediaType.aosServiceConfig
      ) {
        throw new AosError(
          "notSupported",
          `item config ${short(itemConfigDesc.digest)} has unknown media type ${
            shown(itemConfigDesc.mediaType)
          }`,
        );
      }
      sha256Digest("item config", itemConfigDesc.digest);
      this.#checkJsonSize("item config", itemConfigDesc);
    }
    const configIsImage = manifest.config.mediaType === MediaType.ociConfig ||
      manifest.config.mediaType === MediaType.dockerConfig;
    if (unpack && !configIsImage) {
      throw new AosError(
        "notSupported",
        `image config ${short(manifest.config.digest)} has unknown media type ${
          shown(manifest.config.mediaType)
        }`,
      );
    }
    if (configIsImage) {
      sha256Digest("image config", manifest.config.digest);
      this.#checkJsonSize("image config", manifest.config);
    }
    const maxLayers = this.#o.maxLayers ?? 16;
    if (manifest.layers.length > maxLayers) {
      throw new AosError(
        "outOfRange",
        `manifest ${
          short(manifestDigest)
        } has ${manifest.layers.length} layers, at most ${maxLayers} are allowed`,
      );
    }
    manifest.layers.forEach((l, i) => {
      sha256Digest(`layer ${i}`, l.digest);
      if (l.size <= 0) {
        throw new AosError("invalidArgument", `layer ${i} ${short(l.digest)} has size ${l.size}`);
      }
      if (unpack && layerCompression(l.mediaType) === undefined) {
        throw new AosError(
          "notSupported",
          `layer ${i} ${short(l.digest)} has media type ${
            shown(l.mediaType)
          }: not an extractable layer (tar or tar+gzip)`,
        );
      }
    });

    // One URL query for everything still missing, as the CM answers batches.
    const wanted = [
      ...(itemConfigDesc ? [itemConfigDesc.digest] : []),
      ...(configIsImage ? [manifest.config.digest] : []),
      ...manifest.layers.map((l) => l.digest),
    ];
    await this.#prefetchUrls(ctx, wanted);

    if (itemConfigDesc) {
      const c = await this.#fetchJson(ctx, itemConfigDesc, "item config");
      // Parsed now so that a bad item config fails the install, not a later start.
      parseOciJson(
        `item config ${short(itemConfigDesc.digest)}`,
        c.bytes,
        itemConfigSchema,
        { maxBytes: this.#maxJson },
      );
      blobs.push({ ...c.row(itemConfigDesc.mediaType), role: "itemConfig", position: 0 });
    }
    let imageConfig: ImageConfig | undefined;
    if (configIsImage) {
      const c = await this.#fetchJson(ctx, manifest.config, "image config");
      imageConfig = parseOciJson(
        `image config ${short(manifest.config.digest)}`,
        c.bytes,
        imageConfigSchema,
        { maxBytes: this.#maxJson },
      );
      blobs.push({ ...c.row(manifest.config.mediaType), role: "config", position: 0 });
    }

    const layers: LayerRow[] = [];
    if (unpack) {
      const diffIds = imageConfig?.rootfs.diff_ids ?? [];
      if (diffIds.length < manifest.layers.length) {
        throw new AosError(
          "invalidArgument",
          `image config ${
            short(manifest.config.digest)
          } has ${diffIds.length} diff_ids for ${manifest.layers.length} layers`,
        );
      }
      for (const [i, desc] of manifest.layers.entries()) {
        ctx.signal.throwIfAborted();
        layers.push(await this.#ensureLayer(ctx, desc, diffIds[i]!));
      }
    } else {
      for (const [i, desc] of manifest.layers.entries()) {
        ctx.signal.throwIfAborted();
        await this.#ensureBlob(ctx, desc, { what: `layer ${i}` });
        blobs.push({
          digest: desc.digest,
          mediaType: desc.mediaType,
          size: desc.size,
          role: "layer",
          position: i,
        });
      }
    }
    ctx.signal.throwIfAborted();
    return this.#register(ctx, req, type, blobs, layers);
  }

  #register(
    ctx: InstallContext,
    req: InstallRequest,
    type: ItemType,
    blobs: (BlobRow & { role: BlobRole; position: number })[],
    layers: LayerRow[],
  ): Promise<InstalledItem> {
    const now = this.#clock.now();
    const victims: ItemRow[] = [];
    let garbage: Garbage = { blobs: [], layers: [] };
    this.#tables.db.transaction(() => {
      this.#tables.putItem({
        item: {
          itemId: req.itemId,
          version: req.version,
          type,
          manifestDigest: req.manifestDigest,
          state: "installed",
          timestamp: now,
        },
        blobs,
        layers,
      });
      victims.push(...this.#overLimit(req.itemId, req.version));
      for (const v of victims) this.#tables.deleteItem(v.itemId, v.version);
      garbage = this.#dropUnreferencedRows();
    });
    for (const l of layers) this.#fresh.delete(l.diffDigest);
    this.#cache.delete(itemKey(req.itemId, req.version));
    this.#log.info("item installed", {
      itemId: req.itemId,
      version: req.version,
      digest: req.manifestDigest,
    });
    this.#emit({ type: "installed", itemId: ctx.itemId, version: ctx.version });
    return (async () => {
      await this.#afterDelete(victims, garbage, { credit: true, reason: "version limit" });
      const row = this.#tables.getItem(req.itemId, req.version);
      if (!row) throw new AosError("failed", "item vanished right after registration");
      return await this.#load(row);
    })();
  }

  /** Versions beyond the per-item and total limits, removed ones and oldest first. */
  #overLimit(itemId: string, version: string): ItemRow[] {
    const order = (a: ItemRow, b: ItemRow) =>
      (a.state === b.state ? 0 : a.state === "removed" ? -1 : 1) || a.timestamp - b.timestamp;
    const out: ItemRow[] = [];
    const maxVersions = Math.max(1, this.#o.maxVersionsPerItem ?? 2);
    const siblings = this.#tables.listItems({ itemId }).filter((r) => r.version !== version)
      .sort(order);
    out.push(...siblings.slice(0, Math.max(0, siblings.length + 1 - maxVersions)));
    const maxItems = Math.max(1, this.#o.maxItems ?? 128);
    const excess = this.#tables.countItems() - out.length - maxItems;
    if (excess > 0) {
      const taken = new Set(out.map((r) => itemKey(r.itemId, r.version)));
      const others = this.#tables.listItems().filter((r) =>
        !(r.itemId === itemId && r.version === version) && !taken.has(itemKey(r.itemId, r.version))
      ).sort(order);
      out.push(...others.slice(0, excess));
    }
    return out;
  }

  #chooseManifest(index: ImageIndex, digest: string): Descriptor {
    const want = this.#o.platform;
    const candidates = index.manifests.filter((m) => isManifestMediaType(m.mediaType));
    const chosen = candidates.find((m) =>
      !want ||
      ((!want.architecture || m.platform?.architecture === want.architecture) &&
        (!want.os || m.platform?.os === want.os) &&
        (!want.variant || m.platform?.variant === want.variant))
    );
    if (!chosen) {
      throw new AosError(
        "notFound",
        `image index ${short(digest)} has no image manifest${
          want ? ` for platform ${JSON.stringify(want)}` : ""
        } (${index.manifests.length} entries)`,
      );
    }
    return chosen;
  }

  #checkJsonSize(what: string, desc: Descriptor): void {
    if (desc.size <= 0 || desc.size > this.#maxJson) {
      throw new AosError(
        "outOfRange",
        `${what} ${short(desc.digest)} has size ${desc.size}, allowed 1..${this.#maxJson}`,
      );
    }
  }

  async #prefetchUrls(ctx: InstallContext, digests: string[]): Promise<void> {
    const missing: string[] = [];
    for (const d of new Set(digests)) {
      if (ctx.urls.has(d)) continue;
      if (await exists(this.layout.blobPath(d))) continue;
      missing.push(d);
    }
    if (missing.length) await this.#queryUrls(ctx, missing);
  }

  async #queryUrls(ctx: InstallContext, digests: string[]): Promise<void> {
    let answer: Map<string, string[]>;
    try {
      answer = await this.#o.blobSource.getBlobsInfos(digests);
    } catch (err) {
      const e = toAosError(err);
      throw new AosError(
        e.code === "failed" ? "notFound" : e.code,
        `cannot get URLs of ${digests.map(short).join(", ")} from the CM: ${e.message}`,
        { cause: err },
      );
    }
    for (const d of digests) {
      const urls = answer.get(d);
      if (
        !Array.isArray(urls) || urls.length === 0 ||
        urls.some((u) => typeof u !== "string" || u.length === 0 || u.length > 4096)
      ) {
        throw new AosError("notFound", `the CM has no URL for blob ${short(d)}`);
      }
      ctx.urls.set(d, urls.slice(0, 8));
    }
  }

  /** Downloads `digest` into staging, trying each URL; returns the staged file. */
  async #download(ctx: InstallContext, digest: string, size: number): Promise<string> {
    if (!ctx.urls.has(digest)) await this.#queryUrls(ctx, [digest]);
    let last: unknown;
    for (const url of ctx.urls.get(digest) ?? []) {
      ctx.signal.throwIfAborted();
      this.#emit({ type: "download", itemId: ctx.itemId, version: ctx.version, digest });
      try {
        const res = await this.#o.downloader.download({
          digest,
          url,
          dir: this.layout.downloadDir,
          signal: ctx.signal,
          ...(size > 0 ? { size } : {}),
        });
        return res.path;
      } catch (err) {
        last = err;
        if (ctx.signal.aborted) break;
        this.#log.warn("download failed", { digest, url, err });
      }
    }
    if (ctx.signal.aborted) {
      throw new AosError("canceled", `download of ${short(digest)} canceled`, {
        cause: ctx.signal.reason,
      });
    }
    throw toAosError(last);
  }

  async #dropStaging(digest: string): Promise<void> {
    for (const f of this.layout.stagingFiles(digest)) await rm(f, { force: true });
  }

  #pin(ctx: InstallContext, key: string): void {
    this.#pins.pin(key);
    ctx.pinned.push(key);
  }

  /** Makes a blob present in `blobs/`, downloading it when needed; returns its path. */
  #ensureBlob(
    ctx: InstallContext,
    desc: { digest: string; size: number },
    opts: { what: string; maxBytes?: number },
  ): Promise<string> {
    const digest = desc.digest;
    this.#pin(ctx, digest);
    return this.#locks.run(digest, async () => {
      const final = this.layout.blobPath(digest);
      if (await exists(final)) {
        this.#emit({ type: "reuse", itemId: ctx.itemId, version: ctx.version, digest });
        return final;
      }
      let space: Space | undefined;
      try {
        if (desc.size > 0) space = await this.#space.allocate(desc.size);
        const staged = await this.#download(ctx, digest, desc.size);
        if (opts.maxBytes !== undefined) {
          const size = (await stat(staged)).size;
          if (size > opts.maxBytes) {
            throw new AosError(
              "outOfRange",
              `${opts.what} ${short(digest)} has ${size} bytes, more than ${opts.maxBytes}`,
            );
          }
        }
        await mkdir(join(final, ".."), { recursive: true });
        await rename(staged, final);
        ctx.createdBlobs.push(digest);
        space?.accept();
        return final;
      } catch (err) {
        await this.#dropStaging(digest);
        throw err;
      } finally {
        space?.release();
      }
    });
  }

  async #fetchJson(
    ctx: InstallContext,
    desc: { digest: string; size: number; mediaType: string },
    what: string,
  ): Promise<{ bytes: Uint8Array; json: unknown; row: (mediaType: string) => BlobRow }> {
    const path = await this.#ensureBlob(ctx, desc, { what, maxBytes: this.#maxJson });
    const size = (await stat(path)).size;
    if (size > this.#maxJson) {
      throw new AosError("outOfRange", `${what} ${short(desc.digest)} has ${size} bytes`);
    }
    const bytes = await Deno.readFile(path);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(bytes));
    } catch (err) {
      throw new AosError(
        "invalidArgument",
        `${what} ${short(desc.digest)} is not JSON: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return {
      bytes,
      json,
      row: (mediaType) => ({ digest: desc.digest, mediaType, size: bytes.byteLength }),
    };
  }

  /** Makes an unpacked layer present in `layers/`; returns its row. */
  #ensureLayer(ctx: InstallContext, desc: Descriptor, diffId: string): Promise<LayerRow> {
    const parsed = parseDigest(diffId);
    this.#pin(ctx, diffId);
    this.#pin(ctx, desc.digest);
    return this.#locks.run(diffId, async () => {
      const dir = this.layout.layerDir(diffId);
      if (await exists(this.layout.layerPath(diffId))) {
        const known = this.#tables.getLayer(diffId) ?? this.#fresh.get(diffId);
        if (known) {
          this.#emit({ type: "reuse", itemId: ctx.itemId, version: ctx.version, digest: diffId });
          return known;
        }
        // Neither registered nor ours: not trustworthy, unpack again.
        await this.#trash(dir);
      }
      return await this.#locks.run(desc.digest, () => this.#unpack(ctx, desc, diffId, parsed));
    });
  }

  async #unpack(
    ctx: InstallContext,
    desc: Descriptor,
    diffId: string,
    parsed: { algorithm: "sha256" | "sha512" },
  ): Promise<LayerRow> {
    const compression = layerCompression(desc.mediaType)!;
    const label = `${short(diffId)} (blob ${short(desc.digest)})`;
    let blobSpace: Space | undefined;
    let layerSpace: Space | undefined;
    const tmp = join(this.layout.tmpDir, `extract-${randomUUID()}`);
    try {
      blobSpace = await this.#space.allocate(desc.size);
      const staged = await this.#download(ctx, desc.digest, desc.size);
      this.#emit({ type: "extract", itemId: ctx.itemId, version: ctx.version, digest: diffId });
      const limits = this.#limits;
      let scan;
      try {
        scan = await scanLayer(staged, compression, parsed.algorithm, limits, ctx.signal);
      } catch (err) {
        const e = toAosError(err);
        throw new AosError(e.code, `Cannot extract layer ${label}: ${e.message}`, { cause: err });
      }
      if ((this.#o.verifyDiffIds ?? true) && scan.diffDigest !== diffId) {
        throw new AosError(
          "invalidChecksum",
          `layer ${label} unpacks to ${short(scan.diffDigest)}, not its diffID`,
        );
      }
      layerSpace = await this.#space.allocate(scan.fileBytes);
      await mkdir(join(tmp, "layer"), { recursive: true });
      await extractLayerFile(staged, join(tmp, "layer"), {
        whiteoutMode: "overlay",
        ...this.#o.extract,
        label,
        compression,
        limits: { ...limits, maxTotalBytes: scan.fileBytes, maxEntries: Math.max(1, scan.entries) },
        signal: ctx.signal,
        logger: this.#log,
      });
      const dirDigest = await aosDirDigest(join(tmp, "layer"));
      const dir = this.layout.layerDir(diffId);
      await mkdir(join(dir, ".."), { recursive: true });
      await rename(tmp, dir);
      ctx.createdLayers.push(diffId);
      layerSpace.accept();
      const row: LayerRow = {
        diffDigest: diffId,
        blobDigest: desc.digest,
        mediaType: desc.mediaType,
        dirDigest,
        size: scan.fileBytes,
      };
      this.#fresh.set(diffId, row);
      return row;
    } finally {
      await rm(tmp, { recursive: true, force: true });
      // The packed blob is not kept: the unpacked tree is what runtimes use.
      await this.#dropStaging(desc.digest);
      blobSpace?.release();
      layerSpace?.release();
    }
  }

  /** After a failed install: deletes what it put in place that nothing registered uses. */
  async #discardCreated(ctx: InstallContext): Promise<void> {
    const garbage: Garbage = { blobs: [], layers: [] };
    for (const d of ctx.createdBlobs) {
      if (!this.#tables.getBlob(d)) garbage.blobs.push({ digest: d, mediaType: "", size: 0 });
    }
    for (const d of ctx.createdLayers) {
      this.#fresh.delete(d);
      if (!this.#tables.getLayer(d)) {
        garbage.layers.push({
          diffDigest: d,
          blobDigest: "",
          mediaType: "",
          dirDigest: "",
          size: 0,
        });
      }
    }
    // Our own pins are still held: drop them from the check by releasing first.
    for (const key of ctx.pinned.splice(0)) this.#pins.unpin(key);
    await this.#removeFiles(garbage, { credit: false, keepIfRegistered: true });
  }

  async #reRegisterOutdated(itemId: string, version: string): Promise<void> {
    const row = this.#tables.getItem(itemId, version);
    if (row?.state !== "removed") return;
    await this.#space.addOutdatedItem(
      itemKey(itemId, version),
      this.#tables.exclusiveSize(itemId, version),
      row.timestamp,
    ).catch((err) => this.#log.warn("cannot re-register outdated item", { itemId, err }));
  }

  #installError(req: InstallRequest, err: unknown): AosError {
    const e = toAosError(err);
    const name = `Cannot install item ${shown(String(req.itemId))} version ${
      shown(String(req.version))
    } (${short(String(req.manifestDigest))})`;
    if (e.message.startsWith(name)) return e;
    return new AosError(e.code, `${name}: ${e.message}`, { cause: err });
  }

  // ---- removal ------------------------------------------------------------------------------

  /** The allocator's eviction callback: deletes a removed item version now. */
  async #evict(id: string): Promise<void> {
    const key = parseItemKey(id);
    if (!key) return;
    const row = this.#tables.getItem(key.itemId, key.version);
    if (row?.state !== "removed") return;
    // The allocator credits the item's size itself.
    await this.#deleteItems([row], { credit: false, reason: "space needed" });
  }

  async #deleteItems(
    rows: ItemRow[],
    opts: { credit: boolean; reason: string },
  ): Promise<void> {
    let garbage: Garbage = { blobs: [], layers: [] };
    this.#tables.db.transaction(() => {
      for (const r of rows) this.#tables.deleteItem(r.itemId, r.version);
      garbage = this.#dropUnreferencedRows();
    });
    await this.#afterDelete(rows, garbage, opts);
  }

  async #afterDelete(
    rows: ItemRow[],
    garbage: Garbage,
    opts: { credit: boolean; reason: string },
  ): Promise<void> {
    for (const r of rows) {
      const key = itemKey(r.itemId, r.version);
      this.#cache.delete(key);
      this.#allocator?.restoreOutdatedItem(key);
      this.#log.info("item deleted", { itemId: r.itemId, version: r.version, reason: opts.reason });
    }
    await this.#removeFiles(garbage, { credit: opts.credit, keepIfRegistered: true });
    for (const r of rows) {
      try {
        this.#o.onItemRemoved?.({ itemId: r.itemId, version: r.version });
      } catch (err) {
        this.#log.warn("item removal listener failed", { err });
      }
    }
  }

  /** In a transaction: deletes content rows nothing references and no install has pinned. */
  #dropUnreferencedRows(): Garbage {
    const out: Garbage = { blobs: [], layers: [] };
    for (const b of this.#tables.unreferencedBlobs()) {
      if (this.#pins.has(b.digest)) continue;
      this.#tables.deleteBlob(b.digest);
      out.blobs.push(b);
    }
    for (const l of this.#tables.unreferencedLayers()) {
      if (this.#pins.has(l.diffDigest)) continue;
      this.#tables.deleteLayer(l.diffDigest);
      out.layers.push(l);
    }
    return out;
  }

  /**
   * Deletes content files. Each is re-checked under its lock: an install that pinned it in the
   * meantime, or registered it again, keeps it.
   */
  async #removeFiles(
    garbage: Garbage,
    opts: { credit: boolean; keepIfRegistered: boolean },
  ): Promise<void> {
    for (const b of garbage.blobs) {
      if (this.#pins.has(b.digest)) continue;
      await this.#locks.run(b.digest, async () => {
        if (this.#pins.has(b.digest)) return;
        if (opts.keepIfRegistered && this.#tables.getBlob(b.digest)) return;
        await rm(this.layout.blobPath(b.digest), { force: true });
        if (opts.credit && b.size > 0) this.#allocator?.free(b.size);
      });
    }
    for (const l of garbage.layers) {
      if (this.#pins.has(l.diffDigest)) continue;
      await this.#locks.run(l.diffDigest, async () => {
        if (this.#pins.has(l.diffDigest)) return;
        if (opts.keepIfRegistered && this.#tables.getLayer(l.diffDigest)) return;
        await this.#trash(this.layout.layerDir(l.diffDigest));
        if (opts.credit && l.size > 0) this.#allocator?.free(l.size);
      });
    }
  }

  /** Removes a dir by renaming it into `tmp/` first, so it disappears at once. */
  async #trash(dir: string): Promise<void> {
    const trash = join(this.layout.tmpDir, `trash-${randomUUID()}`);
    try {
      await Deno.rename(dir, trash);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    await rm(trash, { recursive: true, force: true });
  }

  // ---- maintenance --------------------------------------------------------------------------

  /** Runs `fn` with no install in progress and none starting. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      while (this.#maintenance) await this.#maintenance.catch(() => {});
      const p = (async () => {
        if (this.#active > 0) await new Promise<void>((r) => this.#idle.push(r));
        return await fn();
      })();
      this.#maintenance = p;
      try {
        return await p;
      } finally {
        if (this.#maintenance === p) this.#maintenance = undefined;
      }
    };
    return run();
  }

  async #periodic(): Promise<void> {
    if (this.#closed || this.#active > 0 || this.#maintenance) return;
    await this.removeOutdated(this.#clock.now());
    await this.#exclusive(async () => {
      await this.#validate(true);
      await this.#sweepOrphans();
    });
  }

  async #validate(deep: boolean): Promise<ValidationResult> {
    const result: ValidationResult = { checked: 0, removed: [] };
    const blobOk = new Map<string, string | undefined>();
    const layerOk = new Map<string, string | undefined>();
    const broken: ItemRow[] = [];
    for (const row of this.#tables.listItems()) {
      result.checked++;
      let reason: string | undefined;
      for (const ref of this.#tables.itemBlobs(row.itemId, row.version)) {
        if (!blobOk.has(ref.digest)) {
          blobOk.set(ref.digest, await this.#checkBlob(ref.digest, deep));
        }
        reason = blobOk.get(ref.digest);
        if (reason) break;
      }
      if (!reason) {
        for (const l of this.#tables.itemLayers(row.itemId, row.version)) {
          if (!layerOk.has(l.diffDigest)) {
            layerOk.set(l.diffDigest, await this.#checkLayer(l, deep));
          }
          reason = layerOk.get(l.diffDigest);
          if (reason) break;
        }
      }
      if (reason) {
        this.#log.error("stored item is broken, removing it", {
          itemId: row.itemId,
          version: row.version,
          reason,
        });
        broken.push(row);
        result.removed.push({ itemId: row.itemId, version: row.version, reason });
      }
    }
    if (broken.length) {
      // Broken content must go even if an intact item shares it: it is re-fetched on demand.
      for (const [digest, why] of blobOk) {
        if (why) await rm(this.layout.blobPath(digest), { force: true });
      }
      for (const [digest, why] of layerOk) {
        if (why) await this.#trash(this.layout.layerDir(digest));
      }
      const brokenKeys = new Set(broken.map((r) => itemKey(r.itemId, r.version)));
      for (const row of this.#tables.listItems()) {
        if (brokenKeys.has(itemKey(row.itemId, row.version))) continue;
        const uses = this.#tables.itemBlobs(row.itemId, row.version).some((b) =>
          blobOk.get(b.digest)
        ) ||
          this.#tables.itemLayers(row.itemId, row.version).some((l) => layerOk.get(l.diffDigest));
        if (uses) {
          broken.push(row);
          result.removed.push({
            itemId: row.itemId,
            version: row.version,
            reason: "shares broken content",
          });
        }
      }
      await this.#deleteItems(broken, { credit: true, reason: "integrity check failed" });
    }
    return result;
  }

  async #checkBlob(digest: string, deep: boolean): Promise<string | undefined> {
    const row = this.#tables.getBlob(digest);
    const path = this.layout.blobPath(digest);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      return `blob ${short(digest)} is missing`;
    }
    if (row && size !== row.size) {
      return `blob ${short(digest)} has ${size} bytes, expected ${row.size}`;
    }
    if (deep && `sha256:${await hashFile(path)}` !== digest) {
      return `blob ${short(digest)} does not match its digest`;
    }
    return undefined;
  }

  async #checkLayer(layer: LayerRow, deep: boolean): Promise<string | undefined> {
    const path = this.layout.layerPath(layer.diffDigest);
    try {
      if (!(await Deno.lstat(path)).isDirectory) {
        return `layer ${short(layer.diffDigest)} is not a dir`;
      }
    } catch {
      return `layer ${short(layer.diffDigest)} is missing`;
    }
    if (deep) {
      let digest: string;
      try {
        digest = await aosDirDigest(path);
      } catch (err) {
        return `layer ${short(layer.diffDigest)} cannot be hashed: ${(err as Error).message}`;
      }
      if (digest !== layer.dirDigest) return `layer ${short(layer.diffDigest)} content changed`;
    }
    return undefined;
  }

  /** Deletes files under `blobs/` and `layers/` the database does not know. */
  async #sweepOrphans(): Promise<void> {
    const known = (what: "blob" | "layer", name: string) =>
      what === "blob" ? this.#tables.getBlob(name) : this.#tables.getLayer(name);
    for (
      const [what, base] of [["blob", this.layout.blobsDir], [
        "layer",
        this.layout.layersDir,
      ]] as const
    ) {
      for await (const alg of Deno.readDir(base)) {
        const algDir = join(base, alg.name);
        if (!alg.isDirectory) {
          await rm(algDir, { recursive: true, force: true });
          continue;
        }
        for await (const entry of Deno.readDir(algDir)) {
          const digest = `${alg.name}:${entry.name}`;
          if (tryParseDigest(digest) && known(what, digest)) continue;
          if (tryParseDigest(digest) && this.#pins.has(digest)) continue;
          this.#log.info("removing unregistered content", { what, digest });
          const path = join(algDir, entry.name);
          if (what === "layer" && entry.isDirectory) await this.#trash(path);
          else await rm(path, { recursive: true, force: true });
        }
      }
    }
  }

  // ---- reading ------------------------------------------------------------------------------

  async #load(row: ItemRow): Promise<InstalledItem> {
    const key = itemKey(row.itemId, row.version);
    const cached = this.#cache.get(key);
    if (cached && cached.manifestDigest === row.manifestDigest) {
      return { ...cached, state: row.state, timestamp: row.timestamp };
    }
    const refs = this.#tables.itemBlobs(row.itemId, row.version);
    const one = (role: BlobRole) => refs.find((r) => r.role === role)?.digest;
    const read = async <T>(
      role: BlobRole,
      what: string,
      schema: Parameters<typeof parseOciJson>[2],
    ) => {
      const digest = one(role);
      if (!digest) return undefined;
      const bytes = await Deno.readFile(this.layout.blobPath(digest)).catch((cause) => {
        throw new AosError(
          "notFound",
          `${what} ${short(digest)} of item ${shown(row.itemId)} is missing`,
          {
            cause,
          },
        );
      });
      return parseOciJson(`${what} ${short(digest)}`, bytes, schema, {
        maxBytes: this.#maxJson,
      }) as T;
    };
    const manifestDigest = one("manifest");
    const manifest = await read<ImageManifest>("manifest", "manifest", imageManifestSchema);
    if (!manifest || !manifestDigest) {
      throw new AosError(
        "notFound",
        `item ${shown(row.itemId)} ${shown(row.version)} has no manifest`,
      );
    }
    const index = await read<ImageIndex>("index", "image index", imageIndexSchema);
    const imageConfig = await read<ImageConfig>("config", "image config", imageConfigSchema);
    const itemConfig = await read<ItemConfig>("itemConfig", "item config", itemConfigSchema);
    const type = (ITEM_TYPES as readonly string[]).includes(row.type)
      ? row.type as ItemType
      : "service";
    const layers = this.#tables.itemLayers(row.itemId, row.version);
    const layerBlobs = refs.filter((r) => r.role === "layer").sort((a, b) =>
      a.position - b.position
    );
    const blobPaths: ItemBlobPaths = {
      manifest: this.layout.blobPath(manifestDigest),
      layers: layerBlobs.map((b) => this.layout.blobPath(b.digest)),
    };
    for (
      const [role, field] of [["index", "index"], ["config", "config"], [
        "itemConfig",
        "itemConfig",
      ]] as const
    ) {
      const d = one(role);
      if (d) blobPaths[field] = this.layout.blobPath(d);
    }
    const item: InstalledItem = {
      itemId: row.itemId,
      version: row.version,
      type,
      manifestDigest: row.manifestDigest,
      resolvedManifestDigest: manifestDigest,
      state: row.state,
      timestamp: row.timestamp,
      manifest,
      layerPaths: layers.map((l) => this.layout.layerPath(l.diffDigest)),
      layerDigests: type === "component"
        ? layerBlobs.map((b) => b.digest)
        : layers.map((l) => l.diffDigest),
      blobPaths,
    };
    if (index) item.index = index;
    if (imageConfig) item.imageConfig = imageConfig;
    if (itemConfig) item.itemConfig = itemConfig;
    this.#cache.set(key, item);
    return item;
  }

  #emit(event: ImageEvent): void {
    try {
      this.#o.onEvent?.(event);
    } catch (err) {
      this.#log.warn("image event listener failed", { err });
    }
  }
}

interface Garbage {
  blobs: BlobRow[];
  layers: LayerRow[];
}

/** Tells an index from a manifest; anything else is refused. */
function documentKind(json: unknown): "index" | "manifest" {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AosError("invalidArgument", "the document is not a JSON object");
  }
  const keys = new Map(Object.keys(json).map((k) => [k.toLowerCase(), k]));
  const mtKey = keys.get("mediatype");
  const mediaType = mtKey === undefined ? undefined : (json as Record<string, unknown>)[mtKey];
  if (mediaType !== undefined) {
    if (typeof mediaType === "string" && isIndexMediaType(mediaType)) return "index";
    if (typeof mediaType === "string" && isManifestMediaType(mediaType)) return "manifest";
    throw new AosError(
      "notSupported",
      `unknown media type ${shown(String(mediaType))} (expected an OCI image manifest or index)`,
    );
  }
  return keys.has("manifests") && !keys.has("layers") && !keys.has("config") ? "index" : "manifest";
}

function parseManifest(digest: string, bytes: Uint8Array, maxBytes: number): ImageManifest {
  return parseOciJson(`image manifest ${short(digest)}`, bytes, imageManifestSchema, { maxBytes });
}

/**
 * Creates the image manager: prepares the store (empties `tmp/`, drops what the database does
 * not reference, checks integrity, registers removed items for eviction, applies the TTL) and
 * starts the periodic cleanup.
 */
export async function createImageManager(options: ImageManagerOptions): Promise<ImageManager> {
  const m = new ImageManager(options);
  try {
    await m.init();
  } catch (err) {
    await m[Symbol.asyncDispose]();
    throw err;
  }
  return m;
}

/**
 * Partition-aware space allocation with eviction of outdated items.
 * @module
 */
import { AosError } from "../core/errors.ts";
import { type Logger, nullLogger } from "../core/logger.ts";
import { Mutex } from "../core/mutex.ts";
import { realSpaceFs, type SpaceFs } from "./fs.ts";

/** Upstream keeps at most this many outdated items per partition. */
export const DEFAULT_MAX_OUTDATED_ITEMS = 64;

/**
 * Deletes an evicted item's data. The allocator credits the item's size itself, so the callback
 * must not call {@link SpaceAllocator.free} for it, nor allocate on the same partition (the
 * partition lock is held while it runs).
 */
export type ItemRemover = (id: string) => Promise<void> | void;

/** Options of {@link SpaceRegistry}. */
export interface SpaceRegistryOptions {
  /** Filesystem port (default: the real filesystem). */
  fs?: SpaceFs;
  /** Logger for evictions. */
  logger?: Logger;
  /** Outdated items kept per partition before the oldest is evicted (default 64). */
  maxOutdatedItems?: number;
}

/** Options of {@link SpaceRegistry.allocator}. */
export interface SpaceAllocatorOptions {
  /** An existing directory whose partition is accounted. */
  path: string;
  /** Share of the partition's total size this allocator may use, 0–100; 0 means no own limit. */
  limitPercent?: number;
  /** Deletes outdated items when space is needed; required for {@link SpaceAllocator.addOutdatedItem}. */
  remove?: ItemRemover;
  /**
   * Bytes this allocator already uses, for the limit. Default: the size of the files under
   * `path` when a limit is set, else 0.
   */
  used?: number;
}

/** State of a {@link Space} reservation. */
export type SpaceState = "pending" | "accepted" | "released";

/** A reservation returned by {@link SpaceAllocator.allocate}. */
export interface Space extends Disposable {
  /** Reserved bytes. */
  readonly size: number;
  /** `pending` until accepted or released. */
  readonly state: SpaceState;
  /** Keeps the space as used (the data is now on disk). */
  accept(): void;
  /** Returns a pending reservation; a no-op once accepted or released, so it fits `finally`. */
  release(): void;
  /** Corrects the reserved size to what was really written; growing does not evict. */
  resize(size: number): void;
}

/** A snapshot of one partition's accounting, for diagnostics and tests. */
export interface PartitionInfo {
  /** Device id (`st_dev`). */
  device: number;
  /** Mount point (or highest inspectable ancestor). */
  mountPoint: string;
  /** Total size in bytes, as last read. */
  total: number;
  /** Free bytes as accounted now (statfs at the start of a burst minus reservations). */
  available: number;
  /** Reservations neither accepted nor released. */
  pending: number;
  /** Sum of the allocators' limit percentages. */
  limitPercent: number;
  /** Outdated items, oldest first. */
  outdated: { path: string; id: string; size: number; timestamp: number }[];
}

interface OutdatedItem {
  allocator: SpaceAllocator;
  id: string;
  size: number;
  timestamp: number;
}

class Partition {
  readonly mutex = new Mutex();
  readonly allocators = new Set<SpaceAllocator>();
  outdated: OutdatedItem[] = [];
  available = 0;
  pending = 0;
  limitPercent = 0;

  constructor(
    readonly device: number,
    readonly mountPoint: string,
    public total: number,
  ) {}

  evictable(owner?: SpaceAllocator): number {
    let sum = 0;
    for (const item of this.outdated) if (!owner || item.allocator === owner) sum += item.size;
    return sum;
  }
}

function checkSize(size: number, what: string): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new AosError("invalidArgument", `Cannot ${what}: size ${size} is not a byte count`);
  }
}

/**
 * Creates allocators and shares one accounting object between all allocators whose paths are on
 * the same filesystem (same `st_dev`). Create one per process and pass it to every user.
 */
export class SpaceRegistry {
  readonly #fs: SpaceFs;
  readonly #logger: Logger;
  readonly #maxOutdated: number;
  readonly #partitions = new Map<number, Partition>();
  readonly #mutex = new Mutex();

  constructor(options: SpaceRegistryOptions = {}) {
    this.#fs = options.fs ?? realSpaceFs;
    this.#logger = options.logger ?? nullLogger;
    this.#maxOutdated = options.maxOutdatedItems ?? DEFAULT_MAX_OUTDATED_ITEMS;
  }

  /** Creates an allocator for `options.path`, joining the partition of that path. */
  allocator(options: SpaceAllocatorOptions): Promise<SpaceAllocator> {
    const limitPercent = options.limitPercent ?? 0;
    if (!(limitPercent >= 0 && limitPercent <= 100)) {
      return Promise.reject(
        new AosError(
          "invalidArgument",
          `Cannot create a space allocator for ${options.path}: limit ${limitPercent}% is not within 0–100`,
        ),
      );
    }
    return this.#mutex.run(async () => {
      const device = await this.#fs.device(options.path);
      let partition = this.#partitions.get(device);
      if (!partition) {
        const [mountPoint, size] = await Promise.all([
          this.#fs.mountPoint(options.path),
          this.#fs.size(options.path),
        ]);
        partition = new Partition(device, mountPoint, size.total);
      }
      if (partition.limitPercent + limitPercent > 100) {
        throw new AosError(
          "outOfRange",
          `Cannot create a space allocator for ${options.path} with limit ${limitPercent}%: ` +
            `partition ${partition.mountPoint} already has ${partition.limitPercent}% assigned`,
        );
      }
      const used = options.used ??
        (limitPercent > 0 ? await this.#fs.usedBy(options.path) : 0);
      this.#partitions.set(device, partition);
      const allocator = new SpaceAllocator(
        {
          partition,
          fs: this.#fs,
          logger: this.#logger.child({ module: "space", path: options.path }),
          maxOutdated: this.#maxOutdated,
          onClose: (a) => this.#detach(a, partition),
        },
        options.path,
        limitPercent,
        used,
        options.remove,
      );
      partition.limitPercent += limitPercent;
      partition.allocators.add(allocator);
      return allocator;
    });
  }

  /** Snapshots of every partition in use. */
  partitions(): PartitionInfo[] {
    return [...this.#partitions.values()].map((p) => ({
      device: p.device,
      mountPoint: p.mountPoint,
      total: p.total,
      available: p.available,
      pending: p.pending,
      limitPercent: p.limitPercent,
      outdated: p.outdated.map((o) => ({
        path: o.allocator.path,
        id: o.id,
        size: o.size,
        timestamp: o.timestamp,
      })),
    }));
  }

  #detach(allocator: SpaceAllocator, partition: Partition): void {
    partition.allocators.delete(allocator);
    partition.limitPercent -= allocator.limitPercent;
    partition.outdated = partition.outdated.filter((o) => o.allocator !== allocator);
    if (!partition.allocators.size) this.#partitions.delete(partition.device);
  }
}

/** Creates a {@link SpaceRegistry}. */
export function createSpaceRegistry(options: SpaceRegistryOptions = {}): SpaceRegistry {
  return new SpaceRegistry(options);
}

interface AllocatorDeps {
  partition: Partition;
  fs: SpaceFs;
  logger: Logger;
  maxOutdated: number;
  onClose: (allocator: SpaceAllocator) => void;
}

/** Allocates space for one directory; created by {@link SpaceRegistry.allocator}. */
export class SpaceAllocator implements Disposable {
  readonly #deps: AllocatorDeps;
  readonly #remove: ItemRemover | undefined;
  #used: number;
  #closed = false;

  /** @internal Use {@link SpaceRegistry.allocator}. */
  constructor(
    deps: AllocatorDeps,
    /** The directory this allocator accounts for. */
    readonly path: string,
    /** Share of the partition this allocator may use (0 = no own limit). */
    readonly limitPercent: number,
    used: number,
    remove: ItemRemover | undefined,
  ) {
    this.#deps = deps;
    this.#used = used;
    this.#remove = remove;
  }

  /** Mount point of the partition. */
  get mountPoint(): string {
    return this.#deps.partition.mountPoint;
  }

  /** Bytes used by this allocator (accepted and pending), as counted for the limit. */
  get used(): number {
    return this.#used;
  }

  /** The limit in bytes (0 = none besides the partition). */
  get limit(): number {
    return Math.floor(this.#deps.partition.total * this.limitPercent / 100);
  }

  /**
   * Reserves `size` bytes. When the allocator's limit or the partition is short, outdated items
   * are evicted oldest first (own items for the limit, any allocator's for the partition);
   * nothing is evicted when even evicting everything would not be enough.
   * @throws {AosError} `noMemory` when the space cannot be found.
   */
  allocate(size: number): Promise<Space> {
    try {
      this.#checkOpen("allocate");
      checkSize(size, `allocate in ${this.path}`);
    } catch (err) {
      return Promise.reject(err);
    }
    const partition = this.#deps.partition;
    return partition.mutex.run(async () => {
      this.#checkOpen("allocate");
      if (partition.pending === 0) {
        // A new burst: nothing is reserved-but-unwritten, so statfs is the truth now.
        const s = await this.#deps.fs.size(this.path);
        partition.total = s.total;
        partition.available = s.available;
      }
      const limit = this.limit;
      if (limit > 0 && this.#used + size > limit) {
        const need = this.#used + size - limit;
        const evictable = partition.evictable(this);
        if (evictable < need) {
          throw new AosError(
            "noMemory",
            `not enough space in ${this.path} (limit ${this.limitPercent}% of ${partition.mountPoint} = ${limit} bytes) ` +
              `for ${size} bytes: ${Math.max(0, limit - this.#used)} free, ${evictable} evictable`,
          );
        }
        await this.#evict(() => this.#used + size <= limit, this);
      }
      if (size > partition.available) {
        const evictable = partition.evictable();
        if (evictable < size - partition.available) {
          throw new AosError(
            "noMemory",
            `not enough space on ${partition.mountPoint} for ${size} bytes: ` +
              `${Math.max(0, partition.available)} free, ${evictable} evictable`,
          );
        }
        await this.#evict(() => size <= partition.available);
      }
      if ((limit > 0 && this.#used + size > limit) || size > partition.available) {
        throw new AosError(
          "noMemory",
          `not enough space on ${partition.mountPoint} for ${size} bytes: ` +
            `${
              Math.max(0, partition.available)
            } free after evicting, ${partition.evictable()} evictable`,
        );
      }
      partition.available -= size;
      this.#used += size;
      partition.pending++;
      return this.#space(size);
    });
  }

  /** Returns `size` bytes of accepted space (the caller deleted data it owned). */
  free(size: number): void {
    checkSize(size, `free in ${this.path}`);
    this.#used = Math.max(0, this.#used - size);
    this.#deps.partition.available += size;
  }

  /**
   * Registers an item that may be evicted when space is short. Re-adding an id replaces it.
   * Past the partition's outdated-item cap, the oldest item is evicted at once.
   */
  addOutdatedItem(id: string, size: number, timestamp: Date | number): Promise<void> {
    try {
      this.#checkOpen("add an outdated item");
      checkSize(size, `add outdated item ${id}`);
      if (!this.#remove) {
        throw new AosError(
          "wrongState",
          `Cannot add outdated item ${id} in ${this.path}: the allocator has no remove callback`,
        );
      }
    } catch (err) {
      return Promise.reject(err);
    }
    const partition = this.#deps.partition;
    const ts = typeof timestamp === "number" ? timestamp : timestamp.getTime();
    return partition.mutex.run(async () => {
      this.#drop(id);
      const item: OutdatedItem = { allocator: this, id, size, timestamp: ts };
      // Insert after every item with the same or an older timestamp: stable, oldest first.
      const at = partition.outdated.findIndex((o) => o.timestamp > ts);
      if (at < 0) partition.outdated.push(item);
      else partition.outdated.splice(at, 0, item);
      const max = this.#deps.maxOutdated;
      await this.#evict(() => partition.outdated.length <= max);
    });
  }

  /** Takes an item off the outdated list (it is in use again); false when it was not listed. */
  restoreOutdatedItem(id: string): boolean {
    return this.#drop(id);
  }

  /** Leaves the partition: drops this allocator's outdated items and its limit share. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#deps.onClose(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #drop(id: string): boolean {
    const partition = this.#deps.partition;
    const at = partition.outdated.findIndex((o) => o.allocator === this && o.id === id);
    if (at < 0) return false;
    partition.outdated.splice(at, 1);
    return true;
  }

  #checkOpen(what: string): void {
    if (this.#closed) {
      throw new AosError("wrongState", `Cannot ${what} in ${this.path}: the allocator is closed`);
    }
  }

  /** Evicts oldest first (optionally only `owner`'s items) until `enough()` holds. */
  async #evict(enough: () => boolean, owner?: SpaceAllocator): Promise<void> {
    const partition = this.#deps.partition;
    while (!enough()) {
      const at = partition.outdated.findIndex((o) => !owner || o.allocator === owner);
      if (at < 0) return;
      const [item] = partition.outdated.splice(at, 1) as [OutdatedItem];
      try {
        await item.allocator.#remove?.(item.id);
      } catch (err) {
        // The item is off the list either way: retrying a broken removal on every allocation
        // would stall all writers of the partition.
        this.#deps.logger.error("Cannot evict outdated item", {
          id: item.id,
          path: item.allocator.path,
          err,
        });
        continue;
      }
      item.allocator.#used = Math.max(0, item.allocator.#used - item.size);
      partition.available += item.size;
      this.#deps.logger.info("Evicted outdated item", {
        id: item.id,
        path: item.allocator.path,
        size: item.size,
      });
    }
  }

  #space(initial: number): Space {
    let size = initial;
    let state: SpaceState = "pending";
    const partition = this.#deps.partition;
    const path = this.path;
    const adjust = (delta: number) => {
      this.#used = Math.max(0, this.#used + delta);
      partition.available -= delta;
    };
    const release = () => {
      if (state !== "pending") return;
      state = "released";
      partition.pending--;
      adjust(-size);
    };
    return {
      get size() {
        return size;
      },
      get state() {
        return state;
      },
      accept() {
        if (state !== "pending") {
          throw new AosError("wrongState", `Cannot accept ${size} bytes in ${path}: ${state}`);
        }
        state = "accepted";
        partition.pending--;
      },
      release,
      resize(next: number) {
        checkSize(next, `resize space in ${path}`);
        if (state === "released") {
          throw new AosError("wrongState", `Cannot resize released space in ${path}`);
        }
        adjust(next - size);
        size = next;
      },
      [Symbol.dispose]: release,
    };
  }
}

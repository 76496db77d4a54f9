/**
 * UID/GID pools of CM's launcher: each service instance gets its own UID and each item one GID
 * shared by all its instances, both from 5000–10000 (cm.md §7.1, §17).
 *
 * The pool is pure: it never reads `/etc/passwd` or `/etc/group` itself; the caller injects
 * `isTaken(id)` for that. Keys are reference counted (the GID of an item is acquired once per
 * instance and freed when the last instance releases it). The state exports to JSON so CM can
 * persist it and restore it after a restart.
 * @module
 */
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { AosError } from "@aos/shared/errors";

/** First id of the UID and GID ranges (inclusive). */
export const ID_RANGE_FIRST = 5000;
/** Last id of the UID and GID ranges (inclusive). */
export const ID_RANGE_LAST = 10000;

/** Options of an {@link IdPool}. */
export interface IdPoolOptions {
  /** Name used in error messages, e.g. `"UID"` or `"GID"`. */
  name?: string;
  /** First id handed out (inclusive); default {@link ID_RANGE_FIRST}. */
  first?: number;
  /** Last id handed out (inclusive); default {@link ID_RANGE_LAST}. */
  last?: number;
  /**
   * True when the system already uses the id (e.g. it is in `/etc/passwd`). Consulted only for
   * fresh allocations: an id restored with {@link IdPool.acquire} was ours before, so it is kept.
   */
  isTaken?: (id: number) => boolean;
}

/** One key and its id in an exported {@link IdPoolState}. */
export interface IdPoolEntry {
  /** Owner of the id: an instance key for UIDs, an item id for GIDs. */
  key: string;
  /** The allocated id. */
  id: number;
  /** How many holders share the id (at least 1). */
  refs: number;
}

/** JSON form of an {@link IdPool}, as persisted by CM. */
export interface IdPoolState {
  /** Format version of this object. */
  version: 1;
  /** Range the ids were allocated from (inclusive). */
  first: number;
  /** Range end (inclusive). */
  last: number;
  /** Allocated ids, ordered by key. */
  entries: IdPoolEntry[];
}

const MAX_KEY_LENGTH = 1024;
const MAX_ENTRIES = 100_000;

const stateSchema = z.object({
  version: z.literal(1),
  first: z.number().check(z.int(), z.nonnegative()),
  last: z.number().check(z.int(), z.nonnegative()),
  entries: z.array(z.object({
    key: z.string().check(z.minLength(1), z.maxLength(MAX_KEY_LENGTH)),
    id: z.number().check(z.int(), z.nonnegative()),
    refs: z.number().check(z.int(), z.positive()),
  })).check(z.maxLength(MAX_ENTRIES)),
});

/**
 * A reference-counted pool of numeric ids in an inclusive range. Fresh ids are the lowest free
 * id that the system does not use, so allocation is deterministic and released ids are reused.
 */
export class IdPool {
  readonly #name: string;
  readonly #first: number;
  readonly #last: number;
  readonly #isTaken: (id: number) => boolean;
  readonly #byKey = new Map<string, { id: number; refs: number }>();
  readonly #owner = new Map<number, string>();
  /** Every id below it was owned or taken when last looked at: keeps allocation O(1) amortised. */
  #hint: number;

  /** Creates an empty pool; throws `invalidArgument` for a bad range. */
  constructor(options: IdPoolOptions = {}) {
    this.#name = options.name ?? "ID";
    this.#first = options.first ?? ID_RANGE_FIRST;
    this.#last = options.last ?? ID_RANGE_LAST;
    this.#isTaken = options.isTaken ?? (() => false);
    this.#hint = this.#first;
    if (
      !Number.isInteger(this.#first) || !Number.isInteger(this.#last) || this.#first < 0 ||
      this.#last < this.#first
    ) {
      throw new AosError(
        "invalidArgument",
        `Invalid ${this.#name} range ${this.#first}–${this.#last}: need integers with first ≤ last`,
      );
    }
  }

  /** Range start (inclusive). */
  get first(): number {
    return this.#first;
  }

  /** Range end (inclusive). */
  get last(): number {
    return this.#last;
  }

  /** Number of keys holding an id. */
  get size(): number {
    return this.#byKey.size;
  }

  /** The id of `key`, if it holds one. */
  get(key: string): number | undefined {
    return this.#byKey.get(key)?.id;
  }

  /** Reference count of `key` (0 when it holds no id). */
  refs(key: string): number {
    return this.#byKey.get(key)?.refs ?? 0;
  }

  /**
   * Returns the id of `key`, allocating one on first use; each call adds a reference.
   *
   * With `wanted` (an id restored from CM's database) that exact id is taken: it must be inside
   * the range and free, and if `key` already holds an id it must be the same one.
   * @throws AosError `noMemory` when the range is exhausted, `alreadyExist` when `wanted`
   *   belongs to another key, `outOfRange` / `invalidArgument` for a bad `wanted` or key.
   */
  acquire(key: string, wanted?: number): number {
    if (key === "" || key.length > MAX_KEY_LENGTH) {
      throw new AosError(
        "invalidArgument",
        `Cannot acquire ${this.#name}: key is empty or too long`,
      );
    }
    const held = this.#byKey.get(key);
    if (held !== undefined) {
      if (wanted !== undefined && wanted !== held.id) {
        throw new AosError(
          "invalidArgument",
          `Cannot acquire ${this.#name} ${wanted} for "${key}": it already holds ${held.id}`,
        );
      }
      held.refs++;
      return held.id;
    }
    const id = wanted === undefined ? this.#lowestFree() : this.#checkWanted(key, wanted);
    this.#byKey.set(key, { id, refs: 1 });
    this.#owner.set(id, key);
    return id;
  }

  /**
   * Drops one reference of `key`; the id returns to the pool when none is left.
   * @returns true when the id was freed, false when other references remain.
   * @throws AosError `notFound` when `key` holds no id.
   */
  release(key: string): boolean {
    const held = this.#byKey.get(key);
    if (held === undefined) {
      throw new AosError("notFound", `Cannot release ${this.#name} of "${key}": it holds none`);
    }
    if (held.refs > 1) {
      held.refs--;
      return false;
    }
    this.#free(key, held.id);
    return true;
  }

  /** Frees the id of `key` whatever its reference count; no-op when it holds none. */
  releaseAll(key: string): void {
    const held = this.#byKey.get(key);
    if (held === undefined) return;
    this.#free(key, held.id);
  }

  /** The state as a JSON-ready object (entries sorted by key, so equal pools export equally). */
  toJSON(): IdPoolState {
    const entries = [...this.#byKey].map(([key, { id, refs }]) => ({ key, id, refs }));
    entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { version: 1, first: this.#first, last: this.#last, entries };
  }

  /**
   * Rebuilds a pool from {@link toJSON} output (parsed JSON, untrusted: it is validated).
   * The range comes from `options` (the current build's constants), not from the state; entries
   * outside it are rejected rather than silently kept.
   * @throws AosError `invalidArgument` for malformed state, duplicate keys or ids, or ids
   *   outside the range.
   */
  static fromJSON(state: unknown, options: IdPoolOptions = {}): IdPool {
    const pool = new IdPool(options);
    const parsed = stateSchema.safeParse(state);
    if (!parsed.success) {
      throw new AosError(
        "invalidArgument",
        `Cannot restore ${pool.#name} pool: ${parsed.error.issues[0]?.message ?? "invalid"} at ${
          parsed.error.issues[0]?.path.join(".") ?? "?"
        }`,
        { cause: parsed.error },
      );
    }
    for (const entry of parsed.data.entries) {
      if (entry.id < pool.#first || entry.id > pool.#last) {
        throw new AosError(
          "invalidArgument",
          `Cannot restore ${pool.#name} pool: ${entry.id} of "${entry.key}" is outside ${pool.#first}–${pool.#last}`,
        );
      }
      if (pool.#byKey.has(entry.key) || pool.#owner.has(entry.id)) {
        throw new AosError(
          "invalidArgument",
          `Cannot restore ${pool.#name} pool: duplicate key "${entry.key}" or ${pool.#name} ${entry.id}`,
        );
      }
      pool.#byKey.set(entry.key, { id: entry.id, refs: entry.refs });
      pool.#owner.set(entry.id, entry.key);
    }
    return pool;
  }

  #free(key: string, id: number): void {
    this.#byKey.delete(key);
    this.#owner.delete(id);
    if (id < this.#hint) this.#hint = id;
  }

  #lowestFree(): number {
    for (let id = this.#hint; id <= this.#last; id++) {
      if (!this.#owner.has(id) && !this.#isTaken(id)) {
        this.#hint = id + 1;
        return id;
      }
    }
    this.#hint = this.#last + 1;
    throw new AosError(
      "noMemory",
      `${this.#name} pool ${this.#first}–${this.#last} is exhausted: ${this.#owner.size} allocated, ` +
        `the rest used by the system`,
    );
  }

  #checkWanted(key: string, wanted: number): number {
    if (!Number.isInteger(wanted) || wanted < this.#first || wanted > this.#last) {
      throw new AosError(
        "outOfRange",
        `Cannot acquire ${this.#name} ${wanted} for "${key}": outside ${this.#first}–${this.#last}`,
      );
    }
    const owner = this.#owner.get(wanted);
    if (owner !== undefined) {
      throw new AosError(
        "alreadyExist",
        `Cannot acquire ${this.#name} ${wanted} for "${key}": it belongs to "${owner}"`,
      );
    }
    return wanted;
  }
}

/** Key of a service instance in the UID pool: the JSON array `[itemId, subjectId, instance]`. */
export function uidPoolKey(ident: { itemId: string; subjectId: string; instance: number }): string {
  return JSON.stringify([ident.itemId, ident.subjectId, ident.instance]);
}

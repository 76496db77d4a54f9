/**
 * The image manager's tables in `cm.db` and typed access to them.
 *
 * Upstream keeps one `imagemanager` row per update item version (`itemID, type, version,
 * indexDigest, state, timestamp` in ns). We keep that row with the same column names and add two
 * things upstream re-derives from files or drops: `errorInfo` (why an item failed, so the unit
 * status survives a restart) and `imagemanager_blobs`, the blobs each item version references
 * with their sizes, so the orphan sweep, the eviction size of a removed item and the re-check
 * before install are plain queries and do not depend on an index file being readable.
 * @module
 */
import type { StatementSync } from "node:sqlite";
import type { Database, Migration } from "@aos/shared/db";
import { type ErrorInfoMessage, fromErrorInfo, toErrorInfo } from "@aos/shared/errors";
import type { AosError } from "@aos/shared/errors";

/**
 * The image manager's schema step, without a version number: the lead merges it into CM's
 * migration list. Never edit it once released; add a new step instead.
 */
export const CM_IMAGE_MIGRATION: Omit<Migration, "version"> = {
  up: `
    CREATE TABLE imagemanager (
      itemID TEXT NOT NULL,
      version TEXT NOT NULL,
      type TEXT NOT NULL,
      indexDigest TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN
        ('downloading', 'pending', 'installing', 'installed', 'removed', 'failed')),
      timestamp INTEGER NOT NULL,
      errorInfo TEXT,
      PRIMARY KEY (itemID, version)
    );
    CREATE TABLE imagemanager_blobs (
      itemID TEXT NOT NULL,
      version TEXT NOT NULL,
      digest TEXT NOT NULL,
      size INTEGER NOT NULL CHECK (size >= 0),
      PRIMARY KEY (itemID, version, digest),
      FOREIGN KEY (itemID, version) REFERENCES imagemanager (itemID, version) ON DELETE CASCADE
    );
    CREATE INDEX imagemanager_blobs_by_digest ON imagemanager_blobs (digest);`,
  down: `
    DROP TABLE imagemanager_blobs;
    DROP TABLE imagemanager;`,
};

/** {@link CM_IMAGE_MIGRATION} as a complete migration list, for tests and standalone use. */
export const CM_IMAGE_MIGRATIONS: readonly Migration[] = [{ version: 1, ...CM_IMAGE_MIGRATION }];

/**
 * Item states (upstream `ItemState` names). `installing` is set while the install step re-checks
 * an item; `removing` and `unknown` exist upstream but are never set there either.
 */
export type ItemState =
  | "downloading"
  | "pending"
  | "installing"
  | "installed"
  | "removed"
  | "failed";

const STATES: ReadonlySet<string> = new Set<ItemState>([
  "downloading",
  "pending",
  "installing",
  "installed",
  "removed",
  "failed",
]);

/** One `imagemanager` row. */
export interface ItemRow {
  itemId: string;
  version: string;
  /** Update item type as the cloud names it (`service`, `component`, `layer`…). */
  type: string;
  /** Digest of the item's OCI image index. */
  indexDigest: string;
  state: ItemState;
  /** Time of the last state change, Unix ms (stored as ns, like upstream). */
  timestamp: number;
  /** Why the item failed (state `failed`). */
  error?: AosError;
}

/** A blob an item version references. */
export interface BlobRef {
  digest: string;
  size: number;
}

type Row = Record<string, unknown>;

function str(row: Row, key: string): string {
  const v = row[key];
  return typeof v === "string" ? v : String(v ?? "");
}

function num(row: Row, key: string): number {
  const v = row[key];
  return typeof v === "bigint" ? Number(v) : Number(v ?? 0);
}

function toNs(ms: number): bigint {
  return BigInt(Math.trunc(ms)) * 1_000_000n;
}

function fromNs(v: unknown): number {
  return typeof v === "bigint" ? Number(v / 1_000_000n) : Math.floor(Number(v ?? 0) / 1e6);
}

function parseError(text: unknown): AosError | undefined {
  if (typeof text !== "string" || text === "") return undefined;
  try {
    const v = JSON.parse(text) as Partial<ErrorInfoMessage>;
    return fromErrorInfo(v) ?? fromErrorInfo({ aosCode: 1, message: v.message ?? "failed" });
  } catch {
    return fromErrorInfo({ aosCode: 1, message: text.slice(0, 1000) });
  }
}

function toRow(row: Row): ItemRow {
  const state = str(row, "state");
  const out: ItemRow = {
    itemId: str(row, "itemID"),
    version: str(row, "version"),
    type: str(row, "type"),
    indexDigest: str(row, "indexDigest"),
    // A value outside the CHECK list cannot be stored; read anything odd as failed.
    state: STATES.has(state) ? state as ItemState : "failed",
    timestamp: fromNs(row.timestamp),
  };
  const error = parseError(row.errorInfo);
  if (error) out.error = error;
  return out;
}

const COLUMNS = "itemID, version, type, indexDigest, state, timestamp, errorInfo";

/**
 * Typed access to `imagemanager` and `imagemanager_blobs`. Every method is one statement or a
 * short synchronous transaction.
 */
export class ImageItemTable {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** The underlying database. */
  get db(): Database {
    return this.#db;
  }

  /** Timestamps in ns exceed the safe number range: read integers as bigint. */
  #prep(sql: string): StatementSync {
    const st = this.#db.prepare(sql);
    st.setReadBigInts(true);
    return st;
  }

  /** One item version, or `undefined`. */
  get(itemId: string, version: string): ItemRow | undefined {
    const row = this.#prep(`SELECT ${COLUMNS} FROM imagemanager WHERE itemID = ? AND version = ?`)
      .get(itemId, version);
    return row ? toRow(row) : undefined;
  }

  /** Rows, optionally of one item id and/or state, oldest first. */
  list(filter: { itemId?: string; state?: ItemState } = {}): ItemRow[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.itemId !== undefined) {
      where.push("itemID = ?");
      args.push(filter.itemId);
    }
    if (filter.state !== undefined) {
      where.push("state = ?");
      args.push(filter.state);
    }
    return this.#prep(
      `SELECT ${COLUMNS} FROM imagemanager ${
        where.length ? `WHERE ${where.join(" AND ")}` : ""
      } ORDER BY timestamp, itemID, version`,
    ).all(...args).map(toRow);
  }

  /** Inserts or replaces a row; replacing keeps the row's blob references. */
  put(row: ItemRow): void {
    this.#prep(
      `INSERT INTO imagemanager (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (itemID, version) DO UPDATE SET type = excluded.type,
         indexDigest = excluded.indexDigest, state = excluded.state,
         timestamp = excluded.timestamp, errorInfo = excluded.errorInfo`,
    ).run(
      row.itemId,
      row.version,
      row.type,
      row.indexDigest,
      row.state,
      toNs(row.timestamp),
      row.error ? JSON.stringify(toErrorInfo(row.error)) : null,
    );
  }

  /** Sets state, timestamp and error of a row; false when there is no such row. */
  setState(
    itemId: string,
    version: string,
    state: ItemState,
    timestamp: number,
    error?: AosError,
  ): boolean {
    const r = this.#prep(
      "UPDATE imagemanager SET state = ?, timestamp = ?, errorInfo = ? WHERE itemID = ? AND version = ?",
    ).run(
      state,
      toNs(timestamp),
      error ? JSON.stringify(toErrorInfo(error)) : null,
      itemId,
      version,
    );
    return Number(r.changes) > 0;
  }

  /** Deletes a row and its blob references; false when there was none. */
  delete(itemId: string, version: string): boolean {
    const r = this.#prep("DELETE FROM imagemanager WHERE itemID = ? AND version = ?")
      .run(itemId, version);
    return Number(r.changes) > 0;
  }

  /** Records (or updates the size of) a blob the item version references. */
  addBlob(itemId: string, version: string, ref: BlobRef): void {
    this.#prep(
      `INSERT INTO imagemanager_blobs (itemID, version, digest, size) VALUES (?, ?, ?, ?)
       ON CONFLICT (itemID, version, digest) DO UPDATE SET size = excluded.size`,
    ).run(itemId, version, ref.digest, ref.size);
  }

  /** Drops all blob references of an item version (before it is walked again). */
  clearBlobs(itemId: string, version: string): void {
    this.#prep("DELETE FROM imagemanager_blobs WHERE itemID = ? AND version = ?")
      .run(itemId, version);
  }

  /** The blobs an item version references. */
  blobs(itemId: string, version: string): BlobRef[] {
    return this.#prep(
      "SELECT digest, size FROM imagemanager_blobs WHERE itemID = ? AND version = ? ORDER BY rowid",
    ).all(itemId, version).map((r) => ({ digest: str(r, "digest"), size: num(r, "size") }));
  }

  /** Every digest referenced by some row. */
  referencedDigests(): Set<string> {
    return new Set(
      this.#prep("SELECT DISTINCT digest FROM imagemanager_blobs").all().map((r) =>
        str(r, "digest")
      ),
    );
  }

  /** The blobs of an item version that no other row references (what removing it frees). */
  exclusiveBlobs(itemId: string, version: string): BlobRef[] {
    return this.#prep(
      `SELECT b.digest, b.size FROM imagemanager_blobs b
       WHERE b.itemID = ? AND b.version = ? AND NOT EXISTS (
         SELECT 1 FROM imagemanager_blobs o
         WHERE o.digest = b.digest AND NOT (o.itemID = b.itemID AND o.version = b.version))`,
    ).all(itemId, version).map((r) => ({ digest: str(r, "digest"), size: num(r, "size") }));
  }
}

/**
 * `servicemanager.db`: the SM's SQLite database (versioned migrations) and typed access to its
 * tables.
 *
 * Migration 1 holds the image store. Upstream keeps one `items` row per update item version
 * (`itemID, type, version, manifestDigest, state, timestamp`); we keep that row with the same
 * column names and add what upstream re-derives from files: the blobs and unpacked layers on
 * disk and which item version references which of them, so reference counting, eviction sizes
 * and the orphan sweep are plain queries. Later migrations (instances, node config, networks)
 * append to {@link SM_MIGRATIONS}.
 * @module
 */
import { join } from "node:path";
import type { StatementSync } from "node:sqlite";
import { type Database, type Migration, openDatabase } from "@aos/shared/db";
import type { Logger } from "@aos/shared/logger";

/** File name of the SM database inside `workingDir` (upstream name). */
export const SM_DB_FILE = "servicemanager.db";

/** Schema of `servicemanager.db`; append new steps, never edit a released one. */
export const SM_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    up: `
      CREATE TABLE items (
        itemID TEXT NOT NULL,
        version TEXT NOT NULL,
        type TEXT NOT NULL,
        manifestDigest TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('installed', 'removed')),
        timestamp INTEGER NOT NULL,
        PRIMARY KEY (itemID, version)
      );
      CREATE TABLE blobs (
        digest TEXT NOT NULL PRIMARY KEY,
        mediaType TEXT NOT NULL,
        size INTEGER NOT NULL CHECK (size >= 0)
      );
      CREATE TABLE layers (
        diffDigest TEXT NOT NULL PRIMARY KEY,
        blobDigest TEXT NOT NULL,
        mediaType TEXT NOT NULL,
        dirDigest TEXT NOT NULL,
        size INTEGER NOT NULL CHECK (size >= 0)
      );
      CREATE TABLE itemBlobs (
        itemID TEXT NOT NULL,
        version TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('index', 'manifest', 'config', 'itemConfig', 'layer')),
        position INTEGER NOT NULL,
        digest TEXT NOT NULL REFERENCES blobs (digest),
        PRIMARY KEY (itemID, version, role, position),
        FOREIGN KEY (itemID, version) REFERENCES items (itemID, version) ON DELETE CASCADE
      );
      CREATE INDEX itemBlobsByDigest ON itemBlobs (digest);
      CREATE TABLE itemLayers (
        itemID TEXT NOT NULL,
        version TEXT NOT NULL,
        position INTEGER NOT NULL,
        diffDigest TEXT NOT NULL REFERENCES layers (diffDigest),
        PRIMARY KEY (itemID, version, position),
        FOREIGN KEY (itemID, version) REFERENCES items (itemID, version) ON DELETE CASCADE
      );
      CREATE INDEX itemLayersByDigest ON itemLayers (diffDigest);`,
    down: `
      DROP TABLE itemLayers;
      DROP TABLE itemBlobs;
      DROP TABLE layers;
      DROP TABLE blobs;
      DROP TABLE items;`,
  },
  {
    version: 2,
    // The desired instances as the CM sent them (InstanceInfo in protobuf binary form), so the
    // launcher restores them after a restart exactly as they were requested.
    up: `
      CREATE TABLE instances (
        instanceID TEXT NOT NULL PRIMARY KEY,
        itemID TEXT NOT NULL,
        subjectID TEXT NOT NULL,
        instance INTEGER NOT NULL,
        info BLOB NOT NULL
      );`,
    down: "DROP TABLE instances;",
  },
];

/** Options of {@link openSmDatabase}. */
export interface OpenSmDatabaseOptions {
  /** The SM `workingDir`; the file is `<workingDir>/servicemanager.db`. */
  workingDir: string;
  /** Receives migration records. */
  logger?: Logger;
  /** Migrations (default {@link SM_MIGRATIONS}); tests may pass a prefix. */
  migrations?: readonly Migration[];
}

/** Opens (creating and migrating) `<workingDir>/servicemanager.db`. */
export function openSmDatabase(options: OpenSmDatabaseOptions): Database {
  return openDatabase({
    path: join(options.workingDir, SM_DB_FILE),
    migrations: options.migrations ?? SM_MIGRATIONS,
    ...(options.logger ? { logger: options.logger } : {}),
  });
}

/** States an item row can have (upstream writes only these two). */
export type ItemState = "installed" | "removed";

/** One `items` row. */
export interface ItemRow {
  itemId: string;
  version: string;
  /** Update item type as the CM names it (`service`, `component`, `layer`…). */
  type: string;
  /** The digest the CM named the item by (a manifest, or an image index). */
  manifestDigest: string;
  state: ItemState;
  /** Installed or removed at, Unix ms (stored as ns, like upstream). */
  timestamp: number;
}

/** A verified blob stored under `blobs/<alg>/<hex>`. */
export interface BlobRow {
  digest: string;
  mediaType: string;
  size: number;
}

/** An unpacked layer stored under `layers/<alg>/<hex>/layer`, keyed by its diffID. */
export interface LayerRow {
  /** The diffID (sha256 of the uncompressed tar). */
  diffDigest: string;
  /** The compressed blob it was unpacked from. */
  blobDigest: string;
  mediaType: string;
  /** AosCore dirhash of the unpacked tree, for integrity checks. */
  dirDigest: string;
  /** Bytes of regular file content. */
  size: number;
}

/** What an item version references blobs as. */
export type BlobRole = "index" | "manifest" | "config" | "itemConfig" | "layer";

/** One `itemBlobs` reference. */
export interface ItemBlobRef {
  role: BlobRole;
  /** Index among refs of the same role (layers: manifest order; others 0). */
  position: number;
  digest: string;
}

/** Everything one item version references, registered in one transaction. */
export interface ItemRecord {
  item: ItemRow;
  /** Blob rows (inserted or replaced) and the item's references to them. */
  blobs: (BlobRow & { role: BlobRole; position: number })[];
  /** Layer rows (inserted or replaced), in `diff_ids` order. */
  layers: LayerRow[];
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

function toItem(row: Row): ItemRow {
  const ns = row.timestamp;
  return {
    itemId: str(row, "itemID"),
    version: str(row, "version"),
    type: str(row, "type"),
    manifestDigest: str(row, "manifestDigest"),
    state: str(row, "state") === "removed" ? "removed" : "installed",
    timestamp: typeof ns === "bigint" ? Number(ns / 1_000_000n) : Math.floor(Number(ns) / 1e6),
  };
}

function toNs(ms: number): bigint {
  return BigInt(Math.trunc(ms)) * 1_000_000n;
}

const ITEM_COLUMNS = "itemID, version, type, manifestDigest, state, timestamp";

/**
 * Typed access to the image tables. Methods are single statements or short synchronous
 * transactions, so a caller can group them in {@link Database.transaction}.
 */
export class ImageTables {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** Statements read integers as bigint: timestamps in ns exceed the safe number range. */
  #prep(sql: string): StatementSync {
    const st = this.#db.prepare(sql);
    st.setReadBigInts(true);
    return st;
  }

  /** The underlying database. */
  get db(): Database {
    return this.#db;
  }

  /** One item version, or `undefined`. */
  getItem(itemId: string, version: string): ItemRow | undefined {
    const row = this.#prep(
      `SELECT ${ITEM_COLUMNS} FROM items WHERE itemID = ? AND version = ?`,
    ).get(itemId, version);
    return row ? toItem(row) : undefined;
  }

  /** All item rows (optionally of one item id or state), oldest first. */
  listItems(filter: { itemId?: string; state?: ItemState } = {}): ItemRow[] {
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
    const sql = `SELECT ${ITEM_COLUMNS} FROM items ${
      where.length ? `WHERE ${where.join(" AND ")}` : ""
    } ORDER BY timestamp, itemID, version`;
    return this.#prep(sql).all(...args).map(toItem);
  }

  /** Number of item rows. */
  countItems(): number {
    return num(this.#prep("SELECT count(*) AS n FROM items").get() ?? {}, "n");
  }

  /**
   * Registers an item version with its content: upserts the blob and layer rows, replaces any
   * row of the same item version (and its references), in one transaction.
   */
  putItem(record: ItemRecord): void {
    const { item } = record;
    this.#db.transaction(() => {
      const putBlob = this.#prep(
        "INSERT OR REPLACE INTO blobs (digest, mediaType, size) VALUES (?, ?, ?)",
      );
      for (const b of record.blobs) putBlob.run(b.digest, b.mediaType, b.size);
      const putLayer = this.#prep(
        "INSERT OR REPLACE INTO layers (diffDigest, blobDigest, mediaType, dirDigest, size) " +
          "VALUES (?, ?, ?, ?, ?)",
      );
      for (const l of record.layers) {
        putLayer.run(l.diffDigest, l.blobDigest, l.mediaType, l.dirDigest, l.size);
      }
      this.deleteItem(item.itemId, item.version);
      this.#prep(`INSERT INTO items (${ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`).run(
        item.itemId,
        item.version,
        item.type,
        item.manifestDigest,
        item.state,
        toNs(item.timestamp),
      );
      const refBlob = this.#prep(
        "INSERT INTO itemBlobs (itemID, version, role, position, digest) VALUES (?, ?, ?, ?, ?)",
      );
      for (const b of record.blobs) {
        refBlob.run(item.itemId, item.version, b.role, b.position, b.digest);
      }
      const refLayer = this.#prep(
        "INSERT INTO itemLayers (itemID, version, position, diffDigest) VALUES (?, ?, ?, ?)",
      );
      record.layers.forEach((l, i) => refLayer.run(item.itemId, item.version, i, l.diffDigest));
    });
  }

  /** Sets the state and timestamp of an item version; false when there is no such row. */
  setState(itemId: string, version: string, state: ItemState, timestamp: number): boolean {
    const r = this.#prep(
      "UPDATE items SET state = ?, timestamp = ? WHERE itemID = ? AND version = ?",
    ).run(state, toNs(timestamp), itemId, version);
    return Number(r.changes) > 0;
  }

  /** Deletes an item version and its references (content rows stay); false when absent. */
  deleteItem(itemId: string, version: string): boolean {
    const r = this.#prep("DELETE FROM items WHERE itemID = ? AND version = ?").run(
      itemId,
      version,
    );
    return Number(r.changes) > 0;
  }

  /** The blob references of an item version, by role then position. */
  itemBlobs(itemId: string, version: string): ItemBlobRef[] {
    return this.#prep(
      "SELECT role, position, digest FROM itemBlobs WHERE itemID = ? AND version = ? " +
        "ORDER BY role, position",
    ).all(itemId, version).map((r) => ({
      role: str(r, "role") as BlobRole,
      position: num(r, "position"),
      digest: str(r, "digest"),
    }));
  }

  /** The layers of an item version in `diff_ids` order. */
  itemLayers(itemId: string, version: string): LayerRow[] {
    return this.#prep(
      "SELECT l.diffDigest, l.blobDigest, l.mediaType, l.dirDigest, l.size FROM itemLayers r " +
        "JOIN layers l ON l.diffDigest = r.diffDigest WHERE r.itemID = ? AND r.version = ? " +
        "ORDER BY r.position",
    ).all(itemId, version).map(toLayer);
  }

  /** One blob row. */
  getBlob(digest: string): BlobRow | undefined {
    const r = this.#prep("SELECT digest, mediaType, size FROM blobs WHERE digest = ?").get(
      digest,
    );
    return r ? toBlob(r) : undefined;
  }

  /** One layer row. */
  getLayer(diffDigest: string): LayerRow | undefined {
    const r = this.#prep(
      "SELECT diffDigest, blobDigest, mediaType, dirDigest, size FROM layers WHERE diffDigest = ?",
    ).get(diffDigest);
    return r ? toLayer(r) : undefined;
  }

  /** All blob rows. */
  listBlobs(): BlobRow[] {
    return this.#prep("SELECT digest, mediaType, size FROM blobs ORDER BY digest").all()
      .map(toBlob);
  }

  /** All layer rows. */
  listLayers(): LayerRow[] {
    return this.#prep(
      "SELECT diffDigest, blobDigest, mediaType, dirDigest, size FROM layers ORDER BY diffDigest",
    ).all().map(toLayer);
  }

  /** Blob rows no item references. */
  unreferencedBlobs(): BlobRow[] {
    return this.#prep(
      "SELECT digest, mediaType, size FROM blobs b WHERE NOT EXISTS " +
        "(SELECT 1 FROM itemBlobs r WHERE r.digest = b.digest) ORDER BY digest",
    ).all().map(toBlob);
  }

  /** Layer rows no item references. */
  unreferencedLayers(): LayerRow[] {
    return this.#prep(
      "SELECT diffDigest, blobDigest, mediaType, dirDigest, size FROM layers l WHERE NOT EXISTS " +
        "(SELECT 1 FROM itemLayers r WHERE r.diffDigest = l.diffDigest) ORDER BY diffDigest",
    ).all().map(toLayer);
  }

  /** Deletes a blob row; fails (foreign key) while an item references it. */
  deleteBlob(digest: string): boolean {
    return Number(this.#prep("DELETE FROM blobs WHERE digest = ?").run(digest).changes) > 0;
  }

  /** Deletes a layer row; fails (foreign key) while an item references it. */
  deleteLayer(diffDigest: string): boolean {
    return Number(
      this.#prep("DELETE FROM layers WHERE diffDigest = ?").run(diffDigest).changes,
    ) > 0;
  }

  /** Number of item versions referencing a blob. */
  blobRefCount(digest: string): number {
    return num(
      this.#prep("SELECT count(*) AS n FROM itemBlobs WHERE digest = ?").get(digest) ?? {},
      "n",
    );
  }

  /** Number of item versions referencing a layer. */
  layerRefCount(diffDigest: string): number {
    return num(
      this.#prep("SELECT count(*) AS n FROM itemLayers WHERE diffDigest = ?").get(
        diffDigest,
      ) ?? {},
      "n",
    );
  }

  /**
   * Bytes only this item version references (blobs and unpacked layers no other item version
   * shares): what deleting it would give back.
   */
  exclusiveSize(itemId: string, version: string): number {
    const blobs = this.#prep(
      "SELECT coalesce(sum(b.size), 0) AS n FROM blobs b WHERE b.digest IN " +
        "(SELECT digest FROM itemBlobs WHERE itemID = ? AND version = ?) AND NOT EXISTS " +
        "(SELECT 1 FROM itemBlobs o WHERE o.digest = b.digest AND NOT (o.itemID = ? AND o.version = ?))",
    ).get(itemId, version, itemId, version);
    const layers = this.#prep(
      "SELECT coalesce(sum(l.size), 0) AS n FROM layers l WHERE l.diffDigest IN " +
        "(SELECT diffDigest FROM itemLayers WHERE itemID = ? AND version = ?) AND NOT EXISTS " +
        "(SELECT 1 FROM itemLayers o WHERE o.diffDigest = l.diffDigest " +
        "AND NOT (o.itemID = ? AND o.version = ?))",
    ).get(itemId, version, itemId, version);
    return num(blobs ?? {}, "n") + num(layers ?? {}, "n");
  }
}

function toBlob(r: Row): BlobRow {
  return { digest: str(r, "digest"), mediaType: str(r, "mediaType"), size: num(r, "size") };
}

function toLayer(r: Row): LayerRow {
  return {
    diffDigest: str(r, "diffDigest"),
    blobDigest: str(r, "blobDigest"),
    mediaType: str(r, "mediaType"),
    dirDigest: str(r, "dirDigest"),
    size: num(r, "size"),
  };
}

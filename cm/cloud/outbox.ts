/**
 * The durable outbox: unit → cloud messages that must survive a CM restart, stored in `cm.db`
 * before they are first sent and deleted when the cloud acks them.
 * @module
 */
import type { Database } from "@aos/shared/db";
import type { Logger } from "@aos/shared/core";

/**
 * Schema of the outbox table, as a migration step for `cm.db` (the lead numbers it in CM's
 * migration list). Rows keep the exact bytes sent, so a resend after a restart is identical
 * (same txn and createdAt) and the cloud can de-duplicate it.
 */
export const CLOUD_OUTBOX_MIGRATION = {
  up: `CREATE TABLE cloud_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  txn TEXT NOT NULL UNIQUE,
  grp TEXT NOT NULL,
  message_type TEXT NOT NULL,
  system_id TEXT NOT NULL,
  queued_at INTEGER NOT NULL,
  size INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX cloud_outbox_grp ON cloud_outbox (grp, seq);`,
  down: `DROP TABLE cloud_outbox;`,
} as const;

/** One stored message. */
export interface OutboxEntry {
  /** Insertion order (FIFO). */
  seq: number;
  /** The message's txn (what its ack carries). */
  txn: string;
  /** Retention group, e.g. `unitStatus` or `alerts`. */
  group: string;
  /** `data.messageType`. */
  messageType: string;
  /** `header.systemId` it was built for. */
  systemId: string;
  /** When it was first queued (ms since the epoch). */
  queuedAt: number;
  /** The exact envelope bytes. */
  payload: Uint8Array;
}

/** Bounds of the outbox. */
export interface OutboxLimits {
  /** Most rows per group; the oldest of the group go first (default 256). */
  maxPerGroup: number;
  /** Per-group overrides of `maxPerGroup`. */
  groupLimits: Record<string, number>;
  /** Most payload bytes in total; the oldest rows of any group go first (default 16 MiB). */
  maxBytes: number;
}

/** Default bounds: 256 per group, 16 MiB in total. */
export const DEFAULT_OUTBOX_LIMITS: OutboxLimits = {
  maxPerGroup: 256,
  groupLimits: {},
  maxBytes: 16 * 1024 * 1024,
};

/** What {@link Outbox.add} removed to make room or because the new row supersedes it. */
export interface OutboxAddResult {
  /** txns deleted (superseded, or evicted by a bound). */
  removed: string[];
}

interface Row {
  seq: number;
  txn: string;
  grp: string;
  message_type: string;
  system_id: string;
  queued_at: number;
  payload: Uint8Array;
}

/**
 * Table access for `cloud_outbox`. Retention: a row with `supersede` replaces every stored row
 * of its group (a full unit status makes older full and delta statuses pointless); each group
 * keeps at most its limit of rows and the whole table at most `maxBytes`, the oldest going first.
 */
export class Outbox {
  readonly #db: Database;
  readonly #limits: OutboxLimits;
  readonly #logger: Logger | undefined;

  /** `db` must have {@link CLOUD_OUTBOX_MIGRATION} applied. */
  constructor(db: Database, limits: Partial<OutboxLimits> = {}, logger?: Logger) {
    this.#db = db;
    this.#limits = { ...DEFAULT_OUTBOX_LIMITS, ...limits };
    this.#logger = logger;
  }

  /** Stores a message (one transaction with its retention). */
  add(
    entry: Omit<OutboxEntry, "seq">,
    options: { supersede?: boolean } = {},
  ): OutboxAddResult {
    const removed: string[] = [];
    this.#db.transaction((db) => {
      if (options.supersede) {
        const rows = db.prepare("SELECT txn FROM cloud_outbox WHERE grp = ?").all(entry.group) as {
          txn: string;
        }[];
        for (const r of rows) removed.push(r.txn);
        db.prepare("DELETE FROM cloud_outbox WHERE grp = ?").run(entry.group);
      }
      db.prepare(
        `INSERT INTO cloud_outbox (txn, grp, message_type, system_id, queued_at, size, payload)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        entry.txn,
        entry.group,
        entry.messageType,
        entry.systemId,
        entry.queuedAt,
        entry.payload.length,
        entry.payload,
      );
      const groupMax = this.#limits.groupLimits[entry.group] ?? this.#limits.maxPerGroup;
      const over = db.prepare(
        "SELECT txn FROM cloud_outbox WHERE grp = ? ORDER BY seq DESC LIMIT -1 OFFSET ?",
      ).all(entry.group, Math.max(groupMax, 1)) as { txn: string }[];
      for (const r of over) {
        db.prepare("DELETE FROM cloud_outbox WHERE txn = ?").run(r.txn);
        removed.push(r.txn);
      }
      const total = (db.prepare("SELECT COALESCE(SUM(size), 0) AS n FROM cloud_outbox").get() as {
        n: number;
      }).n;
      let excess = total - this.#limits.maxBytes;
      if (excess > 0) {
        // Oldest first, but never the row just added (it is what the caller wants kept).
        const rows = db.prepare(
          "SELECT txn, size FROM cloud_outbox WHERE txn != ? ORDER BY seq",
        ).all(entry.txn) as { txn: string; size: number }[];
        for (const r of rows) {
          if (excess <= 0) break;
          db.prepare("DELETE FROM cloud_outbox WHERE txn = ?").run(r.txn);
          removed.push(r.txn);
          excess -= r.size;
        }
      }
    });
    if (removed.length > 0) {
      this.#logger?.debug("Outbox rows removed to store a new one", {
        txn: entry.txn,
        group: entry.group,
        removed: removed.length,
      });
    }
    return { removed };
  }

  /** Deletes a row (acked, or given up on); false when it was not there. */
  delete(txn: string): boolean {
    const r = this.#db.prepare("DELETE FROM cloud_outbox WHERE txn = ?").run(txn);
    return Number(r.changes) > 0;
  }

  /** Every stored row, oldest first. */
  list(): OutboxEntry[] {
    const rows = this.#db.prepare(
      "SELECT seq, txn, grp, message_type, system_id, queued_at, payload FROM cloud_outbox ORDER BY seq",
    ).all() as unknown as Row[];
    return rows.map((r) => ({
      seq: Number(r.seq),
      txn: r.txn,
      group: r.grp,
      messageType: r.message_type,
      systemId: r.system_id,
      queuedAt: Number(r.queued_at),
      payload: new Uint8Array(r.payload),
    }));
  }

  /** Number of stored rows. */
  get size(): number {
    return Number(
      (this.#db.prepare("SELECT COUNT(*) AS n FROM cloud_outbox").get() as { n: number }).n,
    );
  }
}

/**
 * A `node:sqlite` file database in WAL mode with versioned migrations and a transaction helper.
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { AosError } from "../core/errors.ts";
import { type Logger, nullLogger } from "../core/logger.ts";

/** One schema step: `up` moves the schema from `version - 1` to `version`, `down` back. */
export interface Migration {
  /** 1-based; a set of migrations must be exactly 1..N. */
  readonly version: number;
  /** SQL run (as one script) to reach `version`. */
  readonly up: string;
  /** SQL run to go back to `version - 1`; empty when the step cannot be undone. */
  readonly down: string;
}

/** Options of {@link openDatabase}. */
export interface OpenDatabaseOptions {
  /** Path of the database file; created when absent (its directory must exist). */
  path: string;
  /** The schema this build knows; when given, the database is migrated on open. */
  migrations?: readonly Migration[];
  /** Version to migrate to (default: the latest, `migrations.length`); lower rolls back. */
  targetVersion?: number;
  /** How long a statement waits for another connection's lock, in ms (default 5000). */
  busyTimeoutMs?: number;
  /** Receives one record per migration step. */
  logger?: Logger;
}

/** What {@link Database.migrate} did. */
export interface MigrationResult {
  /** Schema version before. */
  from: number;
  /** Schema version after. */
  to: number;
}

/** Default busy timeout: long enough for a peer's short write transaction to finish. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** Name of the table holding the schema version (one row). */
export const VERSION_TABLE = "aos_schema_version";

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Checks that migrations are numbered exactly 1..N (any order) with SQL text, and returns them
 * sorted by version.
 */
export function validateMigrations(migrations: readonly Migration[]): Migration[] {
  const sorted = [...migrations].sort((a, b) => a.version - b.version);
  sorted.forEach((m, i) => {
    if (!Number.isInteger(m.version) || m.version !== i + 1) {
      const got = sorted.map((x) => x.version).join(", ");
      throw new AosError(
        "invalidArgument",
        `Invalid migration set: versions must be 1..${sorted.length} without gaps or duplicates, got [${got}]`,
      );
    }
    if (typeof m.up !== "string" || m.up.trim() === "" || typeof m.down !== "string") {
      throw new AosError(
        "invalidArgument",
        `Invalid migration ${m.version}: "up" must be non-empty SQL and "down" a string`,
      );
    }
  });
  return sorted;
}

/**
 * An open SQLite database. Synchronous like `node:sqlite` itself: keep transactions short, they
 * block the event loop.
 */
export class Database implements Disposable {
  /** The file path. */
  readonly path: string;
  /** The underlying `node:sqlite` handle, for anything this class does not wrap. */
  readonly sqlite: DatabaseSync;
  readonly #logger: Logger;
  #depth = 0;

  /** Wraps an open handle; use {@link openDatabase} to get one with the right pragmas. */
  constructor(path: string, sqlite: DatabaseSync, logger: Logger = nullLogger) {
    this.path = path;
    this.sqlite = sqlite;
    this.#logger = logger;
  }

  /** Compiles a statement. */
  prepare(sql: string): StatementSync {
    return this.sqlite.prepare(sql);
  }

  /** Runs one or more statements without results. */
  exec(sql: string): void {
    this.sqlite.exec(sql);
  }

  /** `true` while the connection is inside a transaction. */
  get inTransaction(): boolean {
    return this.sqlite.isTransaction;
  }

  /**
   * Runs `fn` in a transaction: committed when it returns, rolled back when it throws.
   *
   * The outermost call takes the write lock up front (`BEGIN IMMEDIATE`), so two writers wait on
   * the busy timeout instead of failing mid-transaction on a lock upgrade. Nested calls become
   * savepoints. `fn` must be synchronous: an `await` inside would let other code run in the
   * middle of the transaction, so a returned promise is rolled back and rejected.
   */
  transaction<T>(fn: (db: Database) => T): T {
    const depth = this.#depth;
    const savepoint = `aos_tx_${depth}`;
    this.sqlite.exec(depth === 0 ? "BEGIN IMMEDIATE" : `SAVEPOINT ${savepoint}`);
    this.#depth++;
    try {
      const result = fn(this);
      if (
        result !== null && typeof result === "object" &&
        typeof (result as { then?: unknown }).then === "function"
      ) {
        (result as unknown as PromiseLike<unknown>).then(undefined, () => {});
        throw new AosError(
          "invalidArgument",
          `Cannot run transaction on ${this.path}: the callback returned a promise (it must be synchronous)`,
        );
      }
      this.#depth--;
      this.sqlite.exec(depth === 0 ? "COMMIT" : `RELEASE ${savepoint}`);
      return result;
    } catch (err) {
      if (this.#depth > depth) this.#depth = depth;
      this.#rollback(depth === 0 ? "ROLLBACK" : `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
      throw err;
    }
  }

  #rollback(sql: string): void {
    // SQLite already rolls back on some errors (full disk, I/O); then there is nothing to undo.
    if (!this.sqlite.isTransaction) return;
    try {
      this.sqlite.exec(sql);
    } catch (err) {
      this.#logger.error("rollback failed", { path: this.path, err: messageOf(err) });
    }
  }

  /** The schema version recorded in the database (0 when never migrated). */
  get schemaVersion(): number {
    const exists = this.sqlite.prepare(
      "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?",
    ).get(VERSION_TABLE);
    if (!exists) return 0;
    const row = this.sqlite.prepare(`SELECT version FROM ${VERSION_TABLE} WHERE id = 0`).get();
    return row ? Number(row.version) : 0;
  }

  /**
   * Migrates to `targetVersion` (default: the latest), one transaction per step, so a failure or
   * a crash leaves the database at the last completed version.
   *
   * Steps run inside a transaction, where `PRAGMA foreign_keys` has no effect: a step that
   * rebuilds a referenced table should use `PRAGMA defer_foreign_keys = ON` instead.
   */
  migrate(migrations: readonly Migration[], targetVersion?: number): MigrationResult {
    const steps = validateMigrations(migrations);
    const known = steps.length;
    const target = targetVersion ?? known;
    if (!Number.isInteger(target) || target < 0 || target > known) {
      throw new AosError(
        "invalidArgument",
        `Cannot migrate database ${this.path} to version ${target}: this build knows versions 0..${known}`,
      );
    }
    this.transaction(() => {
      this.sqlite.exec(
        `CREATE TABLE IF NOT EXISTS ${VERSION_TABLE} ` +
          `(id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL);` +
          `INSERT OR IGNORE INTO ${VERSION_TABLE} (id, version) VALUES (0, 0);`,
      );
    });
    const from = this.schemaVersion;
    if (from > known) throw newerDatabaseError(this.path, from, known);
    let current = from;
    while (current !== target) {
      const up = current < target;
      const next = up ? current + 1 : current - 1;
      const step = steps[(up ? next : current) - 1]!;
      const sql = up ? step.up : step.down;
      if (!up && sql.trim() === "") {
        throw new AosError(
          "notSupported",
          `Cannot roll back database ${this.path} from version ${current} to ${next}: migration ${current} has no down script`,
        );
      }
      try {
        this.transaction(() => {
          this.sqlite.exec(sql);
          this.sqlite.prepare(`UPDATE ${VERSION_TABLE} SET version = ? WHERE id = 0`).run(next);
        });
      } catch (err) {
        throw new AosError(
          "failed",
          `Cannot migrate database ${this.path} from version ${current} to ${next}: ${
            messageOf(err)
          } (it stays at version ${current})`,
          { cause: err },
        );
      }
      this.#logger.info("database migrated", { path: this.path, from: current, to: next });
      current = next;
    }
    return { from, to: current };
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.sqlite.isOpen) this.sqlite.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function newerDatabaseError(path: string, version: number, known: number): AosError {
  return new AosError(
    "wrongState",
    `database ${path} is at version ${version}, this build knows up to ${known}: ` +
      `refusing to open (downgrade the data with the newer build first)`,
  );
}

/**
 * Opens (or creates) a database file with WAL journaling, a busy timeout and foreign keys on,
 * then migrates it when `migrations` are given. Refuses (`wrongState`) a database whose schema
 * is newer than `migrations` knows.
 */
export function openDatabase(options: OpenDatabaseOptions): Database {
  const { path } = options;
  const busy = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (!Number.isInteger(busy) || busy < 0) {
    throw new AosError("invalidArgument", `Invalid busy timeout for ${path}: ${busy} ms`);
  }
  let sqlite: DatabaseSync;
  try {
    sqlite = new DatabaseSync(path);
  } catch (err) {
    throw new AosError("failed", `Cannot open database ${path}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  const db = new Database(path, sqlite, options.logger);
  try {
    // The busy timeout goes first: switching to WAL needs a lock another process may hold.
    sqlite.exec(`PRAGMA busy_timeout = ${busy}`);
    const mode = sqlite.prepare("PRAGMA journal_mode = WAL").get()?.journal_mode;
    if (mode !== "wal") {
      throw new AosError(
        "failed",
        `Cannot open database ${path}: journal mode is "${String(mode)}", WAL is required`,
      );
    }
    sqlite.exec("PRAGMA foreign_keys = ON");
    if (options.migrations) db.migrate(options.migrations, options.targetVersion);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof AosError) throw err;
    throw new AosError("failed", `Cannot open database ${path}: ${messageOf(err)}`, {
      cause: err,
    });
  }
}

/**
 * SQLite persistence for the components: `node:sqlite` (built into Deno, no FFI grant needed)
 * on a file in WAL mode, with a busy timeout and foreign keys on.
 *
 * The schema is versioned by migrations the caller supplies as data (`{version, up, down}`,
 * numbered 1..N). {@link openDatabase} migrates to the latest version (or a chosen one, rolling
 * back with the `down` scripts), one transaction per step, so a failed step or a killed process
 * leaves the previous version intact. A database newer than the build is refused rather than
 * misread. {@link Database.transaction} wraps synchronous work in a transaction.
 *
 * ```ts
 * using db = openDatabase({ path: "/var/aos/iam/iamanager.db", migrations });
 * db.transaction(() => db.prepare("INSERT INTO nodeinfo (id, info) VALUES (?, ?)").run(id, json));
 * ```
 * @module
 */
export {
  Database,
  DEFAULT_BUSY_TIMEOUT_MS,
  type Migration,
  type MigrationResult,
  openDatabase,
  type OpenDatabaseOptions,
  validateMigrations,
  VERSION_TABLE,
} from "./database.ts";

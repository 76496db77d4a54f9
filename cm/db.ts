/**
 * `cm.db`: CM's SQLite database (`<workingDir>/cm.db`) and the small stores the composition
 * root hands to the core modules.
 *
 * One migration list numbers every table set: the image manager's items and blobs, the cloud
 * outbox, the update manager's state and the launcher's state. The update manager keeps its
 * state and desired status in one row (upstream `updatemanager`); the launcher keeps one JSON
 * document (its run requests, placements and UID/GID pools are written together, so a crash
 * never leaves them out of step). Append new steps; never edit a released one.
 * @module
 */
import { join } from "node:path";
import { type Database, type Migration, openDatabase } from "@aos/shared/db";
import type { Logger } from "@aos/shared/logger";
import { CLOUD_OUTBOX_MIGRATION } from "./cloud/mod.ts";
import type { LauncherState, LauncherStore, UpdateState, UpdateStateStore } from "./core/mod.ts";
import { CM_IMAGE_MIGRATION } from "./image/mod.ts";

/** File name of the CM database inside `workingDir` (upstream name). */
export const CM_DB_FILE = "cm.db";

/** Schema of `cm.db`. */
export const CM_MIGRATIONS: readonly Migration[] = [
  { version: 1, ...CM_IMAGE_MIGRATION },
  { version: 2, ...CLOUD_OUTBOX_MIGRATION },
  {
    version: 3,
    up: `
      CREATE TABLE updatemanager (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        updateState TEXT NOT NULL,
        desiredStatus TEXT NOT NULL
      );
      INSERT INTO updatemanager (id, updateState, desiredStatus) VALUES (1, 'none', '{}');`,
    down: `DROP TABLE updatemanager;`,
  },
  {
    version: 4,
    up: `
      CREATE TABLE launcher_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL
      );`,
    down: `DROP TABLE launcher_state;`,
  },
];

/** Options of {@link openCmDatabase}. */
export interface OpenCmDatabaseOptions {
  /** CM `workingDir`; the file is `<workingDir>/cm.db`. */
  workingDir: string;
  /** Receives migration records. */
  logger?: Logger;
}

/** Opens (creating and migrating) `<workingDir>/cm.db`. */
export function openCmDatabase(options: OpenCmDatabaseOptions): Database {
  return openDatabase({
    path: join(options.workingDir, CM_DB_FILE),
    migrations: CM_MIGRATIONS,
    ...(options.logger ? { logger: options.logger } : {}),
  });
}

/** Largest stored JSON document read back (bytes); a bigger one is treated as corrupt. */
const MAX_DOCUMENT = 16 * 1024 * 1024;

/** The update manager's state and desired status in the `updatemanager` row. */
export class SqliteUpdateStateStore implements UpdateStateStore {
  readonly #db: Database;

  /** `db` must have {@link CM_MIGRATIONS} applied. */
  constructor(db: Database) {
    this.#db = db;
  }

  /** The stored row; `undefined` when it is the initial one. */
  load(): { state: string; desiredStatus: string } | undefined {
    const row = this.#db.prepare(
      "SELECT updateState, desiredStatus FROM updatemanager WHERE id = 1",
    ).get() as { updateState: string; desiredStatus: string } | undefined;
    if (!row || row.updateState === "none") return undefined;
    if (row.desiredStatus.length > MAX_DOCUMENT) {
      return { state: row.updateState, desiredStatus: "" };
    }
    return { state: row.updateState, desiredStatus: row.desiredStatus };
  }

  /** Replaces state and desired status in one statement (one transaction). */
  save(state: UpdateState, desiredStatus: string): void {
    this.#db.prepare(
      `INSERT INTO updatemanager (id, updateState, desiredStatus) VALUES (1, ?, ?)
       ON CONFLICT (id) DO UPDATE SET updateState = excluded.updateState,
         desiredStatus = excluded.desiredStatus`,
    ).run(state, desiredStatus);
  }
}

/** The launcher's state as one JSON document in `launcher_state`. */
export class SqliteLauncherStore implements LauncherStore {
  readonly #db: Database;

  /** `db` must have {@link CM_MIGRATIONS} applied. */
  constructor(db: Database) {
    this.#db = db;
  }

  /** The stored document (parsed, validated by the launcher), `undefined` when none. */
  load(): unknown {
    const row = this.#db.prepare("SELECT state FROM launcher_state WHERE id = 1").get() as
      | { state: string }
      | undefined;
    if (!row) return undefined;
    // The launcher validates the shape; unreadable JSON is reported by it as malformed state.
    if (row.state.length > MAX_DOCUMENT) return { version: "too large" };
    try {
      return JSON.parse(row.state);
    } catch {
      return { version: "unreadable" };
    }
  }

  /** Replaces the stored document. */
  save(state: LauncherState): void {
    this.#db.prepare(
      `INSERT INTO launcher_state (id, state) VALUES (1, ?)
       ON CONFLICT (id) DO UPDATE SET state = excluded.state`,
    ).run(JSON.stringify(state));
  }
}

/**
 * Migrations for the killed-during-migration test: step 2 changes existing rows, writes
 * enough to spill uncommitted pages into the WAL file, then spins for a long time.
 * @module
 */
import type { Migration } from "../database.ts";

/** Rows version 1 holds. */
export const V1_NAMES = ["alpha", "beta", "gamma"];

/** The fixture schema. */
export const KILL_MIGRATIONS: Migration[] = [
  {
    version: 1,
    up: `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO items (name) VALUES ${V1_NAMES.map((n) => `('${n}')`).join(", ")};`,
    down: "DROP TABLE items;",
  },
  {
    version: 2,
    up: `ALTER TABLE items ADD COLUMN extra TEXT;
         UPDATE items SET name = name || '-v2', extra = 'x';
         CREATE TABLE big (n INTEGER PRIMARY KEY, payload BLOB NOT NULL);
         INSERT INTO big (n, payload)
           WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 40000)
           SELECT n, randomblob(256) FROM c;
         CREATE TABLE spin AS
           WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 4000000000)
           SELECT count(*) AS k FROM c;`,
    down: "DROP TABLE spin; DROP TABLE big; ALTER TABLE items DROP COLUMN extra;",
  },
];

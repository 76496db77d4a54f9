import assert from "node:assert/strict";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import { memoryLogger } from "../core/logger.ts";
import { type Migration, openDatabase, validateMigrations } from "./mod.ts";
import { KILL_MIGRATIONS, V1_NAMES } from "./testdata/kill_migrations.ts";

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    up: "CREATE TABLE nodes (id TEXT PRIMARY KEY, info TEXT NOT NULL);",
    down: "DROP TABLE nodes;",
  },
  {
    version: 2,
    up: `CREATE TABLE certs (type TEXT NOT NULL, node TEXT NOT NULL REFERENCES nodes(id),
           serial BLOB NOT NULL, PRIMARY KEY (type, serial));`,
    down: "DROP TABLE certs;",
  },
  {
    version: 3,
    up: "ALTER TABLE nodes ADD COLUMN state TEXT NOT NULL DEFAULT 'unprovisioned';",
    down: "ALTER TABLE nodes DROP COLUMN state;",
  },
];

async function withTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aos_db_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function tables(db: { prepare(sql: string): { all(): unknown[] } }): string[] {
  return (db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).all() as { name: string }[]).map((r) => r.name);
}

function columns(db: { prepare(sql: string): { all(): unknown[] } }, table: string): string[] {
  return (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((r) => r.name);
}

function assertAosError(err: unknown, code: string, text: string | RegExp): true {
  assert.ok(err instanceof AosError, `expected AosError, got ${err}`);
  assert.equal(err.code, code);
  if (typeof text === "string") assert.ok(err.message.includes(text), err.message);
  else assert.match(err.message, text);
  return true;
}

Deno.test("openDatabase enables WAL, foreign keys and the busy timeout", async () => {
  await withTempDir((dir) => {
    using db = openDatabase({ path: join(dir, "a.db"), busyTimeoutMs: 1234 });
    assert.equal(db.prepare("PRAGMA journal_mode").get()?.journal_mode, "wal");
    assert.equal(db.prepare("PRAGMA foreign_keys").get()?.foreign_keys, 1);
    assert.equal(db.prepare("PRAGMA busy_timeout").get()?.timeout, 1234);
    assert.equal(db.schemaVersion, 0);
  });
});

Deno.test("WAL mode persists in the file and the default busy timeout is 5 s", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "a.db");
    openDatabase({ path, migrations: MIGRATIONS }).close();
    using db = openDatabase({ path });
    assert.equal(db.prepare("PRAGMA busy_timeout").get()?.timeout, 5000);
    db.exec("PRAGMA journal_mode = DELETE");
    db.close();
    // Reopening switches back to WAL even when something else changed the file's mode.
    using again = openDatabase({ path });
    assert.equal(again.prepare("PRAGMA journal_mode").get()?.journal_mode, "wal");
  });
});

Deno.test("migrates 0 -> N and records the version", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "a.db");
    const logger = memoryLogger();
    {
      using db = openDatabase({ path, migrations: MIGRATIONS, logger });
      assert.equal(db.schemaVersion, 3);
      assert.deepEqual(tables(db), ["aos_schema_version", "certs", "nodes"]);
      assert.deepEqual(columns(db, "nodes"), ["id", "info", "state"]);
    }
    assert.deepEqual(logger.records.map((r) => [r.fields.from, r.fields.to]), [[0, 1], [1, 2], [
      2,
      3,
    ]]);
    // Reopening at the latest version runs nothing.
    using db = openDatabase({ path, migrations: MIGRATIONS, logger });
    assert.equal(db.schemaVersion, 3);
    assert.equal(logger.records.length, 3);
    // Foreign keys hold after migration.
    assert.throws(
      () => db.prepare("INSERT INTO certs (type, node, serial) VALUES ('sm', 'nope', x'01')").run(),
      /FOREIGN KEY/,
    );
  });
});

Deno.test("migrates step by step to a target, then rolls back N -> k and to 0", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "a.db");
    {
      using db = openDatabase({ path, migrations: MIGRATIONS, targetVersion: 1 });
      assert.equal(db.schemaVersion, 1);
      assert.deepEqual(tables(db), ["aos_schema_version", "nodes"]);
      db.prepare("INSERT INTO nodes (id, info) VALUES ('main', '{}')").run();
      assert.deepEqual(db.migrate(MIGRATIONS), { from: 1, to: 3 });
      assert.deepEqual(db.migrate(MIGRATIONS, 1), { from: 3, to: 1 });
      assert.deepEqual(tables(db), ["aos_schema_version", "nodes"]);
      assert.deepEqual(columns(db, "nodes"), ["id", "info"]);
      // Data that lives in version 1 survives the round trip.
      assert.deepEqual(
        db.prepare("SELECT id, info FROM nodes").all().map((r) => ({ ...r })),
        [{ id: "main", info: "{}" }],
      );
    }
    using db = openDatabase({ path, migrations: MIGRATIONS, targetVersion: 0 });
    assert.equal(db.schemaVersion, 0);
    assert.deepEqual(tables(db), ["aos_schema_version"]);
  });
});

Deno.test("a failing step rolls back and leaves the previous version intact", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "a.db");
    const broken: Migration[] = [
      ...MIGRATIONS.slice(0, 2),
      {
        version: 3,
        // The first statement succeeds; the second fails: both must be undone.
        up: "ALTER TABLE nodes ADD COLUMN state TEXT; INSERT INTO missing VALUES (1);",
        down: "ALTER TABLE nodes DROP COLUMN state;",
      },
    ];
    assert.throws(
      () => openDatabase({ path, migrations: broken }),
      (err) =>
        assertAosError(
          err,
          "failed",
          /from version 2 to 3: .*no such table: missing.*stays at version 2/,
        ),
    );
    using db = openDatabase({ path, migrations: broken, targetVersion: 2 });
    assert.equal(db.schemaVersion, 2);
    assert.deepEqual(columns(db, "nodes"), ["id", "info"]);
    assert.equal(db.inTransaction, false);
    // A failing down script is rolled back the same way.
    const badDown = MIGRATIONS.map((m) => m.version === 2 ? { ...m, down: "DROP TABLE nope;" } : m);
    assert.throws(() => db.migrate(badDown, 0), (err) => assertAosError(err, "failed", "2 to 1"));
    assert.equal(db.schemaVersion, 2);
    assert.deepEqual(tables(db), ["aos_schema_version", "certs", "nodes"]);
  });
});

Deno.test("refuses a database newer than the build knows", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "a.db");
    openDatabase({ path, migrations: MIGRATIONS }).close();
    assert.throws(
      () => openDatabase({ path, migrations: MIGRATIONS.slice(0, 2) }),
      (err) =>
        assertAosError(
          err,
          "wrongState",
          `database ${path} is at version 3, this build knows up to 2: refusing to open ` +
            "(downgrade the data with the newer build first)",
        ),
    );
    // Nothing was changed by the refusal.
    using db = openDatabase({ path });
    assert.equal(db.schemaVersion, 3);
  });
});

Deno.test("a rollback through a step without a down script is refused", async () => {
  await withTempDir((dir) => {
    const oneWay = MIGRATIONS.map((m) => m.version === 2 ? { ...m, down: " " } : m);
    using db = openDatabase({ path: join(dir, "a.db"), migrations: oneWay });
    assert.throws(
      () => db.migrate(oneWay, 0),
      (err) =>
        assertAosError(err, "notSupported", "from version 2 to 1: migration 2 has no down script"),
    );
    assert.equal(db.schemaVersion, 2);
  });
});

Deno.test({
  name: "validateMigrations requires versions 1..N and SQL text",
  permissions: "none",
  fn() {
    const m = (version: number): Migration => ({ version, up: "SELECT 1", down: "" });
    assert.deepEqual(validateMigrations([m(2), m(1)]).map((x) => x.version), [1, 2]);
    assert.deepEqual(validateMigrations([]), []);
    for (const bad of [[m(0)], [m(1), m(3)], [m(1), m(1)], [m(2)], [m(1.5)]]) {
      assert.throws(() => validateMigrations(bad), (e) => assertAosError(e, "invalidArgument", ""));
    }
    assert.throws(
      () => validateMigrations([{ version: 1, up: "", down: "" }]),
      (e) => assertAosError(e, "invalidArgument", "migration 1"),
    );
  },
});

Deno.test("migrate rejects targets outside 0..N", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "a.db");
    assert.throws(
      () => openDatabase({ path, migrations: MIGRATIONS, targetVersion: 4 }),
      (e) => assertAosError(e, "invalidArgument", "knows versions 0..3"),
    );
  });
});

Deno.test("transaction commits, rolls back on throw, nests as savepoints", async () => {
  await withTempDir((dir) => {
    using db = openDatabase({ path: join(dir, "a.db"), migrations: MIGRATIONS });
    const insert = db.prepare("INSERT INTO nodes (id, info) VALUES (?, '{}')");
    const ids = () => db.prepare("SELECT id FROM nodes ORDER BY id").all().map((r) => r.id);

    assert.equal(db.transaction(() => insert.run("a").changes), 1);
    assert.throws(() =>
      db.transaction(() => {
        insert.run("b");
        throw new AosError("failed", "boom");
      }), /boom/);
    assert.deepEqual(ids(), ["a"]);

    db.transaction((tx) => {
      insert.run("c");
      assert.throws(() =>
        tx.transaction(() => {
          insert.run("d");
          throw new Error("inner");
        }), /inner/);
      assert.equal(tx.inTransaction, true);
      tx.transaction(() => insert.run("e"));
    });
    assert.deepEqual(ids(), ["a", "c", "e"]);
    assert.equal(db.inTransaction, false);

    assert.throws(
      // deno-lint-ignore require-await
      () => db.transaction(async () => insert.run("f")),
      (e) => assertAosError(e, "invalidArgument", "must be synchronous"),
    );
    assert.deepEqual(ids(), ["a", "c", "e"]);
    assert.equal(db.inTransaction, false);
  });
});

Deno.test("a second connection waits on the busy timeout, then fails cleanly", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "a.db");
    using a = openDatabase({ path, migrations: MIGRATIONS });
    using b = openDatabase({ path, busyTimeoutMs: 50 });
    a.exec("BEGIN IMMEDIATE");
    assert.throws(() => b.transaction(() => {}), /locked|busy/i);
    assert.equal(b.inTransaction, false);
    a.exec("COMMIT");
    b.transaction(() => b.prepare("INSERT INTO nodes (id, info) VALUES ('x', '{}')").run());
    assert.equal(a.prepare("SELECT count(*) AS n FROM nodes").get()?.n, 1);
  });
});

Deno.test("a process killed during a migration leaves the previous version intact", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "kill.db");
    openDatabase({ path, migrations: KILL_MIGRATIONS, targetVersion: 1 }).close();

    const fixture = new URL("./testdata/migrate_child.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--allow-read=${dir}`, `--allow-write=${dir}`, fixture, path],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let killed = false;
    try {
      // Uncommitted pages of step 2 spilling into the WAL prove the child is mid-step.
      const walReady = Date.now() + 15_000;
      for (;;) {
        const size = await Deno.stat(`${path}-wal`).then((s) => s.size, () => 0);
        if (size > 1_000_000) break;
        if (Date.now() > walReady) throw new Error("the child never reached the migration step");
        await new Promise((r) => setTimeout(r, 10));
      }
      child.kill("SIGKILL");
      killed = true;
    } finally {
      if (!killed) child.kill("SIGKILL");
      const [status, stderr] = await Promise.all([
        child.status,
        new Response(child.stderr).text(),
      ]);
      if (!killed) console.error(stderr);
      assert.equal(status.signal, "SIGKILL", `child ended otherwise: ${stderr}`);
    }

    // The WAL still holds the killed step's uncommitted frames; recovery must ignore them.
    assert.ok((await Deno.stat(`${path}-wal`)).size > 1_000_000);
    using db = openDatabase({ path, migrations: KILL_MIGRATIONS, targetVersion: 1 });
    assert.equal(db.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok");
    assert.equal(db.schemaVersion, 1);
    assert.deepEqual(tables(db), ["aos_schema_version", "items"]);
    assert.deepEqual(columns(db, "items"), ["id", "name"]);
    assert.deepEqual(
      db.prepare("SELECT name FROM items ORDER BY id").all().map((r) => r.name),
      V1_NAMES,
    );
  });
});

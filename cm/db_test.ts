import assert from "node:assert/strict";
import {
  CM_MIGRATIONS,
  openCmDatabase,
  SqliteLauncherStore,
  SqliteUpdateStateStore,
} from "./db.ts";
import { UnitConfigFile } from "./adapters/unit_config_file.ts";

Deno.test("cm.db: one migration list; update and launcher state survive a reopen", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cm_db_" });
  try {
    {
      using db = openCmDatabase({ workingDir: dir });
      assert.equal(db.schemaVersion, CM_MIGRATIONS.length);
      const updates = new SqliteUpdateStateStore(db);
      assert.equal(updates.load(), undefined);
      updates.save("downloading", '{"items":[]}');
      const launcher = new SqliteLauncherStore(db);
      assert.equal(launcher.load(), undefined);
      launcher.save({ version: 1, requests: [], instances: [], uids: { a: 1 }, gids: {} });
    }
    using db = openCmDatabase({ workingDir: dir });
    assert.deepEqual(new SqliteUpdateStateStore(db).load(), {
      state: "downloading",
      desiredStatus: '{"items":[]}',
    });
    assert.deepEqual((new SqliteLauncherStore(db).load() as { uids: unknown }).uids, { a: 1 });
    new SqliteUpdateStateStore(db).save("none", "{}");
    assert.equal(new SqliteUpdateStateStore(db).load(), undefined);
    // Every table of the image manager and the outbox is there.
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
      name: string;
    }[]).map((r) => r.name);
    for (const t of ["imagemanager", "imagemanager_blobs", "cloud_outbox", "updatemanager"]) {
      assert.ok(tables.includes(t), t);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unit config file: absent → undefined; saved atomically with mode 0600", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cm_uc_" });
  try {
    const file = new UnitConfigFile(`${dir}/sub/aos_unit.cfg`);
    assert.equal(await file.load(), undefined);
    await file.save('{"version":"1.0.0"}');
    assert.equal(await file.load(), '{"version":"1.0.0"}');
    assert.equal((await Deno.stat(`${dir}/sub/aos_unit.cfg`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ImageTables, type ItemRecord, openSmDatabase, SM_DB_FILE, SM_MIGRATIONS } from "./db.ts";

const D = (c: string) => `sha256:${c.repeat(64)}`;

function record(itemId: string, version: string, blobs: string[], layers: string[]): ItemRecord {
  return {
    item: {
      itemId,
      version,
      type: "service",
      manifestDigest: blobs[0]!,
      state: "installed",
      timestamp: 1_700_000_000_123,
    },
    blobs: blobs.map((digest, i) => ({
      digest,
      mediaType: i === 0 ? "application/vnd.oci.image.manifest.v1+json" : "x",
      size: 100 + i,
      role: i === 0 ? "manifest" : "config",
      position: 0,
    })),
    layers: layers.map((diffDigest) => ({
      diffDigest,
      blobDigest: D("f"),
      mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
      dirDigest: D("e"),
      size: 1000,
    })),
  };
}

async function withDb(fn: (t: ImageTables, dir: string) => void | Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "sm_db_" });
  try {
    using db = openSmDatabase({ workingDir: dir });
    await fn(new ImageTables(db), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sm db: file name, migrations up and down", async () => {
  await withDb((t, dir) => {
    assert.ok(existsSync(join(dir, SM_DB_FILE)));
    assert.equal(t.db.schemaVersion, SM_MIGRATIONS.length);
    t.db.migrate(SM_MIGRATIONS, 0);
    const tables = t.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all()
      .map((r) => r.name);
    assert.ok(!tables.includes("items"), `tables left after down: ${tables}`);
    t.db.migrate(SM_MIGRATIONS);
    assert.equal(t.db.schemaVersion, SM_MIGRATIONS.length);
  });
});

Deno.test("sm db: items keep ns timestamps, refs, shared content and exclusive sizes", async () => {
  await withDb((t) => {
    t.putItem(record("a", "1.0.0", [D("1"), D("2")], [D("a"), D("b")]));
    t.putItem(record("b", "1.0.0", [D("3"), D("2")], [D("b")]));
    const a = t.getItem("a", "1.0.0");
    assert.deepEqual(a, {
      itemId: "a",
      version: "1.0.0",
      type: "service",
      manifestDigest: D("1"),
      state: "installed",
      timestamp: 1_700_000_000_123,
    });
    // Stored like upstream: Unix nanoseconds.
    const raw = t.db.prepare("SELECT timestamp FROM items WHERE itemID = 'a'");
    raw.setReadBigInts(true);
    assert.equal(raw.get()?.timestamp, 1_700_000_000_123_000_000n);

    assert.deepEqual(t.itemLayers("a", "1.0.0").map((l) => l.diffDigest), [D("a"), D("b")]);
    assert.equal(t.blobRefCount(D("2")), 2);
    assert.equal(t.layerRefCount(D("b")), 2);
    // a alone holds blob 1 (100 bytes) and layer a (1000 bytes).
    assert.equal(t.exclusiveSize("a", "1.0.0"), 1100);

    assert.ok(t.setState("a", "1.0.0", "removed", 1_800_000_000_000));
    assert.equal(t.listItems({ state: "removed" }).length, 1);
    assert.ok(t.deleteItem("a", "1.0.0"));
    assert.deepEqual(t.unreferencedBlobs().map((b) => b.digest), [D("1")]);
    assert.deepEqual(t.unreferencedLayers().map((l) => l.diffDigest), [D("a")]);
    // Shared content cannot be deleted while referenced.
    assert.throws(() => t.deleteLayer(D("b")), /FOREIGN KEY/);
    assert.ok(t.deleteLayer(D("a")));
    assert.ok(t.deleteBlob(D("1")));
    assert.equal(t.countItems(), 1);
  });
});

Deno.test("sm db: putItem replaces a version's references atomically", async () => {
  await withDb((t) => {
    t.putItem(record("a", "1", [D("1"), D("2")], [D("a")]));
    t.putItem(record("a", "1", [D("3")], []));
    assert.deepEqual(t.itemBlobs("a", "1").map((b) => b.digest), [D("3")]);
    assert.deepEqual(t.itemLayers("a", "1"), []);
    // A failing registration (duplicate ref) leaves the previous state.
    const bad = record("a", "1", [D("4")], [D("c")]);
    bad.blobs.push({ ...bad.blobs[0]! });
    assert.throws(() => t.putItem(bad), /UNIQUE/);
    assert.deepEqual(t.itemBlobs("a", "1").map((b) => b.digest), [D("3")]);
    assert.equal(t.getLayer(D("c")), undefined);
  });
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { openDatabase } from "@aos/shared/db";
import { CLOUD_OUTBOX_MIGRATION, Outbox } from "./outbox.ts";

const migrations = [{ version: 1, ...CLOUD_OUTBOX_MIGRATION }];

function entry(txn: string, group: string, size = 10) {
  return {
    txn,
    group,
    messageType: group,
    systemId: "sys",
    queuedAt: 1,
    payload: new Uint8Array(size).fill(txn.charCodeAt(0)),
  };
}

Deno.test("Outbox: FIFO, supersede, per-group and byte bounds, migration down", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cm_outbox_" });
  try {
    using db = openDatabase({ path: join(dir, "cm.db"), migrations });
    const box = new Outbox(db, { maxPerGroup: 3, groupLimits: { alerts: 2 }, maxBytes: 100 });
    box.add(entry("u1", "unitStatus"));
    box.add(entry("a1", "alerts"));
    box.add(entry("d1", "unitStatus"));
    assert.deepEqual(box.list().map((e) => e.txn), ["u1", "a1", "d1"]);
    assert.deepEqual(box.list()[0]?.payload, new Uint8Array(10).fill("u".charCodeAt(0)));

    // A full status replaces every stored status (full or delta).
    assert.deepEqual(box.add(entry("u2", "unitStatus"), { supersede: true }).removed, ["u1", "d1"]);
    assert.deepEqual(box.list().map((e) => e.txn), ["a1", "u2"]);

    // Group cap: the oldest alerts go.
    box.add(entry("a2", "alerts"));
    assert.deepEqual(box.add(entry("a3", "alerts")).removed, ["a1"]);
    assert.deepEqual(box.list().map((e) => e.txn), ["u2", "a2", "a3"]);

    // Byte cap: oldest rows of any group go, never the new one.
    assert.deepEqual(box.add(entry("b1", "big", 80)).removed, ["u2"]);
    assert.deepEqual(box.list().map((e) => e.txn), ["a2", "a3", "b1"]);
    assert.deepEqual(box.add(entry("b2", "big", 150)).removed, ["a2", "a3", "b1"]);
    assert.deepEqual(box.list().map((e) => e.txn), ["b2"]);

    assert.ok(box.delete("b2"));
    assert.ok(!box.delete("b2"));
    assert.equal(box.size, 0);
    db.migrate(migrations, 0);
    assert.equal(db.schemaVersion, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { InstanceInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { openSmDatabase } from "../db.ts";
import { SqliteInstanceStore } from "./instance_store.ts";

function info(itemId: string, instance: bigint, extra: Partial<InstanceInfo> = {}): InstanceInfo {
  return InstanceInfo.fromPartial({
    instance: { itemId, subjectId: "s", instance, type: 0, preinstalled: false },
    version: "1.0.0",
    manifestDigest: "sha256:" + "a".repeat(64),
    uid: 5001,
    ...extra,
  });
}

async function withDir(f: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("desired instances survive a reopen bit for bit, 64-bit fields included", async () => {
  await withDir((dir) => {
    const one = info("svc", 2n ** 60n, {
      priority: 2n ** 63n + 5n,
      envVars: [{ name: "A", value: "B" }],
    });
    {
      using db = openSmDatabase({ workingDir: dir });
      const store = new SqliteInstanceStore(db);
      store.apply({
        put: [{ instanceId: "id-1", info: one }, {
          instanceId: "id-2",
          info: { ...one, version: "2.0.0" },
        }],
      });
      store.apply({ remove: ["id-2"] });
      assert.deepEqual(store.list().map((d) => d.instanceId), ["id-1"]);
    }
    using db = openSmDatabase({ workingDir: dir });
    const rows = new SqliteInstanceStore(db).list();
    assert.equal(rows.length, 1);
    assert.deepEqual(rows[0]!.info, one);
  });
});

Deno.test("the desired set is listed by item, subject and instance; list copies", async () => {
  await withDir((dir) => {
    using db = openSmDatabase({ workingDir: dir });
    const store = new SqliteInstanceStore(db);
    store.apply({
      put: [
        { instanceId: "b1", info: info("b", 1n) },
        { instanceId: "a10", info: info("a", 10n) },
        { instanceId: "a2", info: info("a", 2n) },
      ],
    });
    const listed = store.list();
    assert.deepEqual(listed.map((d) => d.instanceId), ["a2", "a10", "b1"]);
    listed.pop();
    assert.equal(store.list().length, 3);
  });
});

Deno.test("a change is one transaction: a failing write keeps the stored and listed set", async () => {
  await withDir((dir) => {
    using db = openSmDatabase({ workingDir: dir });
    const store = new SqliteInstanceStore(db);
    store.apply({ put: [{ instanceId: "keep", info: info("svc", 0n) }] });
    // The database refuses the last row of the batch, after the remove and a valid insert ran.
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON instances WHEN NEW.instanceID = 'bad'
      BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    assert.throws(
      () =>
        store.apply({
          remove: ["keep"],
          put: [
            { instanceId: "new", info: info("svc", 1n) },
            { instanceId: "bad", info: info("svc", 2n) },
          ],
        }),
      /refused/,
    );
    assert.deepEqual(store.list().map((d) => d.instanceId), ["keep"]);
    assert.deepEqual(new SqliteInstanceStore(db).list().map((d) => d.instanceId), ["keep"]);
  });
});

Deno.test("an unchanged row is not rewritten; a stop and start of one ID in a batch keeps it", async () => {
  await withDir((dir) => {
    using db = openSmDatabase({ workingDir: dir });
    const store = new SqliteInstanceStore(db);
    const row = { instanceId: "x", info: info("svc", 0n) };
    store.apply({ put: [row] });
    const changes = () => Number(db.prepare("SELECT total_changes() AS n").get()!.n);
    const before = changes();
    store.apply({ put: [{ instanceId: "x", info: info("svc", 0n) }] });
    assert.equal(changes(), before, "an identical row was written again");
    store.apply({ put: [{ instanceId: "x", info: info("svc", 0n, { uid: 6000 }) }] });
    assert.equal(changes(), before + 1);
    store.apply({
      remove: ["x"],
      put: [{ instanceId: "x", info: info("svc", 0n, { uid: 7000 }) }],
    });
    const reopened = new SqliteInstanceStore(db).list();
    assert.deepEqual(reopened.map((d) => [d.instanceId, d.info.uid]), [["x", 7000]]);
  });
});

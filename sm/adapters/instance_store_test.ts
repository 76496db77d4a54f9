import assert from "node:assert/strict";
import { InstanceInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { openSmDatabase } from "../db.ts";
import { SqliteInstanceStore } from "./instance_store.ts";

Deno.test("desired instances survive a reopen bit for bit, 64-bit fields included", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const info = InstanceInfo.fromPartial({
      instance: {
        itemId: "svc",
        subjectId: "s",
        instance: 2n ** 60n,
        type: 0,
        preinstalled: false,
      },
      version: "1.0.0",
      manifestDigest: "sha256:" + "a".repeat(64),
      uid: 5001,
      priority: 2n ** 63n + 5n,
      envVars: [{ name: "A", value: "B" }],
    });
    {
      using db = openSmDatabase({ workingDir: dir });
      const store = new SqliteInstanceStore(db);
      store.put({ instanceId: "id-1", info });
      store.put({ instanceId: "id-2", info: { ...info, version: "2.0.0" } });
      store.remove("id-2");
    }
    using db = openSmDatabase({ workingDir: dir });
    const rows = new SqliteInstanceStore(db).list();
    assert.equal(rows.length, 1);
    assert.deepEqual(rows[0]!.info, info);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

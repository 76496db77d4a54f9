import assert from "node:assert/strict";
import { join } from "node:path";
import { openDatabase } from "@aos/shared/db";
import { AosError } from "@aos/shared/errors";
import { CM_IMAGE_MIGRATIONS, ImageItemTable } from "./db.ts";

const D1 = `sha256:${"a".repeat(64)}`;
const D2 = `sha256:${"b".repeat(64)}`;
const D3 = `sha256:${"c".repeat(64)}`;

async function withTable(fn: (t: ImageItemTable) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cm-image-db-" });
  try {
    using db = openDatabase({ path: join(dir, "cm.db"), migrations: CM_IMAGE_MIGRATIONS });
    await fn(new ImageItemTable(db));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("image db: rows round-trip with ns timestamps and errorInfo", async () => {
  await withTable((t) => {
    const ts = Date.UTC(2025, 0, 2, 3, 4, 5, 678);
    t.put({
      itemId: "svc",
      version: "1.0.0",
      type: "service",
      indexDigest: D1,
      state: "pending",
      timestamp: ts,
    });
    assert.deepEqual(t.get("svc", "1.0.0"), {
      itemId: "svc",
      version: "1.0.0",
      type: "service",
      indexDigest: D1,
      state: "pending",
      timestamp: ts,
    });
    const st = t.db.prepare("SELECT timestamp FROM imagemanager");
    st.setReadBigInts(true);
    assert.equal(st.get()?.timestamp, BigInt(ts) * 1_000_000n);

    assert.equal(
      t.setState("svc", "1.0.0", "failed", ts + 1, new AosError("invalidChecksum", "bad blob")),
      true,
    );
    const failed = t.get("svc", "1.0.0");
    assert.equal(failed?.state, "failed");
    assert.equal(failed?.error?.code, "invalidChecksum");
    assert.equal(failed?.error?.message, "bad blob");
    assert.equal(t.setState("nope", "1", "pending", ts), false);
  });
});

Deno.test("image db: blob references, exclusive blobs and cascade delete", async () => {
  await withTable((t) => {
    const base = { type: "service", indexDigest: D1, state: "installed" as const, timestamp: 1 };
    t.put({ itemId: "a", version: "1", ...base });
    t.put({ itemId: "b", version: "1", ...base, timestamp: 2 });
    t.addBlob("a", "1", { digest: D1, size: 10 });
    t.addBlob("a", "1", { digest: D2, size: 20 });
    t.addBlob("b", "1", { digest: D1, size: 10 });
    t.addBlob("b", "1", { digest: D3, size: 0 });
    t.addBlob("b", "1", { digest: D3, size: 30 });
    assert.deepEqual(t.blobs("b", "1"), [{ digest: D1, size: 10 }, { digest: D3, size: 30 }]);
    assert.deepEqual(t.exclusiveBlobs("a", "1"), [{ digest: D2, size: 20 }]);
    assert.deepEqual([...t.referencedDigests()].sort(), [D1, D2, D3]);
    assert.deepEqual(t.list().map((r) => r.itemId), ["a", "b"]);
    assert.deepEqual(t.list({ state: "removed" }), []);

    assert.equal(t.delete("a", "1"), true);
    assert.deepEqual([...t.referencedDigests()].sort(), [D1, D3]);
    assert.deepEqual(t.exclusiveBlobs("b", "1").map((b) => b.digest).sort(), [D1, D3]);
    t.clearBlobs("b", "1");
    assert.equal(t.referencedDigests().size, 0);
  });
});

Deno.test("image db: the state column refuses unknown states", async () => {
  await withTable((t) => {
    assert.throws(() =>
      t.db.prepare(
        "INSERT INTO imagemanager (itemID, version, type, indexDigest, state, timestamp) VALUES ('x','1','s','d','bogus',0)",
      ).run()
    );
  });
});

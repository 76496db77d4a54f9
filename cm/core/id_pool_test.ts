import assert from "node:assert/strict";
import { AosError } from "@aos/shared/errors";
import { ID_RANGE_FIRST, ID_RANGE_LAST, IdPool, uidPoolKey } from "./id_pool.ts";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AosError, `expected AosError, got ${err}`);
    return err.code;
  }
  assert.fail("expected an error");
}

Deno.test({
  name: "IdPool: allocates from 5000 upwards, skipping ids the system uses",
  permissions: "none",
  fn() {
    const taken = new Set([5000, 5002]);
    const pool = new IdPool({ name: "UID", isTaken: (id) => taken.has(id) });
    assert.equal(ID_RANGE_FIRST, 5000);
    assert.equal(ID_RANGE_LAST, 10000);
    assert.equal(pool.acquire("a"), 5001);
    assert.equal(pool.acquire("b"), 5003);
    assert.equal(pool.acquire("c"), 5004);
    assert.equal(pool.get("b"), 5003);
    assert.equal(pool.size, 3);
  },
});

Deno.test({
  name: "IdPool: same key gets the same id with a reference count (per-item GID)",
  permissions: "none",
  fn() {
    const pool = new IdPool({ name: "GID" });
    assert.equal(pool.acquire("item1"), 5000);
    assert.equal(pool.acquire("item1"), 5000);
    assert.equal(pool.refs("item1"), 2);
    assert.equal(pool.release("item1"), false);
    assert.equal(pool.get("item1"), 5000);
    assert.equal(pool.release("item1"), true);
    assert.equal(pool.get("item1"), undefined);
    assert.equal(code(() => pool.release("item1")), "notFound");
  },
});

Deno.test({
  name: "IdPool: released ids are reused, lowest first",
  permissions: "none",
  fn() {
    const pool = new IdPool();
    for (const k of ["a", "b", "c"]) pool.acquire(k);
    pool.release("b");
    assert.equal(pool.acquire("d"), 5001);
    pool.releaseAll("a");
    pool.releaseAll("missing");
    assert.equal(pool.acquire("e"), 5000);
    assert.equal(pool.acquire("f"), 5003);
  },
});

Deno.test({
  name: "IdPool: restoring a wanted id (from the DB)",
  permissions: "none",
  fn() {
    // A restored id is kept even if the system now reports it taken: it was ours.
    const pool = new IdPool({ isTaken: (id) => id === 7000 });
    assert.equal(pool.acquire("a", 7000), 7000);
    assert.equal(pool.acquire("a", 7000), 7000);
    assert.equal(pool.refs("a"), 2);
    assert.equal(code(() => pool.acquire("b", 7000)), "alreadyExist");
    assert.equal(code(() => pool.acquire("a", 7001)), "invalidArgument");
    assert.equal(code(() => pool.acquire("c", 4999)), "outOfRange");
    assert.equal(code(() => pool.acquire("c", 10001)), "outOfRange");
    assert.equal(code(() => pool.acquire("c", 5000.5)), "outOfRange");
    assert.equal(code(() => pool.acquire("")), "invalidArgument");
    assert.equal(pool.acquire("c", 10000), 10000);
  },
});

Deno.test({
  name: "IdPool: exhaustion is noMemory with a clear message",
  permissions: "none",
  fn() {
    const pool = new IdPool({ name: "UID", first: 100, last: 103, isTaken: (id) => id === 101 });
    assert.deepEqual([pool.acquire("a"), pool.acquire("b"), pool.acquire("c")], [100, 102, 103]);
    let err: unknown;
    try {
      pool.acquire("d");
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof AosError);
    assert.equal(err.code, "noMemory");
    assert.match(err.message, /UID pool 100–103 is exhausted: 3 allocated/);
    pool.release("b");
    assert.equal(pool.acquire("d"), 102);
  },
});

Deno.test({
  name: "IdPool: the whole default range holds 5001 ids",
  permissions: "none",
  fn() {
    const pool = new IdPool();
    for (let i = 0; i <= ID_RANGE_LAST - ID_RANGE_FIRST; i++) pool.acquire(`k${i}`);
    assert.equal(pool.size, 5001);
    assert.equal(code(() => pool.acquire("one-more")), "noMemory");
  },
});

Deno.test({
  name: "IdPool: JSON round trip keeps ids and references",
  permissions: "none",
  fn() {
    const pool = new IdPool({ name: "GID" });
    pool.acquire("z");
    pool.acquire("a");
    pool.acquire("a");
    pool.acquire("m", 9000);
    const text = JSON.stringify(pool);
    const state = JSON.parse(text);
    assert.deepEqual(state, {
      version: 1,
      first: 5000,
      last: 10000,
      entries: [
        { key: "a", id: 5001, refs: 2 },
        { key: "m", id: 9000, refs: 1 },
        { key: "z", id: 5000, refs: 1 },
      ],
    });
    const back = IdPool.fromJSON(state, { name: "GID" });
    assert.deepEqual(back.toJSON(), pool.toJSON());
    assert.equal(back.refs("a"), 2);
    // Restored ids are not handed out again.
    assert.equal(back.acquire("n"), 5002);
  },
});

Deno.test({
  name: "IdPool: fromJSON rejects malformed or inconsistent state",
  permissions: "none",
  fn() {
    const entry = (key: string, id: number, refs = 1) => ({ key, id, refs });
    const cases: [string, unknown][] = [
      ["not an object", "x"],
      ["wrong version", { version: 2, first: 5000, last: 10000, entries: [] }],
      ["zero refs", { version: 1, first: 5000, last: 10000, entries: [entry("a", 5000, 0)] }],
      ["id out of range", { version: 1, first: 5000, last: 10000, entries: [entry("a", 20)] }],
      ["duplicate id", {
        version: 1,
        first: 5000,
        last: 10000,
        entries: [entry("a", 5000), entry("b", 5000)],
      }],
      ["duplicate key", {
        version: 1,
        first: 5000,
        last: 10000,
        entries: [entry("a", 5000), entry("a", 5001)],
      }],
      ["empty key", { version: 1, first: 5000, last: 10000, entries: [entry("", 5000)] }],
    ];
    for (const [name, state] of cases) {
      assert.equal(code(() => IdPool.fromJSON(state)), "invalidArgument", name);
    }
  },
});

Deno.test({
  name: "IdPool: invalid range and uidPoolKey",
  permissions: "none",
  fn() {
    assert.equal(code(() => new IdPool({ first: 10, last: 9 })), "invalidArgument");
    assert.equal(uidPoolKey({ itemId: "a/b", subjectId: "s", instance: 2 }), '["a/b","s",2]');
    assert.notEqual(
      uidPoolKey({ itemId: "a", subjectId: "b/c", instance: 0 }),
      uidPoolKey({ itemId: "a/b", subjectId: "c", instance: 0 }),
    );
  },
});

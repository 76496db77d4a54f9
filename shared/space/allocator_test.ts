import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { memoryLogger } from "../core/logger.ts";
import { createSpaceRegistry, type SpaceAllocator } from "./mod.ts";
import { realSpaceFs } from "./fs.ts";

const MiB = 1024 * 1024;
const isRoot = Deno.uid() === 0;
const needsRoot = isRoot ? "" : " [SKIPPED: needs root to mount a tmpfs]";

async function run(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A size-limited tmpfs under a fresh temp dir, unmounted and removed on dispose. */
async function tmpfs(size = "8m"): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "aos_space_" });
  try {
    await run("mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir);
  } catch (err) {
    await Deno.remove(dir);
    throw err;
  }
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await run("umount", dir);
      await Deno.remove(dir);
    },
  };
}

async function subdir(root: string, name: string): Promise<string> {
  const path = `${root}/${name}`;
  await Deno.mkdir(path);
  return path;
}

async function writeFile(path: string, size: number): Promise<void> {
  await Deno.writeFile(path, new Uint8Array(size));
}

async function free(path: string): Promise<number> {
  return (await realSpaceFs.size(path)).available;
}

function isNoMemory(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof AosError, String(err));
    assert.equal(err.code, "noMemory");
    assert.match(err.message, pattern);
    return true;
  };
}

/** Writes `size` bytes as item `id` through the allocator, the way an owner does. */
async function store(alloc: SpaceAllocator, id: string, size: number): Promise<void> {
  using space = await alloc.allocate(size);
  await writeFile(`${alloc.path}/${id}`, size);
  space.accept();
}

Deno.test({
  name: `space: allocators on one mount share accounting, another mount does not${needsRoot}`,
  ignore: !isRoot,
  async fn() {
    await using a = await tmpfs();
    await using b = await tmpfs();
    const registry = createSpaceRegistry();
    using a1 = await registry.allocator({ path: await subdir(a.dir, "one") });
    using a2 = await registry.allocator({ path: await subdir(a.dir, "two") });
    using b1 = await registry.allocator({ path: b.dir });

    assert.equal(a1.mountPoint, a.dir);
    assert.equal(a2.mountPoint, a.dir);
    assert.equal(b1.mountPoint, b.dir);
    assert.equal(registry.partitions().length, 2);

    // A pending reservation of a1 is visible to a2, but not to b1 on the other tmpfs.
    const held = await a1.allocate(5 * MiB);
    await assert.rejects(
      a2.allocate(4 * MiB),
      isNoMemory(
        new RegExp(`not enough space on ${a.dir} for ${4 * MiB} bytes: \\d+ free, 0 evictable`),
      ),
    );
    const other = await b1.allocate(5 * MiB);
    other.release();
    held.release();
    (await a2.allocate(4 * MiB)).release();

    // Accepted and written data is seen through statfs at the next burst.
    await store(a1, "blob", 5 * MiB);
    await assert.rejects(a2.allocate(4 * MiB), isNoMemory(/not enough space/));
    await Deno.remove(`${a1.path}/blob`);
    a1.free(5 * MiB);
    (await a2.allocate(4 * MiB)).release();
  },
});

Deno.test({
  name: `space: eviction removes outdated items oldest first across allocators${needsRoot}`,
  ignore: !isRoot,
  async fn() {
    await using fs = await tmpfs();
    const removed: string[] = [];
    const registry = createSpaceRegistry();
    const remover = (dir: () => string) => async (id: string) => {
      removed.push(id);
      await Deno.remove(`${dir()}/${id}`);
    };
    using x = await registry.allocator({
      path: await subdir(fs.dir, "x"),
      remove: remover(() => x.path),
    });
    using y = await registry.allocator({
      path: await subdir(fs.dir, "y"),
      remove: remover(() => y.path),
    });

    for (
      const [alloc, id, ts] of [[x, "x1", 100], [y, "y1", 50], [x, "x2", 300], [
        y,
        "y2",
        200,
      ]] as const
    ) {
      await store(alloc, id, MiB);
      await alloc.addOutdatedItem(id, MiB, new Date(ts));
    }
    const freeNow = await free(fs.dir);

    // More than free + all evictable: fails without evicting anything.
    await assert.rejects(
      x.allocate(freeNow + 4 * MiB + 1),
      isNoMemory(new RegExp(`${freeNow} free, ${4 * MiB} evictable`)),
    );
    assert.deepEqual(removed, []);

    // 1.5 MiB over free: the two oldest (one of each allocator) go, in timestamp order.
    const space = await x.allocate(freeNow + MiB + MiB / 2);
    assert.deepEqual(removed, ["y1", "x1"]);
    await assert.rejects(Deno.stat(`${y.path}/y1`), Deno.errors.NotFound);
    assert.deepEqual(registry.partitions()[0]?.outdated.map((o) => o.id), ["y2", "x2"]);
    space.release();

    // A restored item is no longer evictable.
    assert.equal(y.restoreOutdatedItem("y2"), true);
    assert.equal(y.restoreOutdatedItem("y2"), false);
    (await x.allocate(await free(fs.dir) + MiB / 2)).release();
    assert.deepEqual(removed, ["y1", "x1", "x2"]);
    await assert.rejects(x.allocate(await free(fs.dir) + 1), isNoMemory(/0 evictable/));
  },
});

Deno.test({
  name: `space: the limit percent caps one allocator and evicts only its own items${needsRoot}`,
  ignore: !isRoot,
  async fn() {
    await using fs = await tmpfs("8m");
    const registry = createSpaceRegistry();
    const removed: string[] = [];
    const limitedDir = await subdir(fs.dir, "limited");
    await writeFile(`${limitedDir}/existing`, MiB / 2);
    using limited = await registry.allocator({
      path: limitedDir,
      limitPercent: 25,
      remove: async (id) => {
        removed.push(id);
        await Deno.remove(`${limitedDir}/${id}`);
      },
    });
    using other = await registry.allocator({
      path: await subdir(fs.dir, "other"),
      remove: (id) => void removed.push(id),
    });
    assert.equal(limited.limit, 2 * MiB);
    assert.equal(limited.used, MiB / 2, "existing files count against the limit");

    await assert.rejects(
      limited.allocate(2 * MiB),
      isNoMemory(/limit 25% .* = 2097152 bytes\) for 2097152 bytes: 1572864 free, 0 evictable/),
    );
    await store(limited, "a", MiB);
    await store(other, "o", MiB);
    await other.addOutdatedItem("o", MiB, 1);
    // The partition has room and `other` has an evictable item, yet the limit holds.
    await assert.rejects(limited.allocate(MiB), isNoMemory(/limit 25%/));
    assert.deepEqual(removed, []);

    await limited.addOutdatedItem("a", MiB, 2);
    (await limited.allocate(MiB)).accept();
    assert.deepEqual(removed, ["a"]);
    assert.equal(limited.used, MiB / 2 + MiB);

    await assert.rejects(
      registry.allocator({ path: fs.dir, limitPercent: 80 }),
      (err: unknown) => err instanceof AosError && err.code === "outOfRange",
    );
    using third = await registry.allocator({ path: fs.dir, limitPercent: 75 });
    assert.equal(registry.partitions()[0]?.limitPercent, 100);
    third.close();
    assert.equal(registry.partitions()[0]?.limitPercent, 25);
  },
});

Deno.test({
  name: `space: concurrent allocations never over-commit the partition${needsRoot}`,
  ignore: !isRoot,
  async fn() {
    await using fs = await tmpfs("8m");
    const registry = createSpaceRegistry();
    const one = await registry.allocator({ path: await subdir(fs.dir, "one") });
    const two = await registry.allocator({ path: await subdir(fs.dir, "two") });
    const available = await free(fs.dir);
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? one : two).allocate(MiB)),
    );
    const granted = results.filter((r) => r.status === "fulfilled");
    assert.equal(granted.length, Math.floor(available / MiB));
    for (const r of results) {
      if (r.status === "rejected") isNoMemory(/not enough space/)(r.reason);
    }
    assert.equal(registry.partitions()[0]?.pending, granted.length);
    for (const r of granted) r.value.release();
    assert.equal(registry.partitions()[0]?.available, available);
    one.close();
    two.close();
    assert.deepEqual(registry.partitions(), []);
  },
});

Deno.test("space: handle lifecycle, resize and release in finally", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const registry = createSpaceRegistry();
    using alloc = await registry.allocator({ path: dir });
    {
      using space = await alloc.allocate(1000);
      assert.equal(space.state, "pending");
      assert.equal(alloc.used, 1000);
      space.resize(400);
      assert.equal(alloc.used, 400);
      assert.equal(registry.partitions()[0]?.pending, 1);
    }
    assert.equal(alloc.used, 0, "leaving the block released the pending space");
    assert.equal(registry.partitions()[0]?.pending, 0);

    const kept = await alloc.allocate(10);
    kept.accept();
    kept.release(); // no-op once accepted
    assert.equal(kept.state, "accepted");
    assert.equal(alloc.used, 10);
    assert.throws(() => kept.accept(), (err: unknown) => (err as AosError).code === "wrongState");
    alloc.free(10);
    assert.equal(alloc.used, 0);

    await assert.rejects(
      alloc.allocate(-1),
      (err: unknown) => (err as AosError).code === "invalidArgument",
    );
    await assert.rejects(alloc.addOutdatedItem("a", 1, 0), /no remove callback/);
    alloc.close();
    await assert.rejects(alloc.allocate(1), /allocator is closed/);
    await assert.rejects(
      registry.allocator({ path: `${dir}/missing` }),
      (err: unknown) => (err as AosError).code === "notFound",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("space: the outdated-item cap evicts the oldest at once; failed removals are skipped", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const logger = memoryLogger();
    const registry = createSpaceRegistry({ maxOutdatedItems: 3, logger });
    const removed: string[] = [];
    using alloc = await registry.allocator({
      path: dir,
      used: 400,
      remove: (id) => {
        if (id === "broken") throw new Error("disk says no");
        removed.push(id);
      },
    });
    await alloc.addOutdatedItem("c", 100, 30);
    await alloc.addOutdatedItem("broken", 100, 5);
    await alloc.addOutdatedItem("a", 100, 10);
    await alloc.addOutdatedItem("b", 100, 20);
    assert.deepEqual(removed, [], "the broken item was the oldest; its removal failed");
    assert.ok(logger.records.some((r) => r.msg === "Cannot evict outdated item"));
    assert.equal(alloc.used, 400, "a failed removal frees nothing");
    await alloc.addOutdatedItem("d", 100, 40);
    assert.deepEqual(removed, ["a"]);
    assert.equal(alloc.used, 300);
    await alloc.addOutdatedItem("b", 100, 50); // re-adding replaces, no eviction
    assert.deepEqual(registry.partitions()[0]?.outdated.map((o) => o.id), ["c", "d", "b"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * `kill -9` of a real `sm` (under its manifest) while instances run and while an image installs:
 * after a restart the instances are reconciled (each runs once, no orphan container, no leaked
 * overlay mount, no stray bundle), the interrupted install completes, and the database agrees
 * with the disk.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import type { InstanceStatus } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { instanceId } from "../sm/runtime/instance_id.ts";
import { APPLETS, BUSYBOX, layer, serviceImage, type TarSpec } from "./fixtures/oci_image.ts";
import {
  key,
  mountsBelow,
  smSkipReason,
  type SmUnit,
  startSmUnit,
  waitFor,
} from "./fixtures/sm_unit.ts";

const skip = await smSkipReason();
if (skip) console.warn(`sm_crash_test: SKIPPED: ${skip}`);

type Want = [itemId: string, instance: number][];

function idOf(itemId: string, instance: number): string {
  return instanceId({ itemId, subjectId: "subj", instance });
}

/** A busybox layer with a tag file, so that its digest is its own. */
async function taggedLayer(tag: string) {
  const entries: TarSpec[] = [
    { path: "bin/", type: "dir" },
    { path: "bin/busybox", data: await Deno.readFile(BUSYBOX), mode: 0o755 },
    ...APPLETS.map((a): TarSpec => ({ path: `bin/${a}`, type: "symlink", linkname: "busybox" })),
    { path: "etc/", type: "dir" },
    { path: "etc/tag", data: `${tag}\n` },
  ];
  return await layer(entries);
}

/** `runc run` processes (the SM's foreground children, or orphans of a killed SM) per ID. */
async function runcRunProcesses(u: SmUnit): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const raw = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    const argv = raw.split("\0").filter((a) => a !== "");
    if (!argv[0]?.endsWith("runc") || !argv.includes(u.paths.runcRoot)) continue;
    if (!argv.includes("run")) continue;
    const id = argv.at(-1)!;
    out.set(id, (out.get(id) ?? 0) + 1);
  }
  return out;
}

/** The node runs exactly `want`, once each, with nothing else of the SM's left around. */
async function assertReconciled(u: SmUnit, want: Want): Promise<void> {
  const ids = want.map(([item, i]) => idOf(item, i)).sort();
  const containers = await u.runc.list();
  assert.deepEqual(containers.map((c) => c.id).sort(), ids, "runc list");
  for (const c of containers) assert.equal(c.status, "running", c.id);
  // The killed SM's `runc run` children end once their containers are gone.
  const runs = await waitFor("one runc run per instance", async () => {
    const m = await runcRunProcesses(u);
    return [...m.values()].every((n) => n === 1) && m.size === ids.length && m;
  });
  assert.deepEqual([...runs.keys()].sort(), ids);
  assert.deepEqual(
    (await mountsBelow(u.paths.runtimeDir)).sort(),
    ids.map((id) => `${u.paths.runtimeDir}/${id}/rootfs`).sort(),
    "one rootfs mount per instance",
  );
  const bundles: string[] = [];
  for await (const e of Deno.readDir(u.paths.runtimeDir)) if (e.isDirectory) bundles.push(e.name);
  assert.deepEqual(bundles.sort(), ids, "bundles");
}

/** The newest snapshot shows exactly `want`, all active. */
function allActive(list: InstanceStatus[] | undefined, want: Want): boolean {
  if (!list || list.length !== want.length) return false;
  const keys = new Set(list.map((s) => key(s.instance)));
  return keys.size === want.length &&
    want.every(([item, i]) => keys.has(`${item}/subj/${i}`)) &&
    list.every((s) => s.state === "active");
}

async function restartAndSettle(u: SmUnit, want: Want): Promise<void> {
  const seen = u.snapshots.length;
  await u.startSm();
  await waitFor("restored snapshot", () => allActive(u.snapshots.slice(seen).at(-1), want));
}

/** Files directly in `dir/<alg>/` as `alg:name`. */
async function digestsIn(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const alg of Deno.readDir(dir)) {
    for await (const e of Deno.readDir(`${dir}/${alg.name}`)) out.push(`${alg.name}:${e.name}`);
  }
  return out.sort();
}

async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else out.push(`${d}/${e.name}`);
    }
  };
  await walk(dir).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  return out;
}

Deno.test({
  name: "sm: kill -9 while instances run and while an image installs; restart reconciles",
  ignore: skip !== undefined,
  fn: async (t) => {
    await using u = await startSmUnit();
    const svc = await serviceImage(u.store, await taggedLayer("svc"));
    let want: Want = [["svc", 0], ["svc", 1], ["svc", 2]];

    await t.step("instances running when sm is killed are back, once each", async () => {
      const snap = await u.update(want.map(([item, i]) => u.info(item, i, svc.manifestDigest)));
      assert.ok(allActive(snap, want));
      const before = new Map((await u.runc.list()).map((c) => [c.id, c.pid]));
      const status = await u.sm!.kill();
      assert.equal(status.signal, "SIGKILL");
      // The containers outlive their SM.
      assert.equal((await u.runc.list()).filter((c) => c.status === "running").length, 3);

      await restartAndSettle(u, want);
      await assertReconciled(u, want);
      for (const c of await u.runc.list()) {
        assert.notEqual(c.pid, before.get(c.id), "the orphan was replaced, not duplicated");
        assert.equal(await Deno.stat(`/proc/${before.get(c.id)}`).catch(() => null), null);
      }
    });

    await t.step("an install interrupted by kill -9 completes after restart", async () => {
      const big = await taggedLayer("svc2");
      const svc2 = await serviceImage(u.store, big);
      u.stall.add(big.digest);
      const pending = u.update([u.info("svc2", 0, svc2.manifestDigest)]).catch((e) => e);
      await waitFor("layer download stalled", () => u.stalled.includes(big.digest));
      const partial = await waitFor(
        "partial download on disk",
        async () => (await filesBelow(`${u.paths.imagePath}/tmp`)).find((f) => f.endsWith(".part")),
      );
      assert.ok(partial);
      await u.sm!.kill();
      assert.match(String(await pending), /disconnected/);
      // The desired instance was stored before the install began; the item was not.
      const db = new DatabaseSync(`${u.paths.workingDir}/servicemanager.db`, { readOnly: true });
      try {
        const ids = db.prepare("SELECT instanceID FROM instances").all().map((r) => r.instanceID);
        assert.ok(ids.includes(idOf("svc2", 0)));
        const items = db.prepare("SELECT itemID FROM items").all().map((r) => r.itemID);
        assert.deepEqual(items, ["svc"]);
      } finally {
        db.close();
      }
      u.stall.clear();

      want = [...want, ["svc2", 0]];
      await restartAndSettle(u, want);
      await assertReconciled(u, want);
    });

    await t.step("after a clean stop the database agrees with the disk", async () => {
      const st = await u.sm!.stop();
      assert.equal(st.code, 0, u.sm!.log().slice(-3000));
      assert.deepEqual(await u.runc.list(), []);
      assert.deepEqual(await mountsBelow(u.paths.runtimeDir), []);

      const db = new DatabaseSync(`${u.paths.workingDir}/servicemanager.db`, { readOnly: true });
      try {
        const ids = db.prepare("SELECT instanceID FROM instances ORDER BY instanceID").all()
          .map((r) => r.instanceID);
        assert.deepEqual(ids, want.map(([item, i]) => idOf(item, i)).sort());
        const items = db.prepare("SELECT itemID, state FROM items").all()
          .map((r) => `${r.itemID}:${r.state}`).sort();
        assert.deepEqual(items, ["svc2:installed", "svc:installed"]);
        const blobs = db.prepare("SELECT digest FROM blobs").all().map((r) => String(r.digest))
          .sort();
        assert.deepEqual(await digestsIn(`${u.paths.imagePath}/blobs`), blobs);
        const layers = db.prepare("SELECT diffDigest FROM layers").all()
          .map((r) => String(r.diffDigest)).sort();
        assert.deepEqual(await digestsIn(`${u.paths.imagePath}/layers`), layers);
        for (const l of layers) {
          const dir = `${u.paths.imagePath}/layers/${l.replace(":", "/")}/layer`;
          assert.ok((await Deno.stat(`${dir}/bin/busybox`)).isFile, dir);
        }
      } finally {
        db.close();
      }
      assert.deepEqual(await filesBelow(`${u.paths.imagePath}/tmp`), [], "no staging leftovers");
    });
  },
});

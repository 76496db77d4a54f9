/**
 * SM launch benchmark: a real `sm` under its permission manifest, driven by a test CM (see
 * `tests/fixtures/sm_unit.ts`), starts N instances of an installed busybox service. Measured:
 *
 * - **sm**: from sending `update_instances` to the node's `node_instances_status` with all N
 *   `active` (the SM answers with the snapshot once every start resolved);
 * - **inside sm**: from the SM's log, `update_instances` received to the last instance `active`
 *   (the issue's measure: "from update_instances received to all instances active");
 * - **runc**: `runc run -d` alone on the same bundles the SM prepared (config.json and mounted
 *   rootfs kept by killing the SM with SIGKILL and deleting only the containers), with the SM's
 *   start concurrency (4), and sequentially;
 * - idle RSS of the `sm` process (`VmRSS` of /proc/<pid>/status) with no instance and with 20.
 *
 * Run (root, runc, busybox-static): `deno run -A bench/sm_bench.ts [--rounds N] [--counts 1,20]`.
 * Ratios are printed best-vs-best and median-vs-median; the medians are the figures to read.
 * @module
 */
import { busyboxLayer, serviceImage } from "../tests/fixtures/oci_image.ts";
import { ident, RUNC, smSkipReason, startSmUnit, waitFor } from "../tests/fixtures/sm_unit.ts";
import { instanceId } from "../sm/runtime/instance_id.ts";
import { arg, median, rssMb } from "./_support.ts";

const ROUNDS = Number(arg("rounds", "3"));
const COUNTS = arg("counts", "1,20").split(",").map(Number);
/** The SM's start pool (`START_CONCURRENCY`). */
const POOL = 4;

async function pool<T>(items: T[], n: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await f(items[next++]!);
  }));
}

async function runcRun(root: string, bundle: string, id: string): Promise<void> {
  // Detached, the container inherits runc's stdio: no pipe may be handed over (it would never
  // reach EOF), so errors go to runc's log file.
  const log = `${bundle}/bench-runc.log`;
  const out = await new Deno.Command(RUNC, {
    args: ["--log", log, "--root", root, "run", "-d", "--bundle", bundle, id],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  if (!out.success) throw new Error(`runc run ${id}: ${await Deno.readTextFile(log)}`);
}

/**
 * The SM's own part, from its log: `update_instances` received to the last instance reported
 * active (the issue's measure; the gRPC hops to and from the test CM are outside). Millisecond
 * timestamps.
 */
function insideMs(log: string): number {
  const at = (line: string) => Date.parse(line.slice(0, 24));
  const lines = log.split("\n");
  const start = lines.find((l) => l.includes("update_instances received"));
  const active = lines.filter((l) => l.includes("state=active")).at(-1);
  return start && active ? at(active) - at(start) : NaN;
}

const best = (xs: number[]) => Math.min(...xs);
// Medians: with a ~30 ms floor, one lucky runc round moves a best-vs-best ratio by 0.3.
const fmt = (ms: number) => `${ms.toFixed(0)} ms`;

async function main(): Promise<void> {
  const skip = await smSkipReason();
  if (skip) {
    console.log(`sm_bench: cannot run: ${skip}`);
    return;
  }
  await using u = await startSmUnit();
  const svc = await serviceImage(u.store, await busyboxLayer());
  await new Promise((r) => setTimeout(r, 2000));
  const idleEmpty = await rssMb(u.sm!.pid);
  // One instance keeps the item installed, so every round measures launches only.
  const warm = u.info("svc", 999, svc.manifestDigest);
  await u.update([warm]);
  await new Promise((r) => setTimeout(r, 2000));
  const idle0 = await rssMb(u.sm!.pid);

  const results: string[] = [];
  let idle20: number | undefined;
  for (const n of COUNTS) {
    const sm: number[] = [];
    const smInside: number[] = [];
    const runcPool: number[] = [];
    const runcSeq: number[] = [];
    const idx = Array.from({ length: n }, (_, i) => i);
    const ids = idx.map((i) => instanceId({ itemId: "svc", subjectId: "subj", instance: i }));
    // The SM is long-running in production: every round starts the N instances on the same,
    // warm SM and then stops them again through it.
    const infos = idx.map((i) => u.info("svc", i, svc.manifestDigest));
    const warmInfo = u.info("svc", 999, svc.manifestDigest);
    for (let r = 0; r < ROUNDS; r++) {
      const mark = u.sm!.log().length;
      const t0 = performance.now();
      const snap = await u.update([warmInfo, ...infos]);
      sm.push(performance.now() - t0);
      smInside.push(insideMs(u.sm!.log().slice(mark)));
      const active = snap.filter((s) => s.state === "active").length;
      if (active !== n + 1) throw new Error(`only ${active - 1} of ${n} instances active`);
      if (n === 20 && idle20 === undefined) {
        await new Promise((r) => setTimeout(r, 2000));
        idle20 = await rssMb(u.sm!.pid);
      }
      if (r < ROUNDS - 1) await u.update([warmInfo], idx.map((i) => ident("svc", i)));
    }

    // Keep the last round's bundles, drop the containers, and start them with runc alone.
    await u.sm!.kill();
    for (const id of ids) {
      await u.runc.kill(id, "KILL").catch(() => false);
      await u.runc.delete(id);
    }
    const bundle = (id: string) => `${u.paths.runtimeDir}/${id}`;
    for (let r = 0; r < ROUNDS; r++) {
      let t = performance.now();
      await pool(ids, POOL, (id) => runcRun(u.paths.runcRoot, bundle(id), id));
      runcPool.push(performance.now() - t);
      for (const id of ids) await u.runc.delete(id);
      t = performance.now();
      for (const id of ids) await runcRun(u.paths.runcRoot, bundle(id), id);
      runcSeq.push(performance.now() - t);
      for (const id of ids) await u.runc.delete(id);
    }

    // The restarted SM cleans the orphans up and restores the desired set; then stop them.
    const seen = u.snapshots.length;
    await u.startSm();
    await waitFor(
      "restore",
      () => u.snapshots.slice(seen).some((s) => s.every((x) => x.state === "active")),
      60_000,
    );
    await u.update([warmInfo], idx.map((i) => ident("svc", i)));
    const ratio = best(sm) / best(runcPool);
    results.push(
      `N=${n}: sm ${sm.map(fmt).join(", ")} (inside sm ${
        smInside.map(fmt).join(", ")
      }) | runc -d (pool ${POOL}) ${runcPool.map(fmt).join(", ")} | runc -d sequential ${
        runcSeq.map(fmt).join(", ")
      } | best ratio sm/runc(pool) ${ratio.toFixed(2)} (target <= 1.5), sm/runc(seq) ${
        (best(sm) / best(runcSeq)).toFixed(2)
      }, inside sm/runc(pool) ${(best(smInside) / best(runcPool)).toFixed(2)} | median ratio ${
        (median(sm) / median(runcPool)).toFixed(2)
      }, inside sm ${(median(smInside) / median(runcPool)).toFixed(2)}`,
    );
  }
  console.log(results.join("\n"));
  console.log(
    `sm idle RSS: ${idleEmpty.toFixed(1)} MB with no instance, ${idle0.toFixed(1)} MB with 1${
      idle20 !== undefined ? `, ${idle20.toFixed(1)} MB with 21` : ""
    } (target <= 70 MB)`,
  );
}

if (import.meta.main) await main();

/**
 * SM launch benchmark: a real `sm` under its permission manifest, driven by a test CM (see
 * `tests/fixtures/sm_unit.ts`), starts N instances of an installed busybox service. Measured:
 *
 * - **sm**: from sending `update_instances` to the node's `node_instances_status` with all N
 *   `active` (the SM answers with the snapshot once every start resolved);
 * - **inside sm**: from the SM's log, `update_instances` received to the last instance `active`
 *   (the issue's measure: "from update_instances received to all instances active");
 * - **runc**: `runc run -d` alone on copies of the bundles the SM prepared (its config.json with
 *   paths and IDs renamed, its mount-point skeleton, an overlay of the same layers), with the
 *   SM's start concurrency (4), and sequentially;
 * - idle RSS of the `sm` process (`VmRSS` of /proc/<pid>/status): with no instance 3 s after start
 *   and once V8 has settled (`--settle S`, default 40 s), with 1 and with 21 instances.
 *
 * The rounds are paired: each round runs the SM's start and the runc floor back to back (their
 * order alternating), so both see the same state of the machine; a VM whose speed drifts from
 * one second to the next then moves both. One unmeasured round of each goes first.
 *
 * Run (root, runc, busybox-static): `deno run -A bench/sm_bench.ts [--rounds N] [--counts 1,20]
 * [--settle S] [--bundles DIR | --source]`. By default `sm` runs from its bundle, built here as
 * `compile.ts` builds it (what the binaries embed); `--bundles DIR` takes the one `deno run -A
 * compile.ts --out DIR` wrote, `--source` runs `sm/main.ts`. The medians are the figures to read;
 * best-vs-best is printed too.
 * @module
 */
import { busyboxLayer, serviceImage } from "../tests/fixtures/oci_image.ts";
import { ident, RUNC, smSkipReason, type SmUnit, startSmUnit } from "../tests/fixtures/sm_unit.ts";
import { instanceId } from "../sm/runtime/instance_id.ts";
import { mountOverlay, unmount } from "../sm/runtime/rootfs.ts";
import { Runc } from "../sm/runtime/runc.ts";
import { arg, median, rssMb, shippedMain } from "./_support.ts";

const ROUNDS = Number(arg("rounds", "15"));
const COUNTS = arg("counts", "1,20").split(",").map(Number);
const SETTLE_S = Number(arg("settle", "40"));
/** The SM's start pool (`START_CONCURRENCY`). */
const POOL = 4;

async function pool<T>(items: T[], n: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await f(items[next++]!);
  }));
}

async function copyTree(from: string, to: string): Promise<void> {
  const out = await new Deno.Command("cp", { args: ["-a", from, to], stdout: "null" }).output();
  if (!out.success) throw new Error(`cp -a ${from} ${to}: ${new TextDecoder().decode(out.stderr)}`);
}

/** `lowerdir` of the overlay mounted at `target` (from /proc/self/mountinfo). */
async function overlayLowers(target: string): Promise<string[]> {
  for (const line of (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")) {
    const [mine, theirs] = line.split(" - ");
    if (mine?.split(" ")[4] !== target || !theirs?.startsWith("overlay ")) continue;
    const lower = theirs.split(" ")[2]?.split(",").find((o) => o.startsWith("lowerdir="));
    if (lower) return lower.slice("lowerdir=".length).split(":");
  }
  throw new Error(`no overlay mounted at ${target}`);
}

/**
 * The runc floor's own bundles: for each SM bundle, a copy of its config.json (bundle path and
 * instance ID renamed) and of its mount-point skeleton, and an overlay of the same layers. They
 * live beside the SM's, with their own runc root, so the floor can run while the SM does.
 */
class Floor implements AsyncDisposable {
  readonly root: string;
  readonly runc: Runc;
  readonly ids: string[] = [];

  constructor(readonly unit: SmUnit) {
    this.root = `${unit.paths.workingDir}/bench-floor`;
    this.runc = new Runc(unit.runner, RUNC, `${this.root}/runc`);
  }

  bundle(id: string): string {
    return `${this.root}/${id}`;
  }

  /** Copies the SM's bundle of instance `smId` (which must be running) as `floor-<n>`. */
  async copy(smId: string): Promise<void> {
    const id = `floor-${this.ids.length}`;
    const from = `${this.unit.paths.runtimeDir}/${smId}`;
    const to = this.bundle(id);
    await Deno.mkdir(`${to}/rootfs`, { recursive: true });
    await copyTree(`${from}/mounts`, `${to}/mounts`);
    const config = await Deno.readTextFile(`${from}/config.json`);
    await Deno.writeTextFile(`${to}/config.json`, config.replaceAll(from, to).replaceAll(smId, id));
    const lower = (await overlayLowers(`${from}/rootfs`)).map((l) => l.replace(from, to));
    await mountOverlay(this.unit.runner, { lower, target: `${to}/rootfs` });
    this.ids.push(id);
  }

  /** `runc run -d` of one floor container, as an operator would start it by hand. */
  async start(id: string): Promise<void> {
    // Detached, the container inherits runc's stdio: no pipe may be handed over (it would never
    // reach EOF), so errors go to runc's log file.
    const log = `${this.bundle(id)}/bench-runc.log`;
    const out = await new Deno.Command(RUNC, {
      args: ["--log", log, "--root", this.runc.root, "run", "-d", "--bundle", this.bundle(id), id],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    if (!out.success) throw new Error(`runc run ${id}: ${await Deno.readTextFile(log)}`);
  }

  async startAll(concurrency: number): Promise<number> {
    const t = performance.now();
    await pool(this.ids, concurrency, (id) => this.start(id));
    return performance.now() - t;
  }

  async deleteAll(): Promise<void> {
    for (const id of this.ids) await this.runc.delete(id);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const id of this.ids) {
      await this.runc.delete(id).catch(() => {});
      await unmount(this.unit.runner, `${this.bundle(id)}/rootfs`).catch(() => {});
    }
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
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
const fmt = (ms: number) => `${ms.toFixed(0)} ms`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const skip = await smSkipReason();
  if (skip) {
    console.log(`sm_bench: cannot run: ${skip}`);
    return;
  }
  const dist = await Deno.makeTempDir({ prefix: "sm-bench-" });
  try {
    await bench(await shippedMain("sm", dist));
  } finally {
    await Deno.remove(dist, { recursive: true });
  }
}

async function bench(smMain: string | undefined): Promise<void> {
  await using u = await startSmUnit({ smMain });
  await sleep(3000);
  const idleEarly = await rssMb(u.sm!.pid);
  await sleep(Math.max(0, SETTLE_S * 1000 - 3000));
  const idleEmpty = await rssMb(u.sm!.pid);
  const svc = await serviceImage(u.store, await busyboxLayer());
  // One instance keeps the item installed, so every round measures launches only.
  const warmInfo = u.info("svc", 999, svc.manifestDigest);
  await u.update([warmInfo]);
  await sleep(2000);
  const idle0 = await rssMb(u.sm!.pid);

  const results: string[] = [];
  let idle20: number | undefined;
  for (const n of COUNTS) {
    const idx = Array.from({ length: n }, (_, i) => i);
    const ids = idx.map((i) => instanceId({ itemId: "svc", subjectId: "subj", instance: i }));
    const infos = idx.map((i) => u.info("svc", i, svc.manifestDigest));
    const stopAll = idx.map((i) => ident("svc", i));
    // The SM is long-running in production: every round starts the N instances on the same,
    // warm SM and then stops them again through it.
    const smRound = async () => {
      const mark = u.sm!.log().length;
      const t0 = performance.now();
      const snap = await u.update([warmInfo, ...infos]);
      const total = performance.now() - t0;
      const active = snap.filter((s) => s.state === "active").length;
      if (active !== n + 1) throw new Error(`only ${active - 1} of ${n} instances active`);
      return { total, inside: insideMs(u.sm!.log().slice(mark)) };
    };

    await using floor = new Floor(u);
    await smRound(); // unmeasured: also gives the floor its bundles
    for (const id of ids) await floor.copy(id);
    if (n === 20) {
      await sleep(2000);
      idle20 = await rssMb(u.sm!.pid);
    }
    await u.update([warmInfo], stopAll);
    await floor.startAll(POOL); // unmeasured
    await floor.deleteAll();

    const sm: number[] = [];
    const smInside: number[] = [];
    const runcPool: number[] = [];
    const runcSeq: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const floorRound = async () => {
        runcPool.push(await floor.startAll(POOL));
        await floor.deleteAll();
        runcSeq.push(await floor.startAll(1));
        await floor.deleteAll();
      };
      if (r % 2) await floorRound();
      const { total, inside } = await smRound();
      sm.push(total);
      smInside.push(inside);
      await u.update([warmInfo], stopAll);
      if (r % 2 === 0) await floorRound();
    }
    const pairRatio = median(smInside.map((x, i) => x / runcPool[i]!));
    results.push(
      `N=${n}: sm ${sm.map(fmt).join(", ")} (inside sm ${
        smInside.map(fmt).join(", ")
      }) | runc -d (pool ${POOL}) ${runcPool.map(fmt).join(", ")} | runc -d sequential ${
        runcSeq.map(fmt).join(", ")
      }\n  median ratio sm/runc(pool) ${(median(sm) / median(runcPool)).toFixed(2)}, inside sm ${
        (median(smInside) / median(runcPool)).toFixed(2)
      } (target <= 1.5), median of the paired ratios inside sm ${pairRatio.toFixed(2)}` +
        ` | best ratio sm/runc(pool) ${(best(sm) / best(runcPool)).toFixed(2)}, inside sm ${
          (best(smInside) / best(runcPool)).toFixed(2)
        }, sm/runc(seq) ${(best(sm) / best(runcSeq)).toFixed(2)}`,
    );
  }
  console.log(`sm from ${smMain ? `the bundle ${smMain}` : "source (sm/main.ts)"}`);
  console.log(results.join("\n"));
  console.log(
    `sm idle RSS with no instance: ${idleEarly.toFixed(1)} MB 3 s after start, ${
      idleEmpty.toFixed(1)
    } MB settled (${SETTLE_S} s; target <= 70 MB); ${idle0.toFixed(1)} MB with 1 instance${
      idle20 !== undefined ? `, ${idle20.toFixed(1)} MB with 21` : ""
    } (2 s after the start)`,
  );
}

if (import.meta.main) await main();

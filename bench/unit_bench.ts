/**
 * Whole-unit benchmark: devcloud + iam + sm + cm on this machine, each under its manifest.
 * Measures deploy → all instances active for N instances (default 1 and 10, then 20), remove →
 * gone, the RSS of every process at rest, and the cloud message parse rate of CM's protocol
 * layer. Prints figures; asserts nothing.
 *
 * Usage (root): deno run -A bench/unit_bench.ts [--counts 1,10,20] [--bundles DIR] [--settle 40]
 * (`--bundles`: run the bundles that `deno run -A compile.ts --out DIR` writes)
 * @module
 */
import { join } from "node:path";
import { unitBundles } from "../compile.ts";
import {
  buildDesiredStatus,
  buildEnvelope,
  encodeEnvelope,
  parseCloudMessage,
} from "@aos/shared/cloudprotocol";
import { nullLogger } from "@aos/shared/logger";
import { startDevcloud } from "../devcloud/cloud.ts";
import {
  busyboxServiceManifest,
  startLocalUnit,
  writeBusyboxService,
  writeLocalUnit,
} from "../devcloud/local_unit.ts";
import { waitFor } from "../devcloud/process.ts";
import { arg, rssMb } from "./_support.ts";

function parseRate(): number {
  const body = buildDesiredStatus(
    {
      nodes: [],
      subjects: [],
      certificates: [],
      certificateChains: [],
      items: Array.from({ length: 8 }, (_, i) => ({
        item: { id: `svc-${i}`, type: "service" },
        version: "1.0.0",
        owner: { id: "owner" },
        indexDigest: `sha256:${"a".repeat(64)}`,
      })),
      instances: Array.from({ length: 8 }, (_, i) => ({
        item: { id: `svc-${i}` },
        subject: { id: "subject" },
        priority: 0,
        numInstances: 2,
        labels: [],
      })),
    },
  );
  const bytes = encodeEnvelope(
    buildEnvelope({ systemId: "bench", txn: crypto.randomUUID(), createdAt: new Date() }, body),
  );
  const n = 2000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) parseCloudMessage(bytes);
  return n / ((performance.now() - t0) / 1000);
}

const counts = arg("counts", "1,10,20").split(",").map(Number);
const root = await Deno.makeTempDir({ prefix: "aos-bench-" });
const cloud = await startDevcloud({
  workingDir: join(root, "devcloud"),
  cloudListen: "localhost:0",
  blobsListen: "localhost:0",
  logger: nullLogger,
});
const layout = await writeLocalUnit(join(root, "unit"), cloud);
// `--bundles DIR`: run the bundles `compile.ts --out DIR` wrote (what the binaries embed).
const bundles = arg("bundles", "");
const unit = await startLocalUnit(cloud, layout, bundles ? { mains: unitBundles(bundles) } : {});
console.log(
  bundles ? `components run from the bundles in ${bundles}` : "components run from source",
);
try {
  console.log(`desiredStatus parse + validate: ${Math.round(parseRate())} messages/s`);
  await new Promise((r) => setTimeout(r, 3000));
  for (const p of unit.processes) {
    console.log(`RSS at rest, ${p.name}: ${(await rssMb(p.pid)).toFixed(1)} MB`);
  }
  // Idle for a while, V8 shrinks the heap it grew during start-up (measured: 15–30 s after
  // start); `--settle 0` skips this.
  const settle = Number(arg("settle", "40"));
  if (settle > 0) {
    await new Promise((r) => setTimeout(r, settle * 1000));
    for (const p of unit.processes) {
      console.log(
        `RSS idle ${settle + 3} s after start, ${p.name}: ${(await rssMb(p.pid)).toFixed(1)} MB`,
      );
    }
  }
  for (const [i, n] of counts.entries()) {
    const name = `bench${i}`;
    const dir = join(root, "services", name);
    await writeBusyboxService(dir, "bench\n");
    const t0 = performance.now();
    await cloud.deploy(name, {
      instances: n,
      source: join(dir, "rootfs"),
      manifest: busyboxServiceManifest(name, "1.0.0"),
    });
    await waitFor(`${n} active`, () => {
      const p = cloud.status().services.find((s) => s.name === name)?.units[0];
      if (p?.failed) throw new Error(JSON.stringify(p));
      return p?.done;
    }, 300_000);
    const active = performance.now() - t0;
    for (const p of unit.processes) {
      console.log(`  RSS with ${n} instances, ${p.name}: ${(await rssMb(p.pid)).toFixed(1)} MB`);
    }
    const t1 = performance.now();
    await cloud.remove(name);
    await waitFor("removed", async () => (await unit.runc.list()).length === 0, 120_000);
    console.log(
      `deploy → ${n} active: ${Math.round(active)} ms; remove → gone: ${
        Math.round(performance.now() - t1)
      } ms`,
    );
  }
} finally {
  await unit.stop();
  await cloud.close();
  await Deno.remove(root, { recursive: true });
}

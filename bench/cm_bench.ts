/**
 * CM benchmark. Prints figures; asserts nothing.
 *
 * 1. **Parse + validate** in this process: `parseCloudMessage` with the cloud link's `accept`
 *    list and size bound (the call `CloudLink` makes on every WebSocket frame), per type.
 * 2. **sm alone**: a real `sm` under its manifest driven by the test CM of
 *    `tests/fixtures/sm_unit.ts` (the sm_bench path): `update_instances` with N new instances
 *    next to a warm one → the node's status with all of them `active`.
 * 3. **Whole unit** (`devcloud/local_unit.ts`: devcloud in this process, iam + sm + cm under
 *    their manifests, mTLS): the same N new instances next to a warm one, from devcloud sending
 *    the desired status to devcloud receiving a unit status with all of them `active` (cloud →
 *    cm → sm → runc → sm → cm → cloud), and the ratio to (2), measured in the same run.
 * 4. **Cloud messages end to end**: devcloud sends real v7 messages over the WebSocket to the
 *    running `cm`, which parses, validates, acks and handles each one (a `desiredStatus` goes
 *    to the update manager, which compares it with the image and launcher state in SQLite;
 *    other types are logged as not handled yet). Handled messages are counted from CM's log
 *    (one line per message) with at most `--window` unhandled at a time (below CM's inbound
 *    bound, so no message is left unacked); a burst is also timed until devcloud holds no
 *    unacked message.
 * 5. **Idle VmRSS** of the `cm` process (anonymous / file-backed), at rest after start and
 *    after the runs.
 *
 * Usage (root, runc, busybox-static): `deno run -A bench/cm_bench.ts [--instances 20]
 * [--rounds 3] [--messages 1000] [--window 64] [--cm-v8-flags --max-old-space-size=40]
 * [--bundles DIR]` (`--bundles`: the unit runs the bundles `compile.ts --out DIR` wrote)
 * @module
 */
import { join } from "node:path";
import { unitBundles } from "../compile.ts";
import {
  buildBlobUrls,
  buildDesiredStatus,
  buildEnvelope,
  buildOverrideEnvVars,
  buildRenewCertificatesNotification,
  buildRequestLog,
  buildStateAcceptance,
  buildUpdateState,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeEnvelope,
  parseCloudMessage,
  type WireData,
} from "@aos/shared/cloudprotocol";
import { nullLogger } from "@aos/shared/logger";
import { CLOUD_TO_UNIT_TYPES } from "../cm/cloud/link.ts";
import { type Devcloud, startDevcloud } from "../devcloud/cloud.ts";
import {
  busyboxServiceManifest,
  type LocalUnit,
  type LocalUnitLayout,
  startLocalUnit,
  writeBusyboxService,
  writeLocalUnit,
} from "../devcloud/local_unit.ts";
import { type ComponentProcess, startComponent, waitFor } from "../devcloud/process.ts";
import { commandFor } from "../permissions/launch.ts";
import { arg, median, showRss, vmRss } from "./_support.ts";
import { busyboxLayer, serviceImage } from "../tests/fixtures/oci_image.ts";
import { ident, smSkipReason, startSmUnit } from "../tests/fixtures/sm_unit.ts";

const N = Number(arg("instances", "20"));
const ROUNDS = Number(arg("rounds", "3"));
const MESSAGES = Number(arg("messages", "1000"));
/** V8 flags for the `cm` process (e.g. `--max-old-space-size=40`), to see their effect on RSS. */
const CM_V8_FLAGS = arg("cm-v8-flags", "");
const WINDOW = Number(arg("window", "64"));
/** `--bundles DIR`: the unit runs the bundles `compile.ts --out DIR` wrote (what binaries embed). */
const BUNDLES = arg("bundles", "");
const MAINS = BUNDLES ? unitBundles(BUNDLES) : undefined;
const BURST = 200;

const best = (xs: number[]) => Math.min(...xs);
const ms = (x: number) => `${x.toFixed(0)} ms`;
const loadavg = async () => (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3);

/** VmRSS and its anonymous / file-backed parts. */
const rss = async (pid: number) => showRss(await vmRss(pid));

/** CPU time (user + system) a process used so far, ms (clock ticks of 10 ms). */
async function cpuMs(pid: number | "self"): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** The SM's own part from its log: plan executed → last instance active (ms). */
function smInsideMs(log: string): number {
  const at = (line: string) => Date.parse(line.slice(0, 24));
  const lines = log.split("\n");
  const start = lines.find((l) => l.includes("executing instance plan"));
  const active = lines.filter((l) => l.includes("state=active")).at(-1);
  return start && active ? at(active) - at(start) : NaN;
}

// ---------------------------------------------------------------------------------------------
// messages

const ITEM = { id: "6513270e-269e-4d37-b2a7-4de452e6b438" };
const SUBJECT = { id: "36f675cc-81e7-4ef5-a8e2-5d940ed90475" };
const DIGEST = `sha256:${"5".repeat(64)}`;

/** Cloud → unit message bodies CM accepts (no provisioning requests: those change the unit). */
function messageBodies(desired: WireData): Record<string, () => WireData> {
  const now = new Date();
  return {
    desiredStatus: () => desired,
    requestLog: () =>
      buildRequestLog({
        correlationId: crypto.randomUUID(),
        logType: "systemLog",
        filter: { from: new Date(now.getTime() - 3600_000), till: now, nodeIds: [] },
        uploadOptions: {
          type: "https",
          url: "https://logs.example/upload",
          bearerToken: "token",
        },
      }),
    renewCertificatesNotification: () =>
      buildRenewCertificatesNotification({
        certificates: [{ type: "online", node: { codename: "main" }, serial: "4f1a" }],
        unitSecrets: { version: "7", nodes: [{ node: { codename: "main" }, secret: "s" }] },
      }),
    overrideEnvVars: () =>
      buildOverrideEnvVars({
        correlationId: crypto.randomUUID(),
        items: [{ item: ITEM, variables: [{ name: "LOG_LEVEL", value: "debug" }] }],
      }),
    stateAcceptance: () =>
      buildStateAcceptance({
        item: ITEM,
        subject: SUBJECT,
        instance: 0,
        checksum: "9661d47169c2d8014928d7c850283d9e74790f614155a853595b36fa",
        result: "accepted",
        reason: "",
      }),
    updateState: () =>
      buildUpdateState({
        item: ITEM,
        subject: SUBJECT,
        instance: 0,
        stateChecksum: "9661d47169c2d8014928d7c850283d9e74790f614155a853595b36fa",
        state: "c3RhdGU=",
      }),
    blobUrls: () =>
      buildBlobUrls({
        correlationId: crypto.randomUUID(),
        items: [{
          digest: DIGEST,
          urls: ["http://localhost:1/blobs/sha256/5555"],
          sha256: "a49367e1e25d4f8af3bf2c5ac59ceab97319dacc731e26a4ef2e1a07346dc48c",
          size: 1024,
          decryptInfo: {
            blockAlg: "AES256/CBC/PKCS7PADDING",
            blockIv: "MDEyMzQ1Njc4OWFiY2RlZg==",
            blockKey: "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
          },
          signInfo: {
            chainName: "chain",
            alg: "RSA/SHA256",
            value: "c2lnbmF0dXJl",
            trustedTimestamp: now,
            ocspValues: [],
          },
        }],
      }),
  };
}

/** Part 1: the link's parse + validate call on encoded envelopes, per type. */
function parseRates(bodies: Record<string, () => WireData>): string[] {
  const out: string[] = [];
  for (const [type, make] of Object.entries(bodies)) {
    const bytes = encodeEnvelope(
      buildEnvelope({ systemId: "bench", txn: crypto.randomUUID(), createdAt: new Date() }, make()),
    );
    const opts = { maxBytes: DEFAULT_MAX_MESSAGE_BYTES, accept: CLOUD_TO_UNIT_TYPES };
    for (let i = 0; i < 200; i++) parseCloudMessage(bytes, opts);
    const n = 3000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) parseCloudMessage(bytes, opts);
    const rate = n / ((performance.now() - t0) / 1000);
    out.push(
      `  ${type.padEnd(30)} ${String(Math.round(rate)).padStart(7)} msgs/s (${bytes.length} B)`,
    );
  }
  return out;
}

/** Counts lines of CM's log written from now on that `match` accepts, incrementally. */
function logCounter(cm: ComponentProcess, match: (line: string) => boolean): () => number {
  let scanned = cm.log().length;
  let count = 0;
  return () => {
    const text = cm.log();
    const end = text.lastIndexOf("\n") + 1;
    if (end > scanned) {
      for (const line of text.slice(scanned, end).split("\n")) if (match(line)) count++;
      scanned = end;
    }
    return count;
  };
}

const us = (msPerMessage: number) => `${(msPerMessage * 1000).toFixed(0)} µs`;
const tick = () => new Promise((r) => setTimeout(r, 1));

// ---------------------------------------------------------------------------------------------

async function smAlone(): Promise<{ best: number; all: number[]; inside: number[] }> {
  await using u = await startSmUnit();
  const svc = await serviceImage(u.store, await busyboxLayer());
  const warm = u.info("svc", 999, svc.manifestDigest);
  await u.update([warm]);
  const idx = Array.from({ length: N }, (_, i) => i);
  const infos = idx.map((i) => u.info("svc", i, svc.manifestDigest));
  const all: number[] = [];
  const inside: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const mark = u.sm!.log().length;
    const t0 = performance.now();
    const snap = await u.update([warm, ...infos]);
    all.push(performance.now() - t0);
    inside.push(smInsideMs(u.sm!.log().slice(mark)));
    const active = snap.filter((s) => s.state === "active").length;
    if (active !== N + 1) throw new Error(`sm alone: only ${active - 1} of ${N} active`);
    await u.update([warm], idx.map((i) => ident("svc", i)));
  }
  return { best: best(all), all, inside };
}

async function main(): Promise<void> {
  const skip = await smSkipReason();
  if (skip) {
    console.log(`cm_bench: cannot run: ${skip}`);
    return;
  }
  console.log(`load average at start: ${(await loadavg()).join(" ")}`);

  // 2. sm alone.
  const sm = await smAlone();
  console.log(
    `sm alone, update_instances → ${N} active (+1 warm): ${sm.all.map(ms).join(", ")} (inside sm ${
      sm.inside.map(ms).join(", ")
    }); load ${(await loadavg()).join(" ")}`,
  );

  // 3–5. The whole unit.
  const root = await Deno.makeTempDir({ prefix: "aos-cm-bench-" });
  const cloud = await startDevcloud({
    workingDir: join(root, "devcloud"),
    cloudListen: "localhost:0",
    blobsListen: "localhost:0",
    logger: nullLogger,
  });
  let unit: LocalUnit | undefined;
  try {
    // Ports are picked free and bound later: a concurrent job may take one in between.
    let layout: LocalUnitLayout | undefined;
    for (let attempt = 1; !unit; attempt++) {
      layout = await writeLocalUnit(join(root, `unit${attempt}`), cloud);
      try {
        unit = await startLocalUnit(cloud, layout, MAINS ? { mains: MAINS } : {});
        if (MAINS) console.log(`the unit runs the bundles in ${BUNDLES}`);
      } catch (err) {
        if (attempt >= 3 || !/EADDRINUSE/.test(String(err))) throw err;
      }
    }
    await measureUnit({ cloud, layout: layout!, unit, root, sm });
  } finally {
    await unit?.stop();
    await cloud.close();
    await Deno.remove(root, { recursive: true });
  }
}

/** Parts 1, 3, 4 and 5 on a running unit. */
async function measureUnit(
  { cloud, layout, unit, root, sm }: {
    cloud: Devcloud;
    layout: LocalUnitLayout;
    unit: LocalUnit;
    root: string;
    sm: { best: number; all: number[] };
  },
): Promise<void> {
  let cm = unit.processes.find((p) => p.name === "cm")!;
  if (CM_V8_FLAGS) {
    await cm.stop(15_000);
    const args = (await commandFor("cm", ["-c", layout.cmConfig], { main: MAINS?.cm })).args;
    args.splice(1, 0, `--v8-flags=${CM_V8_FLAGS}`);
    let full = 0;
    const off = cloud.subscribe((e) => {
      if (
        e.type === "message" && e.message.messageType === "unitStatus" && !e.message.isDeltaInfo
      ) {
        full++;
      }
    });
    const restarted = await startComponent("cm", args);
    unit.processes.splice(unit.processes.indexOf(cm), 1, restarted);
    cm = restarted;
    await waitFor("cm back with a full status", () => full > 0, 60_000).finally(off);
    console.log(`cm runs with --v8-flags=${CM_V8_FLAGS}`);
  }
  const smProc = unit.processes.find((p) => p.name === "sm")!;
  await new Promise((r) => setTimeout(r, 3000));
  const idleRss = await rss(cm.pid);
  console.log(`cm VmRSS at rest after start: ${idleRss}`);

  // A warm service with one instance: the item is installed, each round launches only.
  const name = "bench";
  const dir = join(root, "services", name);
  await writeBusyboxService(dir, "bench\n");
  const deploy = (instances: number) =>
    cloud.deploy(name, {
      instances,
      source: join(dir, "rootfs"),
      manifest: busyboxServiceManifest(name, "1.0.0"),
    });
  const record = await deploy(1);
  const progress = () => cloud.status().services.find((s) => s.name === name)?.units[0];
  const activeNow = () =>
    cloud.units().find((x) => x.systemId === layout.systemId)?.status.instances.filter((i) =>
      i.item.id === record.id && i.state === "active"
    ).length ?? 0;
  await waitFor("warm instance", () => progress()?.done, 120_000);

  const unitAll: number[] = [];
  const unitSm: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let sentAt: number | undefined;
    let activeAt: number | undefined;
    const off = cloud.subscribe((e) => {
      if (e.type === "sent" && e.messageType === "desiredStatus") sentAt ??= performance.now();
      if (
        e.type === "message" && e.message.messageType === "unitStatus" && sentAt !== undefined &&
        activeAt === undefined && activeNow() === N + 1
      ) activeAt = performance.now();
    });
    const smMark = smProc.log().length;
    await deploy(N + 1);
    await waitFor(`${N + 1} active`, () => activeAt !== undefined, 120_000);
    off();
    unitAll.push(activeAt! - sentAt!);
    unitSm.push(smInsideMs(smProc.log().slice(smMark)));
    await deploy(1);
    await waitFor(
      "back to 1",
      async () => progress()?.done && activeNow() === 1 && (await unit.runc.list()).length === 1,
      120_000,
    );
  }
  console.log(
    `whole unit, desired status sent → unit status with ${N} active (+1 warm): ${
      unitAll.map(ms).join(", ")
    } (inside sm ${unitSm.map(ms).join(", ")}, so cloud + cm ${
      unitAll.map((t, i) => ms(t - unitSm[i]!)).join(", ")
    }); load ${(await loadavg()).join(" ")}`,
  );
  console.log(
    `ratio whole unit / sm alone (best of ${ROUNDS}): ${(best(unitAll) / sm.best).toFixed(2)} ` +
      `(medians ${(median(unitAll) / median(sm.all)).toFixed(2)})`,
  );

  // 1 and 4: messages.
  const bodies = messageBodies(buildDesiredStatus(cloud.desiredStatus()));
  console.log("parse + validate in this process (the link's call per frame):");
  console.log(parseRates(bodies).join("\n"));
  const marker = (type: string) =>
    type === "desiredStatus"
      ? /no update is required|desired status is being processed already/
      : new RegExp(`cloud message not handled yet .*messageType=${type}\\b`);
  const handledOf = (types: string[]) => {
    const res = types.map(marker);
    return (line: string) => res.some((re) => re.test(line));
  };
  const send = (type: string) => cloud.send(bodies[type]!(), layout.systemId);
  const run = async (types: string[], messages = MESSAGES) => {
    const counted = logCounter(cm, handledOf(types));
    let sent = 0;
    const cpu0 = { cm: await cpuMs(cm.pid), here: await cpuMs("self") };
    const t0 = performance.now();
    while (counted() < messages) {
      while (sent < messages && sent - counted() < WINDOW) send(types[sent++ % types.length]!);
      await tick();
      if (performance.now() - t0 > 300_000) throw new Error(`stuck at ${counted()} handled`);
    }
    const handledRate = messages / ((performance.now() - t0) / 1000);
    const cmCpu = (await cpuMs(cm.pid) - cpu0.cm) / messages;
    const hereCpu = (await cpuMs("self") - cpu0.here) / messages;
    await waitFor("all acked", () => cloud.unacked(layout.systemId) === 0, 60_000);
    // A burst below CM's inbound bound, timed until every message is acked.
    const counted2 = logCounter(cm, handledOf(types));
    const t1 = performance.now();
    for (let i = 0; i < BURST; i++) send(types[i % types.length]!);
    while (cloud.unacked(layout.systemId) > 0) await tick();
    const ackRate = BURST / ((performance.now() - t1) / 1000);
    await waitFor("burst handled", () => counted2() >= BURST, 60_000);
    return (label: string) =>
      `  ${label.padEnd(30)} ${String(Math.round(handledRate)).padStart(6)} handled/s, ${
        String(Math.round(ackRate)).padStart(6)
      } acked/s; CPU per message: cm ${us(cmCpu)}, devcloud + bench ${us(hereCpu)}`;
  };
  console.log(
    `end to end (devcloud → WSS → cm: parse, validate, ack, handle), ${MESSAGES} messages, ` +
      `window ${WINDOW}; acked: a burst of ${BURST}:`,
  );
  const types = Object.keys(bodies);
  await run(types, 500); // warm-up (JIT), not reported
  for (const type of types) console.log((await run([type]))(type));
  console.log((await run(types))("all types, round robin"));
  console.log(`  load ${(await loadavg()).join(" ")}`);
  if (progress()?.done !== true) console.log("  (warning: the service is no longer done)");

  await new Promise((r) => setTimeout(r, 3000));
  console.log(`cm VmRSS after the runs (1 instance): ${await rss(cm.pid)} (target <= 80 MB)`);
  console.log(`load average at end: ${(await loadavg()).join(" ")}`);
}

if (import.meta.main) await main();

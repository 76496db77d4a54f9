/**
 * A real `sm` under its permission manifest, driven by a test CM (CM's SM controller on grpc-js,
 * insecure) with real runc containers from an OCI image built here over a static busybox:
 * instances start, run, stop and crash-loop; quotas land in the cgroups; bad input gets a clear
 * `ErrorInfo` and leaves earlier state and everything outside the SM's dirs alone; the grant
 * denies IAM's keys and foreign programs.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { InstanceStatus } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { fromErrorInfo } from "@aos/shared/errors";
import { createIamClient } from "@aos/shared/iamclient";
import { cpuQuota } from "../sm/runtime/bundle.ts";
import { cgroupFiles, detectCgroupLayout } from "../sm/runtime/cgroups.ts";
import { instanceId } from "../sm/runtime/instance_id.ts";
import { busyboxLayer, layer, serviceImage } from "./fixtures/oci_image.ts";
import {
  ident,
  key,
  mountsBelow,
  smSkipReason,
  type SmUnit,
  startSmUnit,
  waitFor,
  walk,
} from "./fixtures/sm_unit.ts";

const skip = await smSkipReason();
if (skip) console.warn(`sm_instances_test: SKIPPED: ${skip}`);

const probe = fileURLToPath(new URL("./fixtures/probe.ts", import.meta.url));

function idOf(itemId: string, instance: number): string {
  return instanceId({ itemId, subjectId: "subj", instance });
}

function show(v: unknown): string {
  return JSON.stringify(v, (_k, x) => typeof x === "bigint" ? Number(x) : x);
}

function find(list: InstanceStatus[], itemId: string, instance: number) {
  return list.find((s) => key(s.instance) === `${itemId}/subj/${instance}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function runProbe(flags: string[], action: string, target: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, probe, action, target],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** The container's init process command line, or undefined when it is not running. */
async function initCmdline(u: SmUnit, id: string): Promise<string | undefined> {
  const st = await u.runc.state(id);
  if (st?.status !== "running" || !st.pid) return undefined;
  const raw = await Deno.readTextFile(`/proc/${st.pid}/cmdline`).catch(() => "");
  return raw.split("\0").join(" ").trim();
}

async function readNum(path: string): Promise<number> {
  return Number((await Deno.readTextFile(path)).trim());
}

/** Files and dirs under `root`, minus the given subtrees (what a component may change). */
async function treeOutside(root: string, skipDirs: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const p of walk(root, (d) => skipDirs.includes(d))) out.push(p);
  return out.sort();
}

Deno.test({
  name: "sm: instances from update_instances, limits, bad input, grants",
  ignore: skip !== undefined,
  fn: async (t) => {
    await using u = await startSmUnit();
    const base = await busyboxLayer();
    const svc = await serviceImage(u.store, base);

    await t.step("3 instances start, run and report active; a stop removes one", async () => {
      const infos = [0, 1, 2].map((i) => u.info("svc", i, svc.manifestDigest));
      const snap = await u.update(infos);
      for (const i of [0, 1, 2]) {
        const s = find(snap, "svc", i);
        assert.equal(s?.state, "active", show(s));
        assert.equal(fromErrorInfo(s?.error), undefined);
        assert.equal(s?.runtimeId, u.runtimeId());
        assert.equal(s?.manifestDigest, svc.manifestDigest);
        const cmd = await initCmdline(u, idOf("svc", i));
        assert.match(cmd ?? "", /^\/bin\/sh -c trap/, `instance ${i} runs`);
      }
      const ids = (await u.runc.list()).map((c) => c.id).sort();
      assert.deepEqual(ids, [0, 1, 2].map((i) => idOf("svc", i)).sort());

      const stopped = idOf("svc", 1);
      const after = await u.update([], [ident("svc", 1)]);
      // Upstream drops a stopped instance from the launcher and the DB: the snapshot no longer
      // lists it.
      assert.equal(find(after, "svc", 1), undefined);
      assert.equal(find(after, "svc", 0)?.state, "active");
      assert.equal(find(after, "svc", 2)?.state, "active");
      assert.equal(await u.runc.state(stopped), undefined);
      assert.equal(await exists(`${u.paths.runtimeDir}/${stopped}`), false, "bundle removed");
      assert.deepEqual(await mountsBelow(`${u.paths.runtimeDir}/${stopped}`), []);
    });

    await t.step("a process exiting 1 is restarted, then failed at the limit", async () => {
      const crash = await serviceImage(u.store, base, {
        cmd: ["/bin/sh", "-c", "echo crashing; exit 1"],
        itemConfig: {
          runParameters: { startInterval: "30s", startBurst: 3, restartInterval: "200ms" },
        },
      });
      const id = idOf("crash", 0);
      await u.update([u.info("crash", 0, crash.manifestDigest)]);
      const failed = await waitFor(
        "crash failed",
        () => u.deltas.find((s) => s.instance?.itemId === "crash" && s.state === "failed"),
      );
      const restarts = u.deltas.filter((s) =>
        s.instance?.itemId === "crash" && s.state === "activating" &&
        /exited with code 1; restarting/.test(s.error?.message ?? "")
      );
      assert.equal(
        restarts.length,
        2,
        show(u.deltas.filter((s) => s.instance?.itemId === "crash")),
      );
      const err = fromErrorInfo(failed.error);
      assert.equal(err?.exitCode, 1);
      assert.match(err?.message ?? "", /exited with code 1; not restarted: 3 starts within/);
      assert.equal(await u.runc.state(id), undefined);
      assert.equal(await exists(`${u.paths.runtimeDir}/${id}`), false, "bundle removed");
      const log = await Deno.readTextFile(`${u.paths.runtimeDir}/${id}.log`);
      assert.equal(log.match(/crashing/g)?.length, 3, log);
      // The snapshot keeps reporting it failed, with the reason.
      const snap = await u.update([]);
      assert.equal(find(snap, "crash", 0)?.state, "failed");
      assert.match(find(snap, "crash", 0)?.error?.message ?? "", /not restarted/);
    });

    await t.step("memory, pids and CPU quotas are in the instance's cgroup", async () => {
      const limits = await serviceImage(u.store, base, {
        // An idle child to wait on, then a fork loop far past the limit in a subshell (a
        // failed fork ends a busybox shell); SIGTERM ends the wait at once.
        cmd: [
          "/bin/sh",
          "-c",
          'trap "exit 0" TERM; sleep 100000 & (for i in $(seq 1 40); do sleep 1000 & done); ' +
          "echo spawned; wait",
        ],
        itemConfig: { quotas: { ramLimit: 64 * 1024 * 1024, pidsLimit: 12, cpuDMIPSLimit: 2500 } },
      });
      // Its own uid: RLIMIT_NPROC (= pidsLimit, as upstream) counts every process of the uid.
      const snap = await u.update([u.info("limits", 0, limits.manifestDigest, { uid: 6000 })]);
      const id = idOf("limits", 0);
      assert.equal(
        find(snap, "limits", 0)?.state,
        "active",
        await Deno.readTextFile(`${u.paths.runtimeDir}/${id}.log`).catch(() => ""),
      );
      const files = cgroupFiles(await detectCgroupLayout(), `/aos/${id}`);
      assert.equal(await readNum(files.memoryLimit), 64 * 1024 * 1024);
      assert.equal((await Deno.readTextFile(files.pidsMax)).trim(), "12");
      const log = `${u.paths.runtimeDir}/${id}.log`;
      await waitFor("fork loop done", async () => /spawned/.test(await Deno.readTextFile(log)));
      assert.match(await Deno.readTextFile(log), /can't fork/);
      // The loop got exactly to the limit: 12 tasks = sh, its idle sleep, the subshell (gone
      // now) and 9 loop children.
      const pids = (await Deno.readTextFile(files.procs)).split("\n").filter((l) => l);
      const cmds = await Promise.all(
        pids.map((p) => Deno.readTextFile(`/proc/${p}/cmdline`).catch(() => "")),
      );
      assert.equal(cmds.filter((c) => c === "sleep\u00001000\u0000").length, 9, show(cmds));
      assert.equal(await readNum(files.pidsCurrent), 11);

      await using iam = await createIamClient({
        publicUrl: `127.0.0.1:${u.unit.ports.iamPublic}`,
        caCert: u.unit.ca.cert,
        certStorage: "sm",
        insecure: true,
      });
      const node = await iam.getCurrentNodeInfo();
      const cores = node.cpus.reduce((n, c) => n + Number(c.numCores), 0) || 1;
      const maxDmips = Number(node.maxDmips);
      const expected = Math.max(1000, Math.floor(2500 * 100_000 * cores / maxDmips));
      assert.equal(cpuQuota(2500, { maxDmips, totalCores: cores }), expected);
      if (files.layout === "v1") {
        assert.equal(await readNum(files.cpuQuota), expected);
        assert.equal(await readNum(files.cpuPeriod), 100_000);
      } else {
        assert.equal((await Deno.readTextFile(files.cpuQuota)).trim(), `${expected} 100000`);
      }
    });

    await t.step(
      "bad input: clear errors, earlier state kept, nothing written outside",
      async () => {
        // Lands inside the SM's own (writable) dirs if extraction followed it: only the
        // extractor's confinement, not the sandbox, can stop it.
        const evil = await layer([
          { path: "bin/", type: "dir" },
          { path: "../../../escaped", data: "x" },
        ]);
        const traversal = await serviceImage(u.store, base, { layers: [evil] });
        const genuine = await layer([{ path: "etc/tag", data: "tampered" }]);
        const tampered = await serviceImage(u.store, base, { layers: [genuine] });
        // The CM's file for the layer holds other bytes (same size) than its digest names.
        const forged = genuine.blob.slice();
        forged[forged.length - 1]! ^= 0xff;
        await u.store.put(forged, genuine.digest);

        const keep = [u.paths.workingDir, u.unit.dirs.iam, u.unit.dirs.certs];
        const before = await treeOutside(u.unit.root, keep);
        const snap = await u.update([
          u.info("traversal", 0, traversal.manifestDigest),
          u.info("tampered", 0, tampered.manifestDigest),
        ]);
        const tr = find(snap, "traversal", 0);
        assert.equal(tr?.state, "failed");
        assert.match(tr?.error?.message ?? "", /escapes/);
        assert.equal(fromErrorInfo(tr?.error)?.code, "invalidArgument");
        const tm = find(snap, "tampered", 0);
        assert.equal(tm?.state, "failed");
        assert.match(tm?.error?.message ?? "", /Downloaded sha256:[0-9a-f]+… has SHA-256 /);
        assert.equal(fromErrorInfo(tm?.error)?.code, "invalidChecksum");
        // (Bundles are skipped: their rootfs mounts show host dirs.)
        for await (const p of walk(u.unit.root, (d) => d === u.paths.runtimeDir)) {
          assert.ok(!p.endsWith("/escaped"), `${p} was written`);
        }

        const unknown = await u.update([], [ident("ghost", 7)]);
        const ghost = u.deltas.find((s) => s.instance?.itemId === "ghost");
        assert.equal(ghost?.state, "inactive");
        assert.equal(fromErrorInfo(ghost?.error)?.code, "notFound");
        assert.match(ghost?.error?.message ?? "", /Cannot stop instance ghost:subj:7/);
        assert.equal(find(unknown, "ghost", 7), undefined);

        const cfg = (version: string) =>
          JSON.stringify({ version, nodeGroupSubject: { codename: "main" }, priority: 1 });
        await u.controller.setNodeConfig(u.nodeId, cfg("2.0.0"), "2.0.0");
        const stored = await Deno.readTextFile(`${u.paths.workingDir}/aos_node.cfg`);
        await assert.rejects(
          () => u.controller.checkNodeConfig(u.nodeId, "{not json", "3.0.0"),
          (e: Error & { code?: string }) =>
            e.code === "invalidArgument" && /Node config is not JSON/.test(e.message),
        );
        await assert.rejects(
          () => u.controller.setNodeConfig(u.nodeId, JSON.stringify({ priority: "high" }), "3.0.0"),
          /Node config key "(nodeGroupSubject|priority)"/,
        );
        await assert.rejects(
          () => u.controller.setNodeConfig(u.nodeId, cfg("1.0.0"), "1.0.0"),
          (e: Error & { code?: string }) =>
            e.code === "wrongState" && /wrong version: 1\.0\.0 is older than the installed 2\.0\.0/
              .test(e.message),
        );
        await assert.rejects(
          () => u.controller.checkNodeConfig(u.nodeId, cfg("2.0.0"), "2.0.0"),
          /already installed/,
        );
        const status = await u.controller.getNodeConfigStatus(u.nodeId);
        assert.equal(status.state, "installed");
        assert.equal(status.version, "2.0.0");
        assert.equal(await Deno.readTextFile(`${u.paths.workingDir}/aos_node.cfg`), stored);

        // Earlier instances run on, untouched.
        for (const [item, i] of [["svc", 0], ["svc", 2], ["limits", 0]] as const) {
          assert.equal(find(unknown, item, i)?.state, "active", `${item} ${i}`);
          assert.ok(await initCmdline(u, idOf(item, i)), `${item} ${i} still runs`);
        }
        assert.deepEqual(await treeOutside(u.unit.root, keep), before);
      },
    );

    await t.step("the grant denies IAM's keys and every program but its own", async () => {
      for (const id of ["iam", "cm", "online"]) {
        await Deno.mkdir(`${u.unit.dirs.certs}/${id}`, { recursive: true });
        assert.equal(await runProbe(u.smFlags, "read", `${u.unit.dirs.certs}/${id}`), "NotCapable");
      }
      assert.equal(await runProbe(u.smFlags, "read", u.unit.dirs.iam), "NotCapable");
      for (const p of ["/bin/busybox", "/bin/sh", "sh", "ip", "nft", "/usr/bin/env", "tar"]) {
        assert.equal(await runProbe(u.smFlags, "run", p), "NotCapable", p);
      }
      assert.equal(await runProbe(u.smFlags, "run", "/usr/sbin/runc"), "ok");
      assert.equal(await runProbe(u.smFlags, "read", "/proc/self/status"), "NotCapable");
    });

    await t.step("a clean stop leaves no container and no mount", async () => {
      const st = await u.sm!.stop();
      assert.equal(st.code, 0, u.sm!.log().slice(-3000));
      assert.deepEqual(await u.runc.list(), []);
      assert.deepEqual(await mountsBelow(u.paths.runtimeDir), []);
    });
  },
});

/**
 * Real runc, real overlay mounts, real cgroups. Needs root, runc and a static busybox
 * (`apt-get install busybox-static`); skipped with a printed reason otherwise.
 */
import assert from "node:assert/strict";
import { type Logger, memoryLogger } from "@aos/shared/core";
import { DenoCommandRunner } from "@aos/shared/exec";
import { readCgroupValues } from "./cgroups.ts";
import {
  type ExitEvent,
  type InstanceDesc,
  type InstanceStatus,
  RuncRuntime,
  type RuncRuntimeConfig,
  type RuncRuntimeOptions,
} from "./container_runtime.ts";
import { instanceId } from "./instance_id.ts";
import { mountsUnder } from "./rootfs.ts";
import { Runc } from "./runc.ts";
import { DenoProcessSpawner } from "./spawn.ts";

const RUNC = "/usr/sbin/runc";
const BUSYBOX = "/bin/busybox";

async function skipReason(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root";
  for (const f of [RUNC, BUSYBOX]) {
    try {
      await Deno.stat(f);
    } catch {
      return `${f} is missing (apt-get install runc busybox-static)`;
    }
  }
  return undefined;
}
const skip = await skipReason();
if (skip) console.warn(`container_runtime_test: SKIPPED: ${skip}`);

const APPLETS = ["sh", "sleep", "seq", "cat", "echo", "id", "ls", "true", "env", "httpd"];

interface Env {
  dir: string;
  layer: string;
  config: RuncRuntimeConfig;
  runner: DenoCommandRunner;
  runc: Runc;
  runtimes: RuncRuntime[];
  make(opts?: Partial<RuncRuntimeOptions>): Promise<RuncRuntime>;
}

/** A temp dir with a busybox layer, and a runtime factory; everything is removed afterwards. */
async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aos-rt-" });
  const layer = `${dir}/layer`;
  await Deno.mkdir(`${layer}/bin`, { recursive: true });
  await Deno.copyFile(BUSYBOX, `${layer}/bin/busybox`);
  await Deno.chmod(`${layer}/bin/busybox`, 0o755);
  for (const a of APPLETS) await Deno.symlink("busybox", `${layer}/bin/${a}`);
  const config: RuncRuntimeConfig = {
    runtimeDir: `${dir}/run`,
    crunStateRoot: `${dir}/runc`,
    crunExecutable: RUNC,
    hostWhiteoutsDir: `${dir}/whiteouts`,
    hostBinds: [],
    stateDir: `${dir}/states`,
    storageDir: `${dir}/storages`,
  };
  const runner = new DenoCommandRunner({ allow: [RUNC, "mount", "umount", "mknod"] });
  const runc = new Runc(runner, RUNC, config.crunStateRoot);
  const runtimes: RuncRuntime[] = [];
  const env: Env = {
    dir,
    layer,
    config,
    runner,
    runc,
    runtimes,
    async make(opts = {}) {
      const rt = await RuncRuntime.create({
        config,
        runner,
        spawner: new DenoProcessSpawner({ allow: [RUNC] }),
        logger: memoryLogger() as Logger,
        node: { maxDmips: 10000, totalCores: 2 },
        // `sleep` as PID 1 ignores SIGTERM: keep the grace short so disposal is quick.
        stopGraceMs: 300,
        ...opts,
      });
      runtimes.push(rt);
      return rt;
    },
  };
  try {
    await fn(env);
  } finally {
    for (const rt of runtimes) await rt[Symbol.asyncDispose]().catch(() => {});
    for (const c of await runc.list().catch(() => [])) {
      await runc.kill(c.id, "KILL").catch(() => {});
      await runc.delete(c.id).catch(() => {});
    }
    for (const mp of await mountsUnder(dir)) {
      await runner.run("umount", ["-l", mp], { allowFailure: true });
    }
    await Deno.remove(dir, { recursive: true });
  }
}

function desc(env: Env, over: Partial<InstanceDesc> & { cmd: string[] }): InstanceDesc {
  const { cmd, ...rest } = over;
  return {
    ident: { itemId: "svc", subjectId: "subj", instance: 0 },
    uid: 0,
    gid: 0,
    layers: [env.layer],
    imageConfig: { Cmd: cmd },
    ...rest,
  };
}

/** Resolves with the first status matching `pred` (the test fails on its own timeout guard). */
function waitStatus(
  rt: RuncRuntime,
  pred: (s: InstanceStatus) => boolean,
  guardMs = 30_000,
): Promise<InstanceStatus> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error("expected status never arrived"));
    }, guardMs);
    const off = rt.subscribe((s) => {
      if (!pred(s)) return;
      clearTimeout(timer);
      off();
      resolve(s);
    });
  });
}

async function waitFor(what: string, cond: () => Promise<boolean>, guardMs = 20_000) {
  const until = Date.now() + guardMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function readOr(path: string, dflt = ""): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return dflt;
  }
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

const TERM_AWARE = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];

Deno.test({
  name: "runc: three instances run; one stops on SIGTERM and leaves nothing behind",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      // The grace is long: the TERM-aware shells must exit on SIGTERM, not on the KILL.
      const rt = await env.make({ stopGraceMs: 20_000 });
      const exits: ExitEvent[] = [];
      rt.onExit((e) => exits.push(e));
      const statuses: InstanceStatus[] = [];
      rt.subscribe((s) => statuses.push(s));
      const started = [];
      for (let i = 0; i < 3; i++) {
        started.push(
          await rt.startInstance(
            desc(env, {
              ident: { itemId: "svc", subjectId: "subj", instance: i },
              cmd: TERM_AWARE,
            }),
          ),
        );
      }
      assert.deepEqual(started.map((s) => s.state), ["active", "active", "active"]);
      for (const s of started) {
        const st = await env.runc.state(s.instanceId);
        assert.equal(st?.status, "running");
        assert.ok(await pathExists(`/proc/${st!.pid}`), "container init pid is alive");
        assert.ok((await mountsUnder(rt.bundlePath(s.instanceId))).length === 1);
      }
      assert.equal(rt.listInstances().length, 3);

      const victim = started[1]!.instanceId;
      await rt.stopInstance(victim);
      assert.deepEqual(exits, [{ instanceId: victim, exitCode: 0, requested: true }]);
      assert.equal(statuses.at(-1)!.state, "inactive");
      assert.equal(statuses.at(-1)!.instanceId, victim);
      assert.equal(await env.runc.state(victim), undefined);
      assert.deepEqual(await mountsUnder(rt.bundlePath(victim)), []);
      assert.ok(!(await pathExists(rt.bundlePath(victim))));
      assert.deepEqual(
        rt.listInstances().map((s) => s.state),
        ["active", "active"],
      );
      assert.equal((await env.runc.list()).length, 2);
      // Stopping an unknown or already stopped instance succeeds.
      await rt.stopInstance(victim);

      await rt[Symbol.asyncDispose]();
      assert.deepEqual(await env.runc.list(), []);
      assert.deepEqual(await mountsUnder(env.dir), []);
    });
  },
});

/** Files this process holds open (its /proc/self/fd links). */
async function openFiles(): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir("/proc/self/fd")) {
    const target = await Deno.readLink(`/proc/self/fd/${e.name}`).catch(() => "");
    if (target) out.push(target);
  }
  return out;
}

Deno.test({
  name: "runc: a failed overlay mount fails the start; no bundle, mount or open log is left",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      const rt = await env.make();
      const bad = desc(env, { cmd: ["sleep", "1000"], layers: [`${env.dir}/no-such-layer`] });
      const id = instanceId(bad.ident);
      await assert.rejects(rt.startInstance(bad), /mount/);
      assert.equal(rt.listInstances().find((s) => s.instanceId === id)?.state, "failed");
      assert.ok(!(await pathExists(rt.bundlePath(id))), "the bundle was removed");
      assert.deepEqual(await mountsUnder(env.dir), []);
      assert.ok(
        !(await openFiles()).includes(rt.logPath(id)),
        "the instance log opened during the mount was closed",
      );
      // The same instance starts once its layer is there.
      const ok = await rt.startInstance(desc(env, { cmd: ["sleep", "1000"] }));
      assert.equal(ok.state, "active");
    });
  },
});

Deno.test({
  name: "runc: a process ignoring SIGTERM is SIGKILLed after the grace period",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      const rt = await env.make({ stopGraceMs: 200 });
      const exits: ExitEvent[] = [];
      rt.onExit((e) => exits.push(e));
      const s = await rt.startInstance(
        desc(env, { cmd: ["sh", "-c", "trap '' TERM; sleep 1000"] }),
      );
      assert.equal(s.state, "active");
      await rt.stopInstance(s.instanceId);
      assert.deepEqual(exits, [{
        instanceId: s.instanceId,
        exitCode: 137,
        signal: "SIGKILL",
        requested: true,
      }]);
      assert.equal(await env.runc.state(s.instanceId), undefined);
    });
  },
});

Deno.test({
  name: "runc: exit code 3 is restarted per policy, then failed with exit code 3",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      const rt = await env.make();
      const exits: ExitEvent[] = [];
      rt.onExit((e) => exits.push(e));
      const failed = waitStatus(rt, (s) => s.state === "failed");
      const s = await rt.startInstance(desc(env, {
        cmd: ["sh", "-c", "echo run-$AOS_INSTANCE_ID; exit 3"],
        itemConfig: {
          runParameters: { startInterval: "20s", startBurst: 3, restartInterval: "100ms" },
        },
      }));
      assert.ok(["active", "activating"].includes(s.state), s.state);
      const f = await failed;
      assert.equal(f.error?.exitCode, 3);
      assert.match(f.error!.message, /exited with code 3; not restarted: 3 starts/);
      assert.deepEqual(exits.map((e) => [e.exitCode, e.requested]), [
        [3, false],
        [3, false],
        [3, false],
      ]);
      const log = await Deno.readTextFile(rt.logPath(s.instanceId));
      assert.equal(log.split("\n").filter((l) => l.endsWith(` out run-${s.instanceId}`)).length, 3);
      // A failed instance keeps no container, mount or bundle; stop then drops it.
      assert.equal(await env.runc.state(s.instanceId), undefined);
      assert.ok(!(await pathExists(rt.bundlePath(s.instanceId))));
      assert.equal(rt.listInstances()[0]?.state, "failed");
      await rt.stopInstance(s.instanceId);
      assert.deepEqual(rt.listInstances(), []);
    });
  },
});

Deno.test({
  name: "runc: memory, pids and CPU limits land in the cgroup; a fork loop stops at the pids limit",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      const rt = await env.make();
      const s = await rt.startInstance(desc(env, {
        uid: 4242,
        gid: 4343,
        statePath: "svc/state.dat",
        storagePath: "svc/storage",
        cmd: [
          "sh",
          "-c",
          "id -u; id -g; ls -ld /state.dat /storage; " +
          "(for i in $(seq 20); do sleep 100 & done; wait); echo loop-ended; exec sleep 1000",
        ],
        itemConfig: {
          quotas: { ramLimit: 32 * 1024 * 1024, pidsLimit: 8, cpuDMIPSLimit: 2500 },
        },
      }));
      assert.equal(s.state, "active");
      const logPath = rt.logPath(s.instanceId);
      await waitFor("loop end", async () => (await readOr(logPath)).includes("loop-ended"));
      const files = rt.cgroupFiles(s.instanceId);
      const v = await readCgroupValues(files);
      assert.equal(v.memoryLimit, 32 * 1024 * 1024);
      assert.equal(v.pidsLimit, 8);
      assert.ok(v.pidsCurrent <= 8 && v.pidsCurrent >= 2, `pids.current ${v.pidsCurrent}`);
      // 2500 DMIPS × 100000 × 2 cores / 10000 DMIPS.
      assert.equal(v.cpuQuotaUs, 50000);
      assert.equal(v.cpuPeriodUs, 100000);
      const log = await readOr(logPath);
      assert.match(log, / err sh: can't fork/);
      assert.match(log, / out 4242\n/);
      assert.match(log, / out 4343\n/);
      assert.match(log, /-rw------- +1 4242 +4343 .*\/state\.dat/);
      assert.match(log, /drwxr-xr-x +2 4242 +4343 .*\/storage/);
      assert.equal((await Deno.stat(`${env.config.stateDir}/svc/state.dat`)).uid, 4242);
      // A state path escaping the state dir is refused.
      await assert.rejects(
        rt.startInstance(desc(env, {
          ident: { itemId: "svc", subjectId: "subj", instance: 9 },
          statePath: "../../etc/passwd",
          cmd: ["true"],
        })),
        /escapes/,
      );
    });
  },
});

Deno.test({
  name: "runc: stdout and stderr reach the instance log, rotation keeps the size cap",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      const rt = await env.make({ log: { maxBytes: 4096, files: 3 } });
      const s = await rt.startInstance(desc(env, {
        cmd: [
          "sh",
          "-c",
          "echo to-stderr >&2; i=0; while [ $i -lt 300 ]; do echo line-$i-0123456789abcdef; " +
          "i=$((i+1)); done; echo done-marker; sleep 1000",
        ],
      }));
      const logPath = rt.logPath(s.instanceId);
      await waitFor("done marker", async () => (await readOr(logPath)).includes("done-marker"));
      const names: string[] = [];
      for await (const e of Deno.readDir(env.config.runtimeDir)) {
        if (e.name.startsWith(`${s.instanceId}.log`)) names.push(e.name);
      }
      assert.deepEqual(names.sort(), [
        `${s.instanceId}.log`,
        `${s.instanceId}.log.1`,
        `${s.instanceId}.log.2`,
      ]);
      for (const n of names) {
        assert.ok((await Deno.stat(`${env.config.runtimeDir}/${n}`)).size <= 4096);
      }
      const live = await Deno.readTextFile(logPath);
      assert.match(live, /^\d{4}-\d\d-\d\dT[\d:.]+Z out line-299-0123456789abcdef$/m);
      // The oldest lines (and the early stderr line) were rotated away: the cap holds.
      const all = (await Promise.all(names.map((n) => readOr(`${env.config.runtimeDir}/${n}`))))
        .join("");
      assert.ok(!all.includes(" out line-0-"));
      await rt.stopInstance(s.instanceId);

      const rt2 = await env.make();
      const s2 = await rt2.startInstance(desc(env, {
        ident: { itemId: "svc2", subjectId: "subj", instance: 0 },
        cmd: ["sh", "-c", "echo to-stderr >&2; echo to-stdout; sleep 1000"],
      }));
      // stdout and stderr are separate pipes pumped on their own: either line may land first.
      await waitFor("two lines", async () => {
        const text = await readOr(rt2.logPath(s2.instanceId));
        return text.includes("to-stdout") && text.includes("to-stderr");
      });
      const text = await Deno.readTextFile(rt2.logPath(s2.instanceId));
      assert.match(text, / err to-stderr\n/);
      assert.match(text, / out to-stdout\n/);
    });
  },
});

Deno.test({
  name: "runc: cleanupOrphans removes what a killed SM left behind",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          new URL("./_orphan_child.ts", import.meta.url).pathname,
          JSON.stringify({ config: env.config, layer: env.layer }),
        ],
        stdout: "piped",
        stderr: "inherit",
        stdin: "null",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      while (!out.includes("\n")) {
        const { done, value } = await reader.read();
        if (done) break;
        out += value;
      }
      child.kill("SIGKILL");
      await child.status;
      await reader.cancel();
      const id = instanceId({ itemId: "orphan", subjectId: "subj", instance: 0 });
      assert.equal(out.trim(), `ready ${id} active`);
      // The lost SM's container still runs, mounted.
      assert.equal((await env.runc.state(id))?.status, "running");
      assert.equal((await mountsUnder(env.dir)).length, 1);

      const rt = await env.make();
      const report = await rt.cleanupOrphans();
      assert.deepEqual(report.containers, [id]);
      assert.deepEqual(report.bundles, [id]);
      assert.equal(report.mounts.length, 1);
      assert.deepEqual(await env.runc.list(), []);
      assert.deepEqual(await mountsUnder(env.dir), []);
      assert.ok(!(await pathExists(rt.bundlePath(id))));
      // Idempotent.
      assert.deepEqual(await rt.cleanupOrphans(), { containers: [], mounts: [], bundles: [] });
    });
  },
});

Deno.test({
  name: "runc: read-only rootfs by default, a writable upper layer on request",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      const rt = await env.make();
      const cmd = ["sh", "-c", "echo data > /newfile && cat /newfile; echo rc=$?; sleep 1000"];
      const ro = await rt.startInstance(desc(env, { cmd }));
      const rw = await rt.startInstance(desc(env, {
        ident: { itemId: "svc", subjectId: "subj", instance: 1 },
        writableRootfs: true,
        cmd,
      }));
      for (const s of [ro, rw]) {
        await waitFor(
          "rc line",
          async () => (await readOr(rt.logPath(s.instanceId))).includes("rc="),
        );
      }
      assert.match(await readOr(rt.logPath(ro.instanceId)), / err .*Read-only file system/);
      assert.match(await readOr(rt.logPath(rw.instanceId)), / out data\n.* out rc=0\n/s);
      // The write went to the upper dir under the bundle, never into the layer.
      assert.equal(await readOr(`${rt.bundlePath(rw.instanceId)}/upper/newfile`), "data\n");
      assert.ok(!(await pathExists(`${env.layer}/newfile`)));
      await rt.stopInstance(rw.instanceId);
      assert.ok(!(await pathExists(rt.bundlePath(rw.instanceId))));
    });
  },
});

Deno.test({
  name: "runc: with hostBinds the host's dirs show under the layer, everything else is whited out",
  ignore: skip !== undefined,
  async fn() {
    await withEnv(async (env) => {
      // Production keeps the runtime dir on a tmpfs (/run). On the host's root filesystem the
      // kernel refuses host "/" as a lower layer under other layers of the same filesystem
      // (overlapping layers, ELOOP), so the test mounts one too.
      const fs = `${env.dir}/fs`;
      await Deno.mkdir(fs);
      await env.runner.run("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", fs]);
      const layer = `${fs}/layer`;
      await Deno.mkdir(layer);
      await Deno.writeTextFile(`${layer}/app.txt`, "from-the-layer\n");
      const config = {
        ...env.config,
        runtimeDir: `${fs}/run`,
        hostWhiteoutsDir: `${fs}/whiteouts`,
        hostBinds: ["bin", "sbin", "lib", "lib64", "usr"],
      };
      const rt = await env.make({ config });
      const s = await rt.startInstance({
        ident: { itemId: "thin", subjectId: "subj", instance: 0 },
        uid: 0,
        gid: 0,
        layers: [layer],
        imageConfig: {
          Entrypoint: ["/bin/sh", "-c"],
          Cmd: ["ls -1 /; cat /app.txt; exec sleep 1000"],
        },
      });
      const logPath = rt.logPath(s.instanceId);
      await waitFor("app line", async () => (await readOr(logPath)).includes("from-the-layer"));
      const seen = (await readOr(logPath)).split("\n").map((l) => l.split(" out ")[1]).filter(
        (x): x is string => x !== undefined,
      );
      for (const name of ["app.txt", "bin", "usr", "proc", "dev"]) {
        assert.ok(seen.includes(name), name);
      }
      for (const name of ["home", "root", "var", "work", "opt"]) {
        assert.ok(!seen.includes(name), `${name} should be whited out`);
      }
      assert.ok((await Deno.lstat(`${fs}/whiteouts/home`)).isCharDevice);
      await rt.stopInstance(s.instanceId);
    });
  },
});

import assert from "node:assert/strict";
import { AosError } from "@aos/shared/core";
import { runtimeSpecSchema } from "@aos/shared/oci";
import {
  buildRuntimeSpec,
  type BundleInput,
  cpuQuota,
  mergeEnv,
  mergeMounts,
  mountSkeleton,
} from "./bundle.ts";
import { type HostLookup, resolveResources, resourcesConfigSchema } from "./resources.ts";

const base: BundleInput = {
  instanceId: "c7644e00-aecb-3ff3-87bd-dc2b708a483b",
  ident: { itemId: "service1", subjectId: "subject1", instance: 0 },
  uid: 5001,
  gid: 5002,
  imageConfig: { Entrypoint: ["/bin/sh", "-c"], Cmd: ["sleep 1000"], Env: ["TERM=dumb", "A=1"] },
  node: { maxDmips: 10000, totalCores: 2 },
  rootfsPath: "/run/aos/runtime/c7644e00-aecb-3ff3-87bd-dc2b708a483b/rootfs",
  cgroupsPath: "/aos/c7644e00-aecb-3ff3-87bd-dc2b708a483b",
};

Deno.test({
  name: "defaults: process, capabilities, rlimits, mounts, namespaces, masks",
  permissions: "none",
  fn() {
    const spec = buildRuntimeSpec(base);
    runtimeSpecSchema.parse(spec);
    const p = spec.process!;
    assert.equal(p.terminal, false);
    assert.deepEqual(p.user, { uid: 5001, gid: 5002 });
    assert.deepEqual(p.args, ["/bin/sh", "-c", "sleep 1000"]);
    assert.equal(p.cwd, "/");
    assert.equal(p.noNewPrivileges, true);
    assert.deepEqual(p.capabilities!.bounding, [
      "CAP_AUDIT_WRITE",
      "CAP_KILL",
      "CAP_NET_BIND_SERVICE",
    ]);
    assert.equal(p.capabilities!.inheritable, undefined);
    assert.deepEqual(p.rlimits, [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }]);
    assert.deepEqual(p.env, [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=dumb",
      "AOS_ITEM_ID=service1",
      "AOS_SUBJECT_ID=subject1",
      "AOS_INSTANCE_INDEX=0",
      "AOS_INSTANCE_ID=c7644e00-aecb-3ff3-87bd-dc2b708a483b",
      "A=1",
    ]);
    assert.equal(spec.hostname, "runc");
    assert.deepEqual(spec.root, { path: base.rootfsPath, readonly: false });
    assert.deepEqual(spec.mounts!.map((m) => m.destination), [
      "/proc",
      "/dev",
      "/dev/pts",
      "/dev/shm",
      "/dev/mqueue",
      "/sys",
      "/sys/fs/cgroup",
    ]);
    assert.ok(spec.mounts!.find((m) => m.destination === "/sys")!.options!.includes("ro"));
    const l = spec.linux!;
    assert.equal(l.cgroupsPath, base.cgroupsPath);
    assert.deepEqual(l.namespaces!.map((n) => n.type), [
      "pid",
      "network",
      "ipc",
      "uts",
      "mount",
      "cgroup",
    ]);
    assert.equal(l.namespaces![1]!.path, undefined);
    assert.deepEqual(l.resources!.devices, [{ allow: false, access: "rwm" }]);
    assert.equal(l.resources!.cpu, undefined);
    assert.equal(l.resources!.memory, undefined);
    assert.ok(l.maskedPaths!.includes("/proc/kcore"));
    assert.ok(l.readonlyPaths!.includes("/proc/sysrq-trigger"));
    assert.equal(l.sysctl, undefined);
  },
});

Deno.test({
  name: "item config: hostname, sysctl, quotas, tmpfs, state and storage binds",
  permissions: "none",
  fn() {
    const spec = buildRuntimeSpec({
      ...base,
      imageConfig: { Cmd: ["/bin/app"], WorkingDir: "/app" },
      itemConfig: {
        hostname: "svc",
        sysctl: { "net.ipv4.ip_forward": "0" },
        quotas: {
          cpuDMIPSLimit: 2500,
          ramLimit: 64 * 1024 * 1024,
          pidsLimit: 8,
          noFileLimit: 256,
          tmpLimit: 1048576,
        },
      },
      stateFile: "/var/aos/states/x",
      storageDir: "/var/aos/storages/x",
      netnsPath: "/run/netns/c7644e00-aecb-3ff3-87bd-dc2b708a483b",
    });
    assert.equal(spec.hostname, "svc");
    assert.equal(spec.process!.cwd, "/app");
    assert.deepEqual(spec.linux!.sysctl, { "net.ipv4.ip_forward": "0" });
    // 2500 DMIPS of 10000 on 2 cores = half of both cores = 50000 µs per 100000.
    assert.deepEqual(spec.linux!.resources!.cpu, { quota: 50000, period: 100000 });
    assert.deepEqual(spec.linux!.resources!.memory, { limit: 64 * 1024 * 1024 });
    assert.deepEqual(spec.linux!.resources!.pids, { limit: 8 });
    assert.deepEqual(spec.process!.rlimits, [
      { type: "RLIMIT_NOFILE", hard: 256, soft: 256 },
      { type: "RLIMIT_NPROC", hard: 8, soft: 8 },
    ]);
    const byDest = new Map(spec.mounts!.map((m) => [m.destination, m]));
    assert.deepEqual(byDest.get("/tmp")!.options, [
      "nosuid",
      "strictatime",
      "mode=1777",
      "size=1048576",
    ]);
    assert.deepEqual(byDest.get("/state.dat"), {
      destination: "/state.dat",
      type: "bind",
      source: "/var/aos/states/x",
      options: ["bind", "rw"],
    });
    assert.equal(byDest.get("/storage")!.source, "/var/aos/storages/x");
    assert.deepEqual(spec.linux!.namespaces![1], {
      type: "network",
      path: "/run/netns/c7644e00-aecb-3ff3-87bd-dc2b708a483b",
    });
    const noNet = buildRuntimeSpec({ ...base, hostNetwork: true });
    assert.ok(!noNet.linux!.namespaces!.some((n) => n.type === "network"));
  },
});

Deno.test({
  name: "cpuQuota follows the upstream formula with its minimum",
  permissions: "none",
  fn() {
    assert.equal(cpuQuota(1000, { maxDmips: 10000, totalCores: 1 }), 10000);
    assert.equal(cpuQuota(10000, { maxDmips: 10000, totalCores: 4 }), 400000);
    assert.equal(cpuQuota(1, { maxDmips: 10000, totalCores: 1 }), 1000);
    assert.equal(cpuQuota(3333, { maxDmips: 10000, totalCores: 0 }), 33330);
    assert.equal(cpuQuota(3333, { maxDmips: 0, totalCores: 1 }), undefined);
  },
});

Deno.test({
  name: "env merge: same name replaces in place; overrides and secret come last",
  permissions: "none",
  fn() {
    assert.deepEqual(mergeEnv(["A=1", "B=2"], ["B=3", "C=4", "A"]), ["A", "B=3", "C=4"]);
    const spec = buildRuntimeSpec({
      ...base,
      secret: "s3cr3t",
      envOverrides: [{ name: "A", value: "override" }, { name: "AOS_SECRET", value: "x" }],
    });
    const env = spec.process!.env!;
    assert.equal(env.filter((e) => e.startsWith("A=")).length, 1);
    assert.ok(env.includes("A=override"));
    assert.ok(env.includes("AOS_SECRET=x"));
    assert.throws(
      () => buildRuntimeSpec({ ...base, envOverrides: [{ name: "", value: "v" }] }),
      (e) => e instanceof AosError && e.code === "invalidArgument",
    );
    assert.throws(
      () => buildRuntimeSpec({ ...base, imageConfig: { Env: [] } }),
      /neither Entrypoint nor Cmd/,
    );
  },
});

Deno.test({
  name: "mount de-dup: later destination replaces in place; empty type is bind",
  permissions: "none",
  fn() {
    const m = mergeMounts(
      [{ destination: "/a", type: "tmpfs", source: "tmpfs" }, { destination: "/b", type: "proc" }],
      [{ destination: "/a", type: "", source: "/host/a", options: ["ro"] }],
    );
    assert.deepEqual(m, [
      { destination: "/a", type: "bind", source: "/host/a", options: ["bind", "ro"] },
      { destination: "/b", type: "proc" },
    ]);
  },
});

const fakeHost: HostLookup = {
  groupId: (name) => Promise.resolve(name === "video" ? 44 : undefined),
  devices: (path) =>
    Promise.resolve(
      path === "/dev/video0"
        ? [{ path, type: "c" as const, major: 81, minor: 0, fileMode: 0o660, uid: 0, gid: 44 }]
        : path === "/dev/dri"
        ? [
          {
            path: "/dev/dri/card0",
            type: "c" as const,
            major: 226,
            minor: 0,
            fileMode: 0o660,
            uid: 0,
            gid: 44,
          },
          {
            path: "/dev/dri/renderD128",
            type: "c" as const,
            major: 226,
            minor: 128,
            fileMode: 0o666,
            uid: 0,
            gid: 44,
          },
        ]
        : [],
    ),
};

Deno.test({
  name: "resources: groups, devices (dir mapping), mounts and envs land in the spec",
  permissions: "none",
  async fn() {
    const cfg = resourcesConfigSchema.parse([
      {
        name: "camera0",
        sharedCount: 2,
        groups: ["video"],
        devices: ["/dev/video0", "/dev/dri:/dev/gpu"],
        mounts: [{ destination: "/opt/cam", source: "/srv/cam", options: ["ro"] }],
        envs: ["CAM=1"],
        hosts: [{ ip: "10.0.0.100", hostname: "Server" }],
      },
      { Name: "other" },
    ]);
    const resolved = await resolveResources([{ name: "camera0", mode: "rw" }], cfg, fakeHost);
    const spec = buildRuntimeSpec({ ...base, resources: resolved });
    assert.deepEqual(spec.process!.user.additionalGids, [44]);
    assert.ok(spec.process!.env!.includes("CAM=1"));
    assert.deepEqual(spec.linux!.devices!.map((d) => d.path), [
      "/dev/video0",
      "/dev/gpu/card0",
      "/dev/gpu/renderD128",
    ]);
    assert.deepEqual(spec.linux!.resources!.devices![2], {
      allow: true,
      type: "c",
      major: 226,
      minor: 0,
      access: "rw",
    });
    assert.deepEqual(spec.mounts!.at(-1), {
      destination: "/opt/cam",
      type: "bind",
      source: "/srv/cam",
      options: ["bind", "ro"],
    });
    await assert.rejects(
      resolveResources([{ name: "gpu" }], cfg, fakeHost),
      (e) =>
        e instanceof AosError && e.code === "notFound" &&
        e.message === 'resource "gpu" is not defined in /etc/aos/resources.cfg',
    );
    assert.throws(
      () => resourcesConfigSchema.parse([{ name: "a" }, { name: "a" }]),
      /defined twice/,
    );
  },
});

Deno.test({
  name: "mountSkeleton: dirs with mode, files for file binds, the working dir",
  permissions: "none",
  fn() {
    const spec = buildRuntimeSpec({
      ...base,
      imageConfig: { Cmd: ["x"], WorkingDir: "/work" },
      itemConfig: { quotas: { tmpLimit: 4096 } },
      stateFile: "/s/state",
      storageDir: "/s/storage",
    });
    const sk = mountSkeleton(spec, (src) => src === "/s/state");
    const get = (p: string) => sk.find((x) => x.path === p);
    assert.deepEqual(get("/state.dat"), { path: "/state.dat", kind: "file", mode: 0o644 });
    assert.deepEqual(get("/storage"), { path: "/storage", kind: "dir", mode: 0o755 });
    assert.deepEqual(get("/tmp"), { path: "/tmp", kind: "dir", mode: 0o1777 });
    assert.deepEqual(get("/dev"), { path: "/dev", kind: "dir", mode: 0o755 });
    assert.deepEqual(get("/work"), { path: "/work", kind: "dir", mode: 0o755 });
  },
});

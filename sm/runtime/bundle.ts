/**
 * Pure construction of an instance's OCI `config.json` (upstream §3.4 order): the `runc spec`
 * defaults, then user, cgroup path, root, host binds, namespaces, env, the item config's
 * hostname/sysctl/quotas/resources, state and storage binds, and the CM's env overrides last.
 * @module
 */
import { AosError } from "@aos/shared/core";
import type { ContainerConfig, ItemConfig, Mount, RuntimeSpec } from "@aos/shared/oci";
import type { InstanceIdent } from "./instance_id.ts";
import type { ResolvedResource } from "./resources.ts";

/** OCI runtime spec version written into `config.json` (what runc 1.1 `spec` emits). */
export const OCI_VERSION = "1.0.2-dev";

/** CFS period used for every CPU quota (upstream constant). */
export const CPU_PERIOD_US = 100_000;
/** Smallest CPU quota written (upstream constant). */
export const MIN_CPU_QUOTA_US = 1_000;

/** Capabilities an instance keeps (bounding, effective, permitted). */
export const DEFAULT_CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/** The node facts the bundle needs. */
export interface NodeFacts {
  /** `NodeInfo.maxDMIPS`; 0 disables the CPU quota (no division by zero). */
  maxDmips: number;
  /** Sum of `cpus[].numCores` (0 counts as 1). */
  totalCores: number;
}

/** An override env var from the CM (`InstanceInfo.envVars`). */
export interface EnvVar {
  name: string;
  value: string;
}

/** A host path bound into every instance (upstream: `/etc/nsswitch.conf`, `/etc/ssl`, ro). */
export interface HostBind {
  source: string;
  destination: string;
  readOnly: boolean;
}

/** Everything {@link buildRuntimeSpec} reads. */
export interface BundleInput {
  instanceId: string;
  ident: InstanceIdent;
  uid: number;
  gid: number;
  /** The image config's `config` member (Entrypoint, Cmd, Env, WorkingDir). */
  imageConfig?: ContainerConfig | undefined;
  itemConfig?: ItemConfig | undefined;
  node: NodeFacts;
  /** Absolute path of the rootfs mount point (`<bundle>/rootfs`). */
  rootfsPath: string;
  /** `linux.cgroupsPath`, e.g. `/aos/<instanceID>`. */
  cgroupsPath: string;
  resources?: readonly ResolvedResource[];
  hostBinds?: readonly HostBind[];
  /** Host file bound read-write at `/state.dat`. */
  stateFile?: string | undefined;
  /** Host dir bound read-write at `/storage`. */
  storageDir?: string | undefined;
  /** Network namespace to join (`/run/netns/<id>`); the networking hook. */
  netnsPath?: string | undefined;
  /** Share the host's network namespace instead of a fresh, isolated one. */
  hostNetwork?: boolean | undefined;
  /** IAM secret for `permissions`; exported as `AOS_SECRET`. */
  secret?: string | undefined;
  /** CM overrides, applied last. */
  envOverrides?: readonly EnvVar[];
}

/** Splits `NAME=value` (a missing `=` means an empty value). */
function envName(entry: string): string {
  const i = entry.indexOf("=");
  return i < 0 ? entry : entry.slice(0, i);
}

/** Merges `add` into `env`: a same-name variable is replaced in place, others are appended. */
export function mergeEnv(env: string[], add: readonly string[]): string[] {
  const out = [...env];
  for (const entry of add) {
    const name = envName(entry);
    const at = out.findIndex((e) => envName(e) === name);
    if (at >= 0) out[at] = entry;
    else out.push(entry);
  }
  return out;
}

/**
 * Adds mounts with upstream's de-dup rule: a later mount with the same destination replaces the
 * earlier one in place (so parents stay before children); an empty type becomes `bind`, and a
 * bind mount always carries a `bind`/`rbind` option (runc ignores the type and reads the option).
 */
export function mergeMounts(mounts: Mount[], add: readonly Mount[]): Mount[] {
  const out = [...mounts];
  for (const m0 of add) {
    const type = m0.type ? m0.type : "bind";
    let options = m0.options ?? [];
    if (type === "bind" && !options.includes("bind") && !options.includes("rbind")) {
      options = ["bind", ...options];
    }
    const m: Mount = { ...m0, type, options };
    const at = out.findIndex((x) => x.destination === m.destination);
    if (at >= 0) out[at] = m;
    else out.push(m);
  }
  return out;
}

/** CPU quota for a DMIPS limit: `limit × period × cores / maxDMIPS`, at least 1000 µs. */
export function cpuQuota(cpuDmipsLimit: number, node: NodeFacts): number | undefined {
  if (node.maxDmips <= 0) return undefined;
  const cores = node.totalCores > 0 ? node.totalCores : 1;
  const quota = Math.floor(cpuDmipsLimit * CPU_PERIOD_US * cores / node.maxDmips);
  return Math.max(MIN_CPU_QUOTA_US, quota);
}

const ENV_NAME = /^[^=\0]+$/;

function checkEnv(what: string, entries: readonly string[]): void {
  for (const e of entries) {
    if (e.includes("\0") || !ENV_NAME.test(envName(e))) {
      throw new AosError("invalidArgument", `${what}: invalid env entry ${JSON.stringify(e)}`);
    }
  }
}

function defaultMounts(): Mount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc" },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
      destination: "/dev/mqueue",
      type: "mqueue",
      source: "mqueue",
      options: ["nosuid", "noexec", "nodev"],
    },
    {
      destination: "/sys",
      type: "sysfs",
      source: "sysfs",
      options: ["nosuid", "noexec", "nodev", "ro"],
    },
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
  ];
}

/** Builds the instance's `config.json`. Pure: every host fact comes in through `input`. */
export function buildRuntimeSpec(input: BundleInput): RuntimeSpec {
  const item = input.itemConfig ?? {};
  const quotas = item.quotas ?? {};
  const image = input.imageConfig ?? {};
  const resources = input.resources ?? [];

  // Environment: defaults, AOS_*, image Env, resources, secret, then CM overrides.
  let env = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=xterm",
  ];
  env = mergeEnv(env, [
    `AOS_ITEM_ID=${input.ident.itemId}`,
    `AOS_SUBJECT_ID=${input.ident.subjectId}`,
    `AOS_INSTANCE_INDEX=${input.ident.instance}`,
    `AOS_INSTANCE_ID=${input.instanceId}`,
  ]);
  const imageEnv = image.Env ?? [];
  checkEnv("image config Env", imageEnv);
  env = mergeEnv(env, imageEnv);
  for (const r of resources) {
    checkEnv(`resource "${r.name}" envs`, r.envs);
    env = mergeEnv(env, r.envs);
  }
  if (input.secret !== undefined && input.secret !== "") {
    env = mergeEnv(env, [`AOS_SECRET=${input.secret}`]);
  }
  const overrides = (input.envOverrides ?? []).map((v) => `${v.name}=${v.value}`);
  checkEnv("instance env override", overrides);
  env = mergeEnv(env, overrides);

  const args = [...(image.Entrypoint ?? []), ...(image.Cmd ?? [])];
  if (args.length === 0) {
    throw new AosError(
      "invalidArgument",
      `Cannot build bundle of instance ${input.instanceId}: image config has neither Entrypoint nor Cmd`,
    );
  }

  const rlimits = new Map<string, number>([["RLIMIT_NOFILE", 1024]]);
  if (quotas.noFileLimit) rlimits.set("RLIMIT_NOFILE", quotas.noFileLimit);
  if (quotas.pidsLimit) rlimits.set("RLIMIT_NPROC", quotas.pidsLimit);

  const additionalGids = [...new Set(resources.flatMap((r) => r.additionalGids))];

  let mounts = mergeMounts([], defaultMounts());
  mounts = mergeMounts(
    mounts,
    (input.hostBinds ?? []).map((b) => ({
      destination: b.destination,
      type: "bind",
      source: b.source,
      options: ["bind", b.readOnly ? "ro" : "rw"],
    })),
  );
  if (quotas.tmpLimit) {
    mounts = mergeMounts(mounts, [{
      destination: "/tmp",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=1777", `size=${quotas.tmpLimit}`],
    }]);
  }
  for (const r of resources) mounts = mergeMounts(mounts, r.mounts);
  if (input.stateFile) {
    mounts = mergeMounts(mounts, [{
      destination: "/state.dat",
      type: "bind",
      source: input.stateFile,
      options: ["bind", "rw"],
    }]);
  }
  if (input.storageDir) {
    mounts = mergeMounts(mounts, [{
      destination: "/storage",
      type: "bind",
      source: input.storageDir,
      options: ["bind", "rw"],
    }]);
  }

  const namespaces: { type: string; path?: string }[] = [{ type: "pid" }];
  if (input.netnsPath) namespaces.push({ type: "network", path: input.netnsPath });
  else if (!input.hostNetwork) namespaces.push({ type: "network" });
  namespaces.push({ type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "cgroup" });

  const devices = resources.flatMap((r) => r.devices);
  const resourcesSection: NonNullable<NonNullable<RuntimeSpec["linux"]>["resources"]> = {
    devices: [
      { allow: false, access: "rwm" },
      ...devices.map((d) => ({
        allow: true,
        type: d.type,
        major: d.major,
        minor: d.minor,
        access: d.access,
      })),
    ],
  };
  if (quotas.cpuDMIPSLimit) {
    const quota = cpuQuota(quotas.cpuDMIPSLimit, input.node);
    if (quota !== undefined) resourcesSection.cpu = { quota, period: CPU_PERIOD_US };
  }
  if (quotas.ramLimit) resourcesSection.memory = { limit: quotas.ramLimit };
  if (quotas.pidsLimit) resourcesSection.pids = { limit: quotas.pidsLimit };

  const spec: RuntimeSpec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: {
        uid: input.uid,
        gid: input.gid,
        ...(additionalGids.length ? { additionalGids } : {}),
      },
      args,
      env,
      cwd: image.WorkingDir || "/",
      capabilities: {
        bounding: [...DEFAULT_CAPABILITIES],
        effective: [...DEFAULT_CAPABILITIES],
        permitted: [...DEFAULT_CAPABILITIES],
      },
      rlimits: [...rlimits].map(([type, n]) => ({ type, hard: n, soft: n })),
      noNewPrivileges: true,
    },
    root: { path: input.rootfsPath, readonly: false },
    hostname: item.hostname || "runc",
    mounts,
    linux: {
      cgroupsPath: input.cgroupsPath,
      resources: resourcesSection,
      namespaces,
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
      ],
      readonlyPaths: [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
      ],
      ...(item.sysctl && Object.keys(item.sysctl).length ? { sysctl: { ...item.sysctl } } : {}),
      ...(devices.length
        ? {
          devices: devices.map((d) => ({
            type: d.type,
            path: d.path,
            major: d.major,
            minor: d.minor,
            fileMode: d.fileMode,
            uid: d.uid,
            gid: d.gid,
          })),
        }
        : {}),
    },
  };
  return spec;
}

/** One path to create in the `mounts/` skeleton layer. */
export interface MountPoint {
  /** Absolute container path. */
  path: string;
  kind: "dir" | "file";
  /** Permission bits. */
  mode: number;
}

/**
 * The mount points the read-only rootfs must already contain: every mount destination (a
 * file when its bind source is a file, `isFile` tells) and the working dir. runc cannot create
 * them itself in a read-only overlay.
 */
export function mountSkeleton(
  spec: RuntimeSpec,
  isFile: (source: string) => boolean,
): MountPoint[] {
  const out = new Map<string, MountPoint>();
  for (const m of spec.mounts ?? []) {
    const bind = (m.options ?? []).some((o) => o === "bind" || o === "rbind");
    const file = bind && m.source !== undefined && isFile(m.source);
    const modeOpt = (m.options ?? []).find((o) => o.startsWith("mode="));
    const mode = modeOpt && !file ? parseInt(modeOpt.slice(5), 8) & 0o7777 : file ? 0o644 : 0o755;
    out.set(m.destination, {
      path: m.destination,
      kind: file ? "file" : "dir",
      mode: Number.isNaN(mode) ? 0o755 : mode,
    });
  }
  const cwd = spec.process?.cwd;
  if (cwd && cwd !== "/" && !out.has(cwd)) out.set(cwd, { path: cwd, kind: "dir", mode: 0o755 });
  return [...out.values()];
}

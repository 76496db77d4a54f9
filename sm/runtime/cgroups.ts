/**
 * cgroup layout detection and the files that hold an instance's limits and usage, for both the
 * v1 (per-controller hierarchies, also "hybrid") and the v2 (unified) layout.
 * @module
 */
import type { CommandRunner } from "@aos/shared/exec";

/** Which cgroup hierarchy runc uses on this host. */
export type CgroupLayout = "v1" | "v2";

/** Default cgroup mount point. */
export const CGROUP_ROOT = "/sys/fs/cgroup";

/**
 * Detects the layout: v2 when the root itself is a cgroup2 mount (it has `cgroup.controllers`).
 * A hybrid host (cgroup2 only at `unified/`) counts as v1, which is how runc treats it.
 * Deno lets only fully privileged processes look into `/sys`, so under a scoped grant the
 * file system type is asked from `stat -f` through `runner` instead.
 */
export async function detectCgroupLayout(
  root = CGROUP_ROOT,
  runner?: CommandRunner,
): Promise<CgroupLayout> {
  try {
    await Deno.stat(`${root}/cgroup.controllers`);
    return "v2";
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "v1";
    if (!(err instanceof Deno.errors.NotCapable) || !runner) throw err;
  }
  const r = await runner.run("stat", ["-f", "-c", "%T", root]);
  return r.stdout.trim() === "cgroup2fs" ? "v2" : "v1";
}

/** Paths of an instance's cgroup files. */
export interface CgroupFiles {
  layout: CgroupLayout;
  /** v1 `memory.limit_in_bytes`, v2 `memory.max`. */
  memoryLimit: string;
  /** v1 `memory.usage_in_bytes`, v2 `memory.current`. */
  memoryUsage: string;
  /** `pids.max`. */
  pidsMax: string;
  /** `pids.current`. */
  pidsCurrent: string;
  /** v1 `cpu.cfs_quota_us`, v2 `cpu.max` (`"<quota|max> <period>"`). */
  cpuQuota: string;
  /** v1 `cpu.cfs_period_us`; v2 `cpu.max` again. */
  cpuPeriod: string;
  /** v1 `cpuacct.usage` (ns), v2 `cpu.stat` (`usage_usec`). */
  cpuUsage: string;
  /** Process list (`cgroup.procs`, from the pids hierarchy on v1). */
  procs: string;
}

/**
 * Files of the cgroup at `cgroupsPath` (the `linux.cgroupsPath` of the spec, e.g.
 * `/aos/<instanceID>`). With v1 each controller has its own tree: `<root>/<controller><path>`.
 */
export function cgroupFiles(
  layout: CgroupLayout,
  cgroupsPath: string,
  root = CGROUP_ROOT,
): CgroupFiles {
  const p = cgroupsPath.startsWith("/") ? cgroupsPath : `/${cgroupsPath}`;
  if (layout === "v2") {
    const d = `${root}${p}`;
    return {
      layout,
      memoryLimit: `${d}/memory.max`,
      memoryUsage: `${d}/memory.current`,
      pidsMax: `${d}/pids.max`,
      pidsCurrent: `${d}/pids.current`,
      cpuQuota: `${d}/cpu.max`,
      cpuPeriod: `${d}/cpu.max`,
      cpuUsage: `${d}/cpu.stat`,
      procs: `${d}/cgroup.procs`,
    };
  }
  return {
    layout,
    memoryLimit: `${root}/memory${p}/memory.limit_in_bytes`,
    memoryUsage: `${root}/memory${p}/memory.usage_in_bytes`,
    pidsMax: `${root}/pids${p}/pids.max`,
    pidsCurrent: `${root}/pids${p}/pids.current`,
    cpuQuota: `${root}/cpu${p}/cpu.cfs_quota_us`,
    cpuPeriod: `${root}/cpu${p}/cpu.cfs_period_us`,
    cpuUsage: `${root}/cpuacct${p}/cpuacct.usage`,
    procs: `${root}/pids${p}/cgroup.procs`,
  };
}

/** Limits and usage read from an instance's cgroup; `null` means unlimited. */
export interface CgroupValues {
  memoryLimit: number | null;
  memoryUsage: number;
  pidsLimit: number | null;
  pidsCurrent: number;
  cpuQuotaUs: number | null;
  cpuPeriodUs: number;
  /** Total CPU time used, µs. */
  cpuUsageUs: number;
}

/** v1 reports "no memory limit" as a huge page-aligned number; treat anything this big as none. */
const V1_UNLIMITED = 2 ** 62;

function num(text: string): number | null {
  const t = text.trim();
  if (t === "max" || t === "-1") return null;
  const n = Number(t);
  if (!Number.isFinite(n)) throw new RangeError(`unexpected cgroup value "${t.slice(0, 40)}"`);
  return n;
}

/** Parses the values of one cgroup file set (pure; `read` returns a file's text). */
export async function readCgroupValues(
  files: CgroupFiles,
  read: (path: string) => Promise<string> = (p) => Deno.readTextFile(p),
): Promise<CgroupValues> {
  const memoryLimitRaw = num(await read(files.memoryLimit));
  const memoryLimit = memoryLimitRaw !== null && memoryLimitRaw >= V1_UNLIMITED
    ? null
    : memoryLimitRaw;
  const memoryUsage = num(await read(files.memoryUsage)) ?? 0;
  const pidsLimit = num(await read(files.pidsMax));
  const pidsCurrent = num(await read(files.pidsCurrent)) ?? 0;
  let cpuQuotaUs: number | null;
  let cpuPeriodUs: number;
  let cpuUsageUs: number;
  if (files.layout === "v2") {
    const [q = "max", per = "100000"] = (await read(files.cpuQuota)).trim().split(/\s+/);
    cpuQuotaUs = num(q);
    cpuPeriodUs = num(per) ?? 100000;
    const stat = await read(files.cpuUsage);
    const m = /^usage_usec\s+(\d+)/m.exec(stat);
    cpuUsageUs = m ? Number(m[1]) : 0;
  } else {
    cpuQuotaUs = num(await read(files.cpuQuota));
    cpuPeriodUs = num(await read(files.cpuPeriod)) ?? 100000;
    cpuUsageUs = Math.floor((num(await read(files.cpuUsage)) ?? 0) / 1000);
  }
  return { memoryLimit, memoryUsage, pidsLimit, pidsCurrent, cpuQuotaUs, cpuPeriodUs, cpuUsageUs };
}

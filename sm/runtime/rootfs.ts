/**
 * The instance rootfs: a read-only overlay of `<bundle>/mounts` (mount-point skeleton and /etc
 * files) over the image layers (`layers[0]` top-most, the Aos order) and, only when host binds
 * are configured, the host whiteouts dir and host `/` at the bottom. Mounting goes through the
 * {@link CommandRunner} (`mount`/`umount`), so the SM's `--allow-run` names the exact programs.
 * @module
 */
import { AosError, type Logger, retry } from "@aos/shared/core";
import type { CommandRunner } from "@aos/shared/exec";
import type { MountPoint } from "./bundle.ts";

/** Parameters of one overlay mount. */
export interface OverlaySpec {
  /** Lower dirs, top-most first. */
  lower: readonly string[];
  /** Mount point. */
  target: string;
  /** A writable upper layer (dirs must exist on the same filesystem). */
  upper?: { upperdir: string; workdir: string };
}

/** Characters that would break the overlay option syntax (`,` `:` separators) or the kernel parser. */
const BAD_PATH = /[,:\s\\]/;

/** Longest option string (the kernel copies one page of mount data). */
const MAX_MOUNT_DATA = 4000;

/**
 * The `mount` arguments for an overlay (pure). `-i` (no `/sbin/mount.overlay` helper lookup) and
 * `-n` (no mtab update; mtab is /proc's view anyway) take ~20% off each mount, which sits on
 * every instance start.
 */
export function overlayMountArgs(spec: OverlaySpec): string[] {
  const dirs = [
    ...spec.lower,
    spec.target,
    ...(spec.upper ? [spec.upper.upperdir, spec.upper.workdir] : []),
  ];
  for (const d of dirs) {
    if (!d.startsWith("/") || BAD_PATH.test(d)) {
      throw new AosError(
        "invalidArgument",
        `Cannot mount overlay at ${spec.target}: path ${
          JSON.stringify(d)
        } is not absolute or has , : or spaces`,
      );
    }
  }
  if (spec.lower.length < (spec.upper ? 1 : 2)) {
    throw new AosError(
      "invalidArgument",
      `Cannot mount overlay at ${spec.target}: a read-only overlay needs at least two lower dirs`,
    );
  }
  let options = `lowerdir=${spec.lower.join(":")}`;
  if (spec.upper) options += `,upperdir=${spec.upper.upperdir},workdir=${spec.upper.workdir}`;
  if (options.length > MAX_MOUNT_DATA) {
    throw new AosError(
      "outOfRange",
      `Cannot mount overlay at ${spec.target}: ${spec.lower.length} layers make ${options.length} bytes of options (max ${MAX_MOUNT_DATA})`,
    );
  }
  return ["-i", "-n", "-t", "overlay", "overlay", "-o", options, spec.target];
}

/** Mounts an overlay, 3 tries 1 s apart (a force-unmount in between, like upstream). */
export async function mountOverlay(
  runner: CommandRunner,
  spec: OverlaySpec,
  opts: {
    tries?: number;
    delayMs?: number;
    logger?: Logger;
    sleep?: (ms: number) => Promise<void>;
  } = {},
): Promise<void> {
  const args = overlayMountArgs(spec);
  await retry(
    async (attempt) => {
      if (attempt > 1) await runner.run("umount", ["-f", spec.target], { allowFailure: true });
      try {
        await runner.run("mount", args);
      } catch (err) {
        // The kernel refuses a lower layer below another layer's root on the same file system
        // (ELOOP, "overlapping lowerdir path"): with host "/" as the bottom layer, the bundles,
        // layers and whiteouts must live on other file systems (upstream: /run, /var/aos).
        if (spec.lower.includes("/") && /Too many levels of symbolic links/.test(String(err))) {
          throw new AosError(
            "failed",
            `Cannot mount the rootfs at ${spec.target}: the kernel refuses host "/" as the ` +
              `bottom layer because another layer is on the root file system (overlapping ` +
              `layers); keep runtimeDir, hostWhiteoutsDir and imagePath off "/" or set ` +
              `hostBinds to []`,
            { cause: err },
          );
        }
        throw err;
      }
    },
    {
      shouldRetry: (err) => !(err instanceof AosError && /overlapping layers/.test(err.message)),
      tries: opts.tries ?? 3,
      initialDelayMs: opts.delayMs ?? 1000,
      factor: 1,
      ...(opts.sleep ? { sleep: opts.sleep } : {}),
      onRetry: (err, attempt) =>
        opts.logger?.warn("overlay mount failed, retrying", { target: spec.target, attempt, err }),
    },
  );
}

/** Unmounts `target` (lazily if busy); "not mounted" counts as success. */
export async function unmount(runner: CommandRunner, target: string): Promise<void> {
  const r = await runner.run("umount", [target], { allowFailure: true });
  if (r.code === 0) return;
  if (/not mounted|no mount point|not found|No such file/i.test(r.stderr)) return;
  const lazy = await runner.run("umount", ["-l", target], { allowFailure: true });
  if (lazy.code !== 0 && !/not mounted/i.test(lazy.stderr)) {
    throw new AosError(
      "failed",
      `Cannot unmount ${target}: ${r.stderr.trim() || `exit ${r.code}`}`,
    );
  }
}

/**
 * Mount points strictly below `dir` (down to `maxDepth` levels), deepest first: the order to
 * unmount them. A mount point is a directory whose device differs from its parent's. This avoids
 * `/proc/mounts`, which Deno lets only fully privileged processes read.
 */
export async function mountsUnder(dir: string, maxDepth = 3): Promise<string[]> {
  const out: string[] = [];
  const walk = async (path: string, parentDev: number, depth: number): Promise<void> => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(path));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    for (const e of entries) {
      if (!e.isDirectory) continue;
      const child = `${path}/${e.name}`;
      const st = await Deno.lstat(child).catch(() => undefined);
      if (!st?.isDirectory) continue;
      if (st.dev !== parentDev) out.push(child);
      else if (depth < maxDepth) await walk(child, parentDev, depth + 1);
    }
  };
  const base = dir.endsWith("/") ? dir.slice(0, -1) : dir;
  const root = await Deno.lstat(base).catch(() => undefined);
  if (root?.isDirectory) await walk(base, root.dev, 1);
  return out.sort((a, b) => b.length - a.length);
}

/** Creates the mount-point skeleton under `mountsDir` (existing entries are kept). */
export function createSkeleton(
  mountsDir: string,
  points: readonly MountPoint[],
): void {
  for (const p of points) {
    const rel = p.path.replace(/^\/+/, "");
    if (rel === "" || rel.split("/").some((s) => s === ".." || s === ".")) {
      throw new AosError(
        "invalidArgument",
        `mount destination ${JSON.stringify(p.path)} is not a clean absolute path`,
      );
    }
    const abs = `${mountsDir}/${rel}`;
    const parent = abs.slice(0, abs.lastIndexOf("/"));
    Deno.mkdirSync(parent, { recursive: true, mode: 0o755 });
    if (p.kind === "dir") {
      Deno.mkdirSync(abs, { recursive: true, mode: p.mode & 0o777 });
      Deno.chmodSync(abs, p.mode);
    } else {
      Deno.openSync(abs, { create: true, write: true, mode: p.mode }).close();
    }
  }
}

/**
 * Names in the host root. Deno grants reading `/` only together with every file below it, so
 * under a scoped grant the names come from `ls -1A`; each is then confirmed with `stat`, which
 * fails the whole call (fail closed: no whiteout may be missing) if a name with a newline was
 * split into names that do not exist.
 */
async function topLevelNames(runner: CommandRunner, hostRoot: string): Promise<string[]> {
  try {
    return (await Array.fromAsync(Deno.readDir(hostRoot))).map((e) => e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotCapable)) throw err;
  }
  const base = hostRoot.endsWith("/") ? hostRoot : `${hostRoot}/`;
  const names = (await runner.run("ls", ["-1A", base])).stdout.split("\n").filter((n) => n);
  if (names.length) await runner.run("stat", ["-c", "%n", "--", ...names.map((n) => base + n)]);
  return names;
}

/**
 * Fills `dir` with an overlay whiteout (char device 0:0, made with `mknod`) for every top-level
 * entry of host `/` except `hostBinds`, so host `/` as the bottom layer exposes only those.
 */
export async function prepareHostWhiteouts(
  runner: CommandRunner,
  dir: string,
  hostBinds: readonly string[],
  hostRoot = "/",
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  const keep = new Set(hostBinds.map((b) => b.replace(/^\/+|\/+$/g, "")));
  for (const name of await topLevelNames(runner, hostRoot)) {
    if (keep.has(name)) continue;
    const path = `${dir}/${name}`;
    try {
      const st = await Deno.lstat(path);
      if (st.isCharDevice) continue;
      await Deno.remove(path, { recursive: true });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    await runner.run("mknod", [path, "c", "0", "0"]);
  }
}

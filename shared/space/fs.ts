/**
 * The filesystem port of the space allocator and its real implementation.
 * @module
 */
import { statfs } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { AosError } from "../core/errors.ts";

/** Size figures of a filesystem, in bytes. */
export interface PartitionSize {
  /** Total size of the filesystem. */
  total: number;
  /** Space an unprivileged writer may still use (`f_bavail * f_bsize`). */
  available: number;
}

/** What the allocator needs from the filesystem; tests may wrap the real one. */
export interface SpaceFs {
  /** Device id of the filesystem holding `path` (`st_dev`). */
  device(path: string): Promise<number>;
  /** Size and free space of the filesystem holding `path`. */
  size(path: string): Promise<PartitionSize>;
  /** The mount point of `path`, or the highest ancestor this process may inspect. */
  mountPoint(path: string): Promise<string>;
  /** Total bytes of regular files under `path` (0 when it does not exist). */
  usedBy(path: string): Promise<number>;
}

async function device(path: string): Promise<number> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    throw new AosError(
      err instanceof Deno.errors.NotFound ? "notFound" : "failed",
      `Cannot stat ${path} for space accounting: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (info.dev === null) {
    throw new AosError("notSupported", `Cannot get the device of ${path}: no st_dev here`);
  }
  return info.dev;
}

async function usedBy(path: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      const child = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(child);
      else if (entry.isFile) total += (await Deno.lstat(child)).size;
    }
  };
  try {
    await walk(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return total;
}

/** The real filesystem: `Deno.stat` for `st_dev`, `statfs` from `node:fs/promises` for sizes. */
export const realSpaceFs: SpaceFs = {
  device,
  async size(path) {
    const s = await statfs(path);
    return { total: s.blocks * s.bsize, available: s.bavail * s.bsize };
  },
  async mountPoint(path) {
    // Walk up while the device stays the same. Under a narrow --allow-read the walk stops at
    // the highest readable ancestor, which still names the partition well enough for messages.
    let current = resolve(path);
    const dev = await device(current);
    for (;;) {
      const parent = dirname(current);
      if (parent === current) return current;
      let parentDev: number | null;
      try {
        parentDev = (await Deno.stat(parent)).dev;
      } catch {
        return current;
      }
      if (parentDev !== dev) return current;
      current = parent;
    }
  },
  usedBy,
};

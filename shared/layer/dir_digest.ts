/**
 * Deterministic digests of directory trees, to compare extracted layers and to record the
 * AosCore "dirhash" of an unpacked layer.
 * @module
 */
import { createHash } from "node:crypto";
import { AosError } from "../core/errors.ts";

/** Kind of a tree entry. */
export type TreeEntryType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

/** One entry of a listed tree. */
export interface TreeEntry {
  /** Path relative to the root, `/`-separated (`.` for the root itself). */
  path: string;
  /** Kind. */
  type: TreeEntryType;
  /** Permission bits (including setuid/setgid/sticky); 0 for symlinks. */
  mode: number;
  /** Owner uid (when listed with owners). */
  uid?: number;
  /** Owner gid (when listed with owners). */
  gid?: number;
  /** Size of a regular file. */
  size?: number;
  /** mtime in ms (when listed with mtimes). */
  mtimeMs?: number;
  /** Hard link count of a regular file. */
  nlink?: number;
  /** sha256 hex of a regular file's content. */
  sha256?: string;
  /** Target of a symlink. */
  link?: string;
  /** Device number of a device node. */
  rdev?: number;
}

/** What {@link listTree} and {@link digestTree} include. */
export interface TreeOptions {
  /** Include mtimes (default true). Symlink mtimes are never included (not always settable). */
  mtime?: boolean;
  /** Include uid/gid (default true). */
  owner?: boolean;
  /** Include the root directory's own metadata (default false). */
  root?: boolean;
}

/** sha256 hex of a file's content, streamed. */
export async function hashFile(path: string): Promise<string> {
  const h = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(1024 * 1024);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}

function typeOf(st: Deno.FileInfo): TreeEntryType {
  if (st.isSymlink) return "symlink";
  if (st.isFile) return "file";
  if (st.isDirectory) return "dir";
  if (st.isCharDevice) return "char";
  if (st.isBlockDevice) return "block";
  if (st.isFifo) return "fifo";
  return "socket";
}

function compareBytes(a: string, b: string): number {
  // Sort by UTF-8 bytes, like `LC_ALL=C sort`, so the order is the same in every language.
  const ea = new TextEncoder().encode(a);
  const eb = new TextEncoder().encode(b);
  const n = Math.min(ea.length, eb.length);
  for (let i = 0; i < n; i++) if (ea[i] !== eb[i]) return ea[i]! - eb[i]!;
  return ea.length - eb.length;
}

/** Lists a tree (never following symlinks), sorted by path bytes. */
export async function listTree(root: string, options: TreeOptions = {}): Promise<TreeEntry[]> {
  const withMtime = options.mtime ?? true;
  const withOwner = options.owner ?? true;
  const out: TreeEntry[] = [];
  const describe = async (abs: string, rel: string): Promise<TreeEntry> => {
    const st = await Deno.lstat(abs);
    const type = typeOf(st);
    const e: TreeEntry = {
      path: rel,
      type,
      mode: type === "symlink" ? 0 : (st.mode ?? 0) & 0o7777,
    };
    if (withOwner) {
      e.uid = st.uid ?? 0;
      e.gid = st.gid ?? 0;
    }
    if (withMtime && type !== "symlink") e.mtimeMs = st.mtime?.getTime() ?? 0;
    if (type === "file") {
      e.size = st.size;
      e.nlink = st.nlink ?? 1;
      e.sha256 = await hashFile(abs);
    } else if (type === "symlink") {
      e.link = await Deno.readLink(abs);
    } else if (type === "char" || type === "block") {
      e.rdev = st.rdev ?? 0;
    }
    return e;
  };
  const walk = async (abs: string, rel: string): Promise<void> => {
    const names: string[] = [];
    for await (const d of Deno.readDir(abs)) names.push(d.name);
    names.sort(compareBytes);
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      const e = await describe(`${abs}/${name}`, childRel);
      out.push(e);
      if (e.type === "dir") await walk(`${abs}/${name}`, childRel);
    }
  };
  if (options.root) out.push(await describe(root, "."));
  await walk(root, "");
  return out.sort((a, b) => compareBytes(a.path, b.path));
}

/**
 * sha256 over a tree listing (sorted relative paths, type, mode, owner, size, mtime, content
 * hash, link target, device number), as `sha256:<hex>`. Two trees with the same digest are equal
 * in everything {@link TreeOptions} includes.
 */
export async function digestTree(root: string, options: TreeOptions = {}): Promise<string> {
  const h = createHash("sha256");
  for (const e of await listTree(root, options)) h.update(JSON.stringify(e) + "\n");
  return `sha256:${h.digest("hex")}`;
}

/**
 * The AosCore layer "dirhash": for each regular file sorted by relative path, the line
 * `"<sha256hex>  <relpath>\n"`; the sha256 of all lines, as `sha256:<hex>`. Symlinks, dirs and
 * metadata are not covered (that is the upstream definition). Names with a newline are refused.
 */
export async function aosDirDigest(root: string): Promise<string> {
  const h = createHash("sha256");
  for (const e of await listTree(root, { mtime: false, owner: false })) {
    if (e.type !== "file") continue;
    if (e.path.includes("\n")) {
      throw new AosError("invalidArgument", `Cannot digest ${root}: file name with a newline`);
    }
    h.update(`${e.sha256}  ${e.path}\n`);
  }
  return `sha256:${h.digest("hex")}`;
}

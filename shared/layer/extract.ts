/**
 * Safe streaming extraction of OCI layers (tar, optionally gzip) into a directory.
 * @module
 */
import {
  closeSync,
  constants as fsConstants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  lutimesSync,
  openSync,
  write as writeCallback,
  writeSync,
} from "node:fs";
import { AosError, type ErrorCode } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { nullLogger } from "../core/logger.ts";
import { type TarEntry, TarReader } from "./tar_reader.ts";
import { gunzipInWorker } from "./gunzip_worker.ts";

/**
 * What to do with OCI whiteout entries (`.wh.<name>`, `.wh..wh..opq`):
 * - `delete`: apply them onto the target as a lower layer (remove `<name>`, or the previous
 *   content of an opaque dir); the markers themselves are not created.
 * - `overlay`: turn them into overlayfs whiteouts (a char device 0:0 named `<name>`, and the
 *   `trusted.overlay.opaque=y` xattr on an opaque dir), as AosCore does for layer dirs.
 * - `keep`: extract them as the plain files they are.
 */
export type WhiteoutMode = "delete" | "overlay" | "keep";

/** Compression of the input; `auto` sniffs the gzip magic. */
export type LayerInputCompression = "gzip" | "none" | "auto";

/** Bounds that stop decompression bombs early. */
export interface ExtractLimits {
  /** Sum of regular file sizes (bytes). Exceeding it fails with `noMemory`. */
  maxTotalBytes: number;
  /** Number of entries. Exceeding it fails with `outOfRange`. */
  maxEntries: number;
  /** Size of one regular file (bytes). Exceeding it fails with `noMemory`. */
  maxEntrySize: number;
  /** Length of an entry path or link target. Exceeding it fails with `outOfRange`. */
  maxPathLength: number;
}

/** Default bounds: generous for real service layers, finite for bombs. */
export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxTotalBytes: 16 * 1024 ** 3,
  maxEntries: 1_000_000,
  maxEntrySize: 8 * 1024 ** 3,
  maxPathLength: 4096,
};

/** Creates a device node or FIFO (Deno has no mknod). */
export type MknodFn = (
  path: string,
  kind: "char" | "block" | "fifo",
  major: number,
  minor: number,
) => Promise<void>;

/** Sets an extended attribute on a path (Deno has no xattr API). */
export type SetXattrFn = (path: string, name: string, value: string) => Promise<void>;

async function runTool(binary: string, args: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(binary, { args, stdin: "null", stdout: "null", stderr: "piped" })
      .output();
  } catch (err) {
    throw new AosError("failed", `cannot run ${binary}: ${(err as Error).message}`, { cause: err });
  }
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim() || `exit code ${out.code}`;
    throw new AosError("failed", `${binary} ${args.join(" ")} failed: ${why}`, {
      exitCode: out.code,
    });
  }
}

/**
 * Creates a symlink at `path` pointing to `target`. Deno creates symlinks only with unscoped
 * `--allow-read` and `--allow-write`, which a least-privilege process does not have.
 */
export type SymlinkFn = (target: string, path: string) => Promise<void>;

/** The default {@link SymlinkFn}: `Deno.symlink` (needs unscoped read and write). */
export const denoSymlink: SymlinkFn = (target, path) => Deno.symlink(target, path);

/** A {@link SymlinkFn} that runs `ln -s -T` (needs `--allow-run=ln`; paths stay scoped). */
export function commandSymlink(binary = "ln"): SymlinkFn {
  // -T: never treat an existing directory at `path` as the place to put the link.
  return (target, path) => runTool(binary, ["-s", "-T", "--", target, path]);
}

/** A {@link MknodFn} that runs the `mknod` tool (needs `--allow-run=mknod`). */
export function commandMknod(binary = "mknod"): MknodFn {
  // Paths handed in are absolute, so they can never be mistaken for options.
  return (path, kind, major, minor) =>
    runTool(
      binary,
      kind === "fifo"
        ? [path, "p"]
        : [path, kind === "char" ? "c" : "b", String(major), String(minor)],
    );
}

/** A {@link SetXattrFn} that runs `setfattr` (package `attr`; needs `--allow-run=setfattr`). */
export function commandSetXattr(binary = "setfattr"): SetXattrFn {
  return (path, name, value) => runTool(binary, ["-n", name, "-v", value, path]);
}

/** Options of {@link extractLayer}. */
export interface ExtractOptions {
  /** Names the layer in error messages, e.g. its digest. */
  label?: string;
  /** Input compression (default `auto`). */
  compression?: LayerInputCompression;
  /** Whiteout handling (default `delete`). */
  whiteoutMode?: WhiteoutMode;
  /** Create char/block device entries (default false: they fail the extraction). */
  allowDevices?: boolean;
  /** Apply owners from the archive (default: when running as root). */
  chown?: boolean;
  /** Limits; unset fields take {@link DEFAULT_EXTRACT_LIMITS}. */
  limits?: Partial<ExtractLimits>;
  /** Device/FIFO creation (default {@link commandMknod}). */
  mknod?: MknodFn;
  /** xattr setter for opaque dirs in `overlay` mode (default {@link commandSetXattr}). */
  setXattr?: SetXattrFn;
  /** Symlink creation (default {@link denoSymlink}; {@link commandSymlink} for scoped grants). */
  symlink?: SymlinkFn;
  /**
   * Inflate gzip in a Worker thread, so inflating overlaps with creating files (default: off
   * for {@link extractLayer}; for {@link extractLayerFile}, on for files of 1 MiB or more).
   * A worker costs a few milliseconds to start and needs no permission.
   */
  inflateInWorker?: boolean;
  /** Aborts the extraction (`canceled`). */
  signal?: AbortSignal;
  /** Logger. */
  logger?: Logger;
}

/** What an extraction did. */
export interface ExtractResult {
  /** Entries processed (metadata headers not counted). */
  entries: number;
  /** Bytes of regular file content written. */
  fileBytes: number;
  /** Bytes of uncompressed tar stream read. */
  tarBytes: number;
  /** Paths (relative) removed (`delete`) or turned into overlay whiteouts (`overlay`). */
  whiteouts: string[];
  /** Dirs (relative, `.` for the root) made opaque. */
  opaqueDirs: string[];
}

const WRITE_BUFFER = 1024 * 1024;
const MAX_SYMLINK_HOPS = 40;
const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";

function defaultChown(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false; // no --allow-sys=uid: assume not root
  }
}

function codeOf(err: unknown): ErrorCode {
  if (err instanceof AosError) return err.code;
  const errno = (err as { code?: unknown } | null)?.code;
  if (err instanceof Deno.errors.NotFound || errno === "ENOENT") return "notFound";
  if (err instanceof Deno.errors.AlreadyExists) return "alreadyExist";
  if (err instanceof Error && /No space left/i.test(err.message)) return "noMemory";
  return "failed";
}

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

function writeFd(fd: number, data: Uint8Array, off: number): Promise<number> {
  return new Promise((resolve, reject) =>
    writeCallback(
      fd,
      data,
      off,
      data.length - off,
      null,
      (err, n) => err ? reject(err) : resolve(n),
    )
  );
}

async function writeAll(fd: number, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await writeFd(fd, data, off);
}

/** O_CREAT|O_EXCL never follows a final-component symlink; O_NOFOLLOW says so twice. */
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL |
  fsConstants.O_NOFOLLOW;

function isExists(err: unknown): boolean {
  return err instanceof Deno.errors.AlreadyExists ||
    (err as { code?: unknown } | null)?.code === "EEXIST";
}

/**
 * Splits an archive path into safe components. Absolute paths and `..` components are
 * rejected (not stripped): a layer that contains them is malformed or hostile.
 */
export function splitEntryPath(path: string): string[] {
  if (path.includes("\0")) throw new AosError("invalidArgument", "path contains a NUL byte");
  if (path.startsWith("/")) throw new AosError("invalidArgument", "absolute path is not allowed");
  const parts: string[] = [];
  for (const p of path.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") throw new AosError("invalidArgument", "path with '..' escapes the target");
    parts.push(p);
  }
  return parts;
}

class Extractor {
  readonly #root: string;
  readonly #opts: ExtractOptions;
  readonly #limits: ExtractLimits;
  readonly #chown: boolean;
  readonly #whiteoutMode: WhiteoutMode;
  readonly #mknod: MknodFn;
  readonly #setXattr: SetXattrFn;
  readonly #symlink: SymlinkFn;
  readonly #buf = new Uint8Array(WRITE_BUFFER);
  /** Relative paths verified to be real directories (every component, no symlink). */
  readonly #dirs = new Set<string>([""]);
  /** Relative paths created by this layer (whiteouts only hide lower content). */
  readonly #created = new Set<string>();
  readonly #deferredDirs = new Map<string, TarEntry>();
  /** Body bytes of all entries so far (skipped bodies too: they are read all the same). */
  #admitted = 0;
  readonly result: ExtractResult = {
    entries: 0,
    fileBytes: 0,
    tarBytes: 0,
    whiteouts: [],
    opaqueDirs: [],
  };

  constructor(root: string, opts: ExtractOptions) {
    this.#root = root;
    this.#opts = opts;
    this.#limits = { ...DEFAULT_EXTRACT_LIMITS, ...opts.limits };
    this.#chown = opts.chown ?? defaultChown();
    this.#whiteoutMode = opts.whiteoutMode ?? "delete";
    this.#mknod = opts.mknod ?? commandMknod();
    this.#setXattr = opts.setXattr ?? commandSetXattr();
    this.#symlink = opts.symlink ?? denoSymlink;
  }

  get limits(): ExtractLimits {
    return this.#limits;
  }

  #abs(rel: string): string {
    return rel === "" ? this.#root : `${this.#root}/${rel}`;
  }

  /**
   * Resolves parent components to a real directory inside the root, following symlinks only
   * when they stay inside (absolute or climbing targets are an escape). Missing directories
   * are created when `create`, else `undefined` is returned.
   */
  #resolveDir(parts: string[], create: boolean): string[] | undefined {
    const logical = parts.join("/");
    if (this.#dirs.has(logical)) return parts.slice();
    const real: string[] = [];
    const queue = parts.slice();
    let hops = 0;
    while (queue.length > 0) {
      const c = queue.shift()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        if (real.length === 0) {
          throw new AosError("invalidArgument", "path escapes the target through a symlink");
        }
        real.pop();
        continue;
      }
      real.push(c);
      const rel = real.join("/");
      if (this.#dirs.has(rel)) continue;
      const abs = this.#abs(rel);
      const st = lstatOrUndefined(abs);
      if (st === undefined) {
        if (!create) return undefined;
        Deno.mkdirSync(abs, { mode: 0o755 });
        this.#created.add(rel);
      } else if (st.isSymlink) {
        if (++hops > MAX_SYMLINK_HOPS) {
          throw new AosError("invalidArgument", "too many levels of symlinks");
        }
        const target = Deno.readLinkSync(abs);
        if (target.startsWith("/")) {
          throw new AosError(
            "invalidArgument",
            `path passes through symlink "${rel}" -> "${target}" which points outside the target`,
          );
        }
        real.pop();
        // Climbing above the root is caught by the ".." check above.
        const depth = real.length;
        const ups = target.split("/").reduce((n, p) => {
          if (n < 0) return n;
          return p === ".." ? n - 1 : p === "" || p === "." ? n : n + 1;
        }, depth);
        if (ups < 0) {
          throw new AosError(
            "invalidArgument",
            `path passes through symlink "${rel}" -> "${target}" which points outside the target`,
          );
        }
        queue.unshift(...target.split("/"));
        continue;
      } else if (!st.isDirectory) {
        throw new AosError("invalidArgument", `parent "${rel}" is not a directory`);
      }
      this.#dirs.add(rel);
    }
    return real;
  }

  /** Clears the way for a new entry; returns true when an existing dir is kept for a dir entry. */
  async #prepare(rel: string, keepDir: boolean): Promise<boolean> {
    const st = lstatOrUndefined(this.#abs(rel));
    if (st === undefined) return false;
    if (st.isDirectory && keepDir) return true;
    await Deno.remove(this.#abs(rel), { recursive: st.isDirectory });
    if (st.isDirectory) this.#dirs.clear(), this.#dirs.add("");
    return false;
  }

  /**
   * Owner, mode and times. Synchronous on purpose: each call is a few microseconds, while an
   * async fs op costs a thread-pool round trip that, per small file, costs more than the work.
   */
  #meta(abs: string, e: TarEntry, symlink: boolean): void {
    if (this.#chown) lchownSync(abs, e.uid, e.gid);
    if (symlink) {
      try {
        lutimesSync(abs, e.mtime, e.mtime);
      } catch {
        // Not every platform can set a symlink's times; the link works without them.
      }
      return;
    }
    // chmod after chown: chown clears setuid/setgid bits.
    Deno.chmodSync(abs, e.mode);
    Deno.utimeSync(abs, e.mtime, e.mtime);
  }

  /** Runs a create call; when the path is taken, clears it (never following it) and retries. */
  async #create<T>(rel: string, create: () => T): Promise<T> {
    try {
      return create();
    } catch (err) {
      if (!isExists(err)) throw err;
    }
    await this.#prepare(rel, false);
    return create();
  }

  #admit(e: TarEntry): void {
    const l = this.#limits;
    if (++this.result.entries > l.maxEntries) {
      throw new AosError(
        "outOfRange",
        `more than ${l.maxEntries} entries (possible decompression bomb), stopped`,
      );
    }
    if (e.size > l.maxEntrySize) {
      throw new AosError(
        "noMemory",
        `entry of ${e.size} bytes exceeds the single-entry limit of ${l.maxEntrySize} (possible decompression bomb), stopped`,
      );
    }
    if (this.#admitted + e.size > l.maxTotalBytes) {
      throw new AosError(
        "noMemory",
        `extracting ${e.size} more bytes after ${this.#admitted} exceeds the total limit of ${l.maxTotalBytes} (possible decompression bomb), stopped`,
      );
    }
    this.#admitted += e.size;
  }

  async entry(e: TarEntry, reader: TarReader): Promise<void> {
    this.#admit(e);
    const parts = splitEntryPath(e.path);
    if (parts.length === 0) {
      if (e.type !== "directory") {
        throw new AosError("invalidArgument", `a ${e.type} entry cannot replace the target root`);
      }
      if (this.#chown) lchownSync(this.#root, e.uid, e.gid);
      this.#deferredDirs.set("", e);
      return;
    }
    const base = parts[parts.length - 1]!;
    if (this.#whiteoutMode !== "keep" && base.startsWith(WHITEOUT_PREFIX)) {
      return await this.#whiteout(parts, base);
    }
    if ((e.type === "charDevice" || e.type === "blockDevice") && !this.#opts.allowDevices) {
      throw new AosError("invalidArgument", "device nodes are not allowed (allowDevices is off)");
    }
    const parent = this.#resolveDir(parts.slice(0, -1), true);
    const rel = [...parent!, base].join("/");
    const abs = this.#abs(rel);
    switch (e.type) {
      case "file": {
        // An existing entry (even a symlink) makes the exclusive create fail: unlink, retry.
        // fd-based calls from here: no path walk per call, about 40% faster per small file.
        const fd = await this.#create(rel, () => openSync(abs, CREATE_FLAGS, 0o600));
        try {
          await this.#writeBody(fd, reader, e.size);
          if (this.#chown) fchownSync(fd, e.uid, e.gid);
          fchmodSync(fd, e.mode); // after chown, which clears setuid/setgid
          futimesSync(fd, e.mtime, e.mtime);
        } finally {
          closeSync(fd);
        }
        this.result.fileBytes += e.size;
        break;
      }
      case "directory": {
        try {
          Deno.mkdirSync(abs, { mode: 0o700 });
        } catch (err) {
          if (!isExists(err)) throw err;
          if (!(await this.#prepare(rel, true))) Deno.mkdirSync(abs, { mode: 0o700 });
        }
        if (this.#chown) lchownSync(abs, e.uid, e.gid);
        this.#dirs.add(rel);
        // Mode and mtime last: children change the mtime, and a read-only mode would block them.
        this.#deferredDirs.set(rel, e);
        break;
      }
      case "symlink": {
        if (e.linkname === "") {
          throw new AosError("invalidArgument", "symlink with an empty target");
        }
        if (e.linkname.includes("\0")) {
          throw new AosError("invalidArgument", "symlink target contains NUL");
        }
        // Whatever is at the path goes first (never followed), then the link is created.
        await this.#prepare(rel, false);
        await this.#symlink(e.linkname, abs);
        this.#meta(abs, e, true);
        break;
      }
      case "hardlink": {
        let targetParts: string[];
        try {
          targetParts = splitEntryPath(e.linkname);
        } catch (err) {
          throw new AosError(
            "invalidArgument",
            `hardlink target "${e.linkname}" escapes the target: ${(err as Error).message}`,
          );
        }
        if (targetParts.length === 0) {
          throw new AosError("invalidArgument", "hardlink to the target root");
        }
        const tparent = this.#resolveDir(targetParts.slice(0, -1), false);
        const trel = tparent && [...tparent, targetParts[targetParts.length - 1]!].join("/");
        const tst = trel === undefined ? undefined : lstatOrUndefined(this.#abs(trel));
        if (trel === undefined || tst === undefined) {
          throw new AosError("notFound", `hardlink target "${e.linkname}" does not exist`);
        }
        if (tst.isDirectory) {
          throw new AosError("invalidArgument", `hardlink target "${e.linkname}" is a directory`);
        }
        if (trel === rel) break;
        await this.#create(rel, () => Deno.linkSync(this.#abs(trel), abs));
        break;
      }
      case "charDevice":
      case "blockDevice":
      case "fifo": {
        await this.#prepare(rel, false);
        const kind = e.type === "fifo" ? "fifo" : e.type === "charDevice" ? "char" : "block";
        await this.#mknod(abs, kind, e.devmajor, e.devminor);
        this.#meta(abs, e, false);
        break;
      }
    }
    this.#created.add(rel);
  }

  async #writeBody(fd: number, reader: TarReader, size: number): Promise<void> {
    const buf = this.#buf;
    const signal = this.#opts.signal;
    if (size <= buf.length) {
      // Small file (the common case): the body in one piece, written with one synchronous call.
      const data = await reader.bodyBytes();
      for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
      return;
    }
    // Large file: async writes, so a slow disk does not stall the event loop.
    let fill = 0;
    for await (const s of reader.body()) {
      if (signal?.aborted) throw new AosError("canceled", "extraction canceled");
      if (fill + s.length > buf.length) {
        await writeAll(fd, buf.subarray(0, fill));
        fill = 0;
      }
      if (s.length >= buf.length / 2) {
        await writeAll(fd, s);
      } else {
        buf.set(s, fill);
        fill += s.length;
      }
    }
    if (fill > 0) await writeAll(fd, buf.subarray(0, fill));
  }

  async #whiteout(parts: string[], base: string): Promise<void> {
    const parentParts = parts.slice(0, -1);
    const overlay = this.#whiteoutMode === "overlay";
    if (base === OPAQUE_MARKER) {
      const dir = (this.#resolveDir(parentParts, true))!.join("/");
      if (overlay) {
        await this.#setXattr(this.#abs(dir), "trusted.overlay.opaque", "y");
      } else {
        await this.#prune(dir);
      }
      this.result.opaqueDirs.push(dir || ".");
      return;
    }
    const name = base.slice(WHITEOUT_PREFIX.length);
    if (name === "" || name === "." || name === "..") {
      throw new AosError("invalidArgument", `malformed whiteout "${base}"`);
    }
    const parent = this.#resolveDir(parentParts, overlay);
    if (parent === undefined) return; // nothing below to hide
    const rel = [...parent, name].join("/");
    if (overlay) {
      await this.#prepare(rel, false);
      await this.#mknod(this.#abs(rel), "char", 0, 0);
      if (this.#chown) lchownSync(this.#abs(rel), 0, 0);
      this.#created.add(rel);
    } else {
      // A whiteout only hides lower layers, never what this layer itself wrote.
      if (this.#created.has(rel)) return;
      const st = lstatOrUndefined(this.#abs(rel));
      if (st === undefined) return;
      await Deno.remove(this.#abs(rel), { recursive: st.isDirectory });
      if (st.isDirectory) this.#dirs.clear(), this.#dirs.add("");
    }
    this.result.whiteouts.push(rel);
  }

  /** Removes everything below `dir` that this layer did not create. */
  async #prune(dir: string): Promise<void> {
    const children: Deno.DirEntry[] = [];
    for await (const d of Deno.readDir(this.#abs(dir))) children.push(d);
    for (const d of children) {
      const rel = dir === "" ? d.name : `${dir}/${d.name}`;
      if (!this.#created.has(rel)) {
        await Deno.remove(this.#abs(rel), { recursive: d.isDirectory });
        if (d.isDirectory) this.#dirs.clear(), this.#dirs.add("");
      } else if (d.isDirectory && !d.isSymlink) {
        await this.#prune(rel);
      }
    }
  }

  finish(): void {
    for (const [rel, e] of this.#deferredDirs) {
      const st = lstatOrUndefined(this.#abs(rel));
      // Removed or replaced (possibly by a symlink) later in the layer: nothing to apply.
      if (st === undefined || !st.isDirectory) continue;
      Deno.chmodSync(this.#abs(rel), e.mode);
      Deno.utimeSync(this.#abs(rel), e.mtime, e.mtime);
    }
  }
}

async function* prepend(first: Uint8Array, rest: ReadableStreamDefaultReader<Uint8Array>) {
  try {
    yield first;
    for (;;) {
      const r = await rest.read();
      if (r.done) return;
      yield r.value;
    }
  } finally {
    // Early exit (error or cancel): stop the source too.
    await rest.cancel().catch(() => {});
  }
}

async function decompressed(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  compression: LayerInputCompression,
  inWorker: boolean,
  takeChunks: boolean,
): Promise<ReadableStream<Uint8Array>> {
  let stream = source instanceof ReadableStream ? source : ReadableStream.from(source);
  if (compression === "auto") {
    const reader = stream.getReader();
    const first = await reader.read();
    if (first.done) {
      reader.releaseLock();
      return new ReadableStream({ start: (c) => c.close() });
    }
    compression = first.value[0] === 0x1f && first.value[1] === 0x8b ? "gzip" : "none";
    stream = ReadableStream.from(prepend(first.value, reader));
  }
  if (compression === "gzip" && inWorker) {
    try {
      return gunzipInWorker(stream, takeChunks);
    } catch {
      // No worker (a runtime without them): inflate in this thread instead.
    }
  }
  if (compression === "gzip") {
    return stream.pipeThrough(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    );
  }
  return stream;
}

/**
 * Extracts a layer stream into `target` (which must exist). The layer is never held in memory:
 * headers are parsed and bodies written as the bytes arrive.
 *
 * Confinement: absolute paths and `..` are rejected; symlinks inside the target are followed only
 * when they resolve inside it; files are created with O_EXCL after removing what was there, so a
 * final-component symlink is never written through; hardlink targets must resolve inside.
 * On error nothing outside `target` has been touched, and `target` holds a partial extraction:
 * the caller decides whether to {@link removeExtracted} it. Errors name the entry and the reason.
 */
export function extractLayer(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  return extract(source, target, options, false);
}

/** {@link extractLayer}; `takeChunks`: the source's chunks are ours to transfer (detach). */
async function extract(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  target: string,
  options: ExtractOptions,
  takeChunks: boolean,
): Promise<ExtractResult> {
  const label = options.label ?? target;
  const log = options.logger ?? nullLogger;
  let root: string;
  try {
    root = await Deno.realPath(target);
    if (!(await Deno.stat(root)).isDirectory) throw new Error("not a directory");
  } catch (err) {
    if (!(source instanceof ReadableStream)) {
      await (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]().return?.();
    } else await source.cancel().catch(() => {});
    throw new AosError(
      "notFound",
      `Cannot extract layer ${label}: target ${target}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const x = new Extractor(root, options);
  const stream = await decompressed(
    source,
    options.compression ?? "auto",
    options.inflateInWorker ?? false,
    takeChunks,
  );
  const reader = new TarReader(stream, { maxPathLength: x.limits.maxPathLength });
  let current: TarEntry | undefined;
  let previous: string | undefined;
  try {
    for (;;) {
      if (options.signal?.aborted) throw new AosError("canceled", "extraction canceled");
      current = undefined;
      const e = await reader.next();
      if (e === null) break;
      current = e;
      await x.entry(e, reader);
      previous = e.path;
    }
    current = undefined;
    x.finish();
  } catch (err) {
    await reader.close().catch(() => {});
    const where = current
      ? `entry "${current.path}"`
      : previous === undefined
      ? `at tar offset ${reader.offset}`
      : `after entry "${previous}"`;
    const why = err instanceof AosError || current
      ? (err as Error).message
      : `cannot read the layer stream: ${(err as Error).message}`;
    const code = err instanceof AosError || current ? codeOf(err) : "invalidArgument";
    throw new AosError(code, `Cannot extract layer ${label}: ${where}: ${why}`, { cause: err });
  }
  x.result.tarBytes = reader.offset;
  log.debug("layer extracted", {
    layer: label,
    entries: x.result.entries,
    bytes: x.result.fileBytes,
  });
  return x.result;
}

/** Files this large are inflated in a Worker by default: below, starting one costs more. */
const WORKER_MIN_FILE = 1024 * 1024;
/** Read size for a file inflated in a Worker: one transfer per MiB. */
const FILE_CHUNK = 1024 * 1024;

/** The file's bytes in whole `size` chunks (each its own buffer); closes the file when done. */
function fileChunks(file: Deno.FsFile, size: number): ReadableStream<Uint8Array> {
  let open = true;
  const close = () => {
    if (open) open = false, file.close();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buf = new Uint8Array(size);
      let fill = 0;
      try {
        while (fill < size) {
          const n = await file.read(buf.subarray(fill));
          if (n === null) break;
          fill += n;
        }
      } catch (err) {
        close();
        throw err;
      }
      if (fill > 0) controller.enqueue(fill === size ? buf : buf.subarray(0, fill));
      if (fill < size) {
        close();
        controller.close();
      }
    },
    cancel: close,
  }, { highWaterMark: 0 });
}

/**
 * Extracts a layer file (see {@link extractLayer}). A gzip file of 1 MiB or more is inflated in
 * a Worker unless {@link ExtractOptions.inflateInWorker} says otherwise.
 */
export async function extractLayerFile(
  path: string,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  let file: Deno.FsFile;
  let size: number;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    throw new AosError(
      codeOf(err),
      `Cannot extract layer ${options.label ?? path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  try {
    size = (await file.stat()).size;
  } catch (err) {
    file.close();
    throw new AosError(
      codeOf(err),
      `Cannot extract layer ${options.label ?? path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const inWorker = options.inflateInWorker ?? size >= WORKER_MIN_FILE;
  // Either readable closes the file when it ends or is cancelled.
  const source = inWorker ? fileChunks(file, FILE_CHUNK) : file.readable;
  return await extract(source, target, { ...options, inflateInWorker: inWorker }, inWorker);
}

/**
 * The uncompressed bytes of a layer file, inflated as {@link extractFile} does it: in a Worker
 * for files of 1 MiB or more (in this thread when no Worker can start), else in this thread.
 * For a first pass over a layer (e.g. its diff digest) that must not hold the event loop.
 */
export async function openLayerFile(
  path: string,
  compression: LayerInputCompression,
): Promise<ReadableStream<Uint8Array>> {
  const file = await Deno.open(path, { read: true });
  let size: number;
  try {
    size = (await file.stat()).size;
  } catch (err) {
    file.close();
    throw err;
  }
  const inWorker = size >= WORKER_MIN_FILE;
  // Either readable closes the file when it ends or is cancelled.
  const source = inWorker ? fileChunks(file, FILE_CHUNK) : file.readable;
  return await decompressed(source, compression, inWorker, inWorker);
}

/**
 * Removes a (partially) extracted target and everything below it, never following symlinks.
 * A missing target is fine.
 */
export async function removeExtracted(target: string): Promise<void> {
  try {
    await Deno.remove(target, { recursive: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw new AosError(
      "failed",
      `Cannot remove extracted layer ${target}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

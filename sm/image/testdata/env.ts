/**
 * A test environment: a CM blob store served by a real file server, an SM working dir with its
 * database, a downloader and a space registry, all released on dispose.
 * @module
 */
import { join } from "node:path";
import type { Database } from "@aos/shared/db";
import { Downloader } from "@aos/shared/download";
import { type FileServer, startFileServer } from "@aos/shared/fileserver";
import { createSpaceRegistry, type SpaceRegistry } from "@aos/shared/space";
import { openSmDatabase } from "../../db.ts";
import {
  createImageManager,
  type ImageEvent,
  type ImageManager,
  type ImageManagerOptions,
} from "../image_manager.ts";
import { BlobStore, FileServerBlobSource } from "./oci.ts";

/** A controllable clock. */
export class TestClock {
  constructor(public t = 1_700_000_000_000) {}
  now(): number {
    return this.t;
  }
}

/** Everything a test needs. */
export interface TestEnv extends AsyncDisposable {
  dir: string;
  workingDir: string;
  imagePath: string;
  store: BlobStore;
  server: FileServer;
  source: FileServerBlobSource;
  db: Database;
  downloader: Downloader;
  space: SpaceRegistry;
  clock: TestClock;
  events: ImageEvent[];
  /** Opens an image manager on this environment (closed with the env). */
  open(options?: Partial<ImageManagerOptions>): Promise<ImageManager>;
}

/** Creates a test environment; `imagePath` may point elsewhere (a tmpfs). */
export async function testEnv(options: { imagePath?: string } = {}): Promise<TestEnv> {
  const dir = await Deno.makeTempDir({ prefix: "sm_image_" });
  const workingDir = join(dir, "sm");
  const cmRoot = join(dir, "cm", "blobs");
  await Deno.mkdir(workingDir, { recursive: true });
  await Deno.mkdir(cmRoot, { recursive: true });
  const store = new BlobStore(cmRoot);
  const server = await startFileServer({ root: cmRoot, port: 0 });
  const source = new FileServerBlobSource(server, store);
  const db = openSmDatabase({ workingDir });
  const downloader = new Downloader({ sleep: () => Promise.resolve(), tries: 2 });
  const space = createSpaceRegistry();
  const clock = new TestClock();
  const events: ImageEvent[] = [];
  const managers: ImageManager[] = [];
  const imagePath = options.imagePath ?? join(workingDir, "images");
  return {
    dir,
    workingDir,
    imagePath,
    store,
    server,
    source,
    db,
    downloader,
    space,
    clock,
    events,
    async open(extra = {}) {
      const m = await createImageManager({
        imagePath,
        db,
        downloader,
        blobSource: source,
        space,
        clock,
        removeOutdatedPeriodMs: 0,
        onEvent: (e) => events.push(e),
        ...extra,
      });
      managers.push(m);
      return m;
    },
    async [Symbol.asyncDispose]() {
      for (const m of managers.reverse()) await m[Symbol.asyncDispose]();
      await downloader[Symbol.asyncDispose]();
      db.close();
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Relative paths of every entry under `root` (sorted), `[]` when absent. */
export async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    for await (const e of Deno.readDir(d)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory) await walk(join(d, e.name), r);
    }
  };
  try {
    await walk(root, "");
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

/** Like {@link listFiles}, without directories. */
export async function listRegular(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const rel of await listFiles(root)) {
    if (!(await Deno.lstat(join(root, rel))).isDirectory) out.push(rel);
  }
  return out;
}

async function run(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A size-limited tmpfs on a fresh temp dir (needs root), unmounted and removed on dispose. */
export async function tmpfs(size: string): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "sm_image_tmpfs_" });
  try {
    await run("mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir);
  } catch (err) {
    await Deno.remove(dir);
    throw err;
  }
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await run("umount", dir);
      await Deno.remove(dir);
    },
  };
}

/**
 * Layer pipeline benchmark: download (HTTP on 127.0.0.1, streamed to a file while hashing) +
 * sha256 verification + extraction with our extractor, versus the floor of `sha256sum` +
 * GNU `tar -xzf` on the same file. Prints MB/s of both and the ratio (target ≥ 0.7).
 *
 * Run: `deno run -A bench/layer_pipeline.ts [--runs N] [--scale F] [--layer FILE] [--save FILE]`
 * (`--scale 0.25` builds a quarter-size layer for a quick look; `--save` keeps the built layer
 * and `--layer` reuses one instead of building it; `--dir` picks the scratch directory;
 * `--inflate thread|worker` forces where gzip is inflated, default: the extractor's choice).
 *
 * Each timed phase starts after `sync`, so writeback of the previous phase does not land on it.
 * The machine may be shared: the best of N runs of each side is the figure to read.
 * @module
 */
import { createHash } from "node:crypto";
import { Downloader } from "../shared/download/mod.ts";
import { extractLayerFile } from "../shared/layer/mod.ts";
import { arg } from "./_support.ts";

const RUNS = Number(arg("runs", "2"));
const SCALE = Number(arg("scale", "1"));
const MB = 1e6;

function strArg(name: string): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

/** Deterministic pseudo-random bytes (xorshift32): fast, incompressible. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >> 2);
  let x = seed | 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return out;
}

/** Text-like data: words drawn from a small vocabulary compress about 3-4x, like source/config. */
function textBytes(n: number, seed: number): Uint8Array {
  const vocab = ("the of and to in is for on that with as config service node layer value " +
    "return function const let import export error status instance digest update alert " +
    "monitoring network storage state runtime 0 1 2 3 4 5 6 7 8 9 {} [] () ; : = , . /")
    .split(" ");
  const enc = new TextEncoder();
  const parts: string[] = [];
  let len = 0;
  let x = seed | 1;
  while (len < n) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const w = vocab[(x >>> 0) % vocab.length]!;
    const sep = (x & 15) === 0 ? "\n" : " ";
    parts.push(w, sep);
    len += w.length + 1;
  }
  return enc.encode(parts.join("")).subarray(0, n);
}

async function run(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return (performance.now() - t0) / 1000;
}

async function buildLayer(dir: string): Promise<{ path: string; size: number; rawBytes: number }> {
  const src = `${dir}/src`;
  let raw = 0;
  // Some large files: half incompressible (binaries, media), half text-like.
  const bigCount = Math.max(1, Math.round(12 * SCALE));
  await Deno.mkdir(`${src}/opt/blobs`, { recursive: true });
  const text = textBytes(8 * 1024 * 1024, 7);
  for (let i = 0; i < bigCount; i++) {
    const f = await Deno.open(`${src}/opt/blobs/big${i}.bin`, { write: true, create: true });
    for (let b = 0; b < 16; b++) {
      const block = new Uint8Array(1024 * 1024);
      block.set(randomBytes(512 * 1024, i * 131 + b + 1));
      block.set(
        text.subarray((b * 4099) % (7 * 1024 * 1024), (b * 4099) % (7 * 1024 * 1024) + 512 * 1024),
        512 * 1024,
      );
      await f.write(block);
    }
    f.close();
    raw += 16 * 1024 * 1024;
  }
  // Many small files in a nested tree.
  const smallCount = Math.round(30_000 * SCALE);
  for (let i = 0; i < smallCount; i++) {
    const d = `${src}/usr/share/pkg${i % 97}/sub${i % 13}`;
    if (i < 97 * 13) await Deno.mkdir(d, { recursive: true });
    const size = 256 + ((i * 2654435761) >>> 0) % 8192;
    const off = ((i * 40503) >>> 0) % (text.length - size);
    await Deno.writeFile(`${d}/file${i}.txt`, text.subarray(off, off + size));
    raw += size;
  }
  for (let i = 0; i < 200; i++) await Deno.symlink(`../share/pkg${i % 97}`, `${src}/usr/link${i}`);
  const path = `${dir}/layer.tar.gz`;
  await run("tar", ["-czf", path, "-C", src, "."]);
  await Deno.remove(src, { recursive: true });
  return { path, size: (await Deno.stat(path)).size, rawBytes: raw };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  using f = await Deno.open(path);
  const buf = new Uint8Array(1 << 20);
  for (;;) {
    const n = await f.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}

const inflate = strArg("inflate");
if (inflate !== undefined && inflate !== "thread" && inflate !== "worker") {
  throw new Error("--inflate takes thread or worker");
}
const dirArg = strArg("dir");
const work = await Deno.makeTempDir({ prefix: "layer_bench_", ...(dirArg ? { dir: dirArg } : {}) });
try {
  const tBuild = performance.now();
  const given = strArg("layer");
  const layer = given
    ? { path: given, size: (await Deno.stat(given)).size, rawBytes: NaN }
    : await buildLayer(work);
  const save = strArg("save");
  if (save && !given) await Deno.copyFile(layer.path, save);
  const digest = `sha256:${await sha256File(layer.path)}`;
  console.log(
    given
      ? `layer: ${(layer.size / MB).toFixed(1)} MB gzip (${given})`
      : `layer: ${(layer.size / MB).toFixed(1)} MB gzip, ${
        (layer.rawBytes / MB).toFixed(1)
      } MB of file content, built in ${((performance.now() - tBuild) / 1000).toFixed(1)} s`,
  );

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    const f = await Deno.open(layer.path);
    return new Response(f.readable, {
      headers: { "content-length": String(layer.size), "content-type": "application/octet-stream" },
    });
  });
  const url = `http://127.0.0.1:${server.addr.port}/blob`;
  await using downloader = new Downloader();

  const rows: { ours: number; floor: number; dl: number; ex: number; sum: number; tar: number }[] =
    [];
  for (let r = 0; r < RUNS; r++) {
    // Trees stay until the end: on ext4 without a journal, creating files right after deleting
    // many is several times slower (the inode allocator skips inodes freed in the last minutes),
    // which would land on whichever side runs next.
    const blobs = `${work}/blobs${r}`;
    const ours = `${work}/ours${r}`;
    const ref = `${work}/ref${r}`;
    await Deno.mkdir(ours);
    await Deno.mkdir(ref);
    let t0 = 0, t1 = 0, t2 = 0, sum = 0, tarS = 0;
    // Ours: download + verify + extract.
    const measureOurs = async () => {
      await run("sync", []);
      t0 = performance.now();
      const res = await downloader.download({ digest, url, dir: blobs, size: layer.size });
      t1 = performance.now();
      await extractLayerFile(res.path, ours, {
        label: digest,
        ...(inflate ? { inflateInWorker: inflate === "worker" } : {}),
      });
      t2 = performance.now();
    };
    // Floor: sha256sum + tar -xzf on the same file.
    const measureFloor = async () => {
      await run("sync", []);
      sum = await run("sha256sum", [layer.path]);
      tarS = await run("tar", ["-xzf", layer.path, "-C", ref]);
    };
    // Alternate who goes first, so neither side always inherits the other's writeback.
    if (r % 2 === 0) {
      await measureOurs();
      await measureFloor();
    } else {
      await measureFloor();
      await measureOurs();
    }

    const row = {
      dl: (t1 - t0) / 1000,
      ex: (t2 - t1) / 1000,
      ours: (t2 - t0) / 1000,
      sum,
      tar: tarS,
      floor: sum + tarS,
    };
    rows.push(row);
    const mbps = (s: number) => (layer.size / MB / s).toFixed(1);
    console.log(
      `run ${r + 1}: ours ${row.ours.toFixed(2)} s = ${mbps(row.ours)} MB/s ` +
        `(download+sha256 ${row.dl.toFixed(2)} s, extract ${row.ex.toFixed(2)} s); ` +
        `floor ${row.floor.toFixed(2)} s = ${mbps(row.floor)} MB/s ` +
        `(sha256sum ${row.sum.toFixed(2)} s, tar -xzf ${row.tar.toFixed(2)} s); ` +
        `ratio ${(row.floor / row.ours).toFixed(2)}; load ${Deno.loadavg()[0]!.toFixed(2)}`,
    );
  }
  const best = (k: keyof typeof rows[number]) => Math.min(...rows.map((r) => r[k]));
  console.log(
    `best: ours ${(layer.size / MB / best("ours")).toFixed(1)} MB/s, floor ${
      (layer.size / MB / best("floor")).toFixed(1)
    } MB/s, ` +
      `ratio ${(best("floor") / best("ours")).toFixed(2)} (throughput ours/floor; target >= 0.7)`,
  );
  await server.shutdown();
} finally {
  await Deno.remove(work, { recursive: true });
}

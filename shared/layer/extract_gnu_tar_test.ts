import assert from "node:assert/strict";
import { extractLayerFile } from "./extract.ts";
import { digestTree, listTree, type TreeOptions } from "./dir_digest.ts";

const isRoot = Deno.uid() === 0;

async function run(cmd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const LONG_DIR = "very-long-directory-name-".repeat(3) + "/nested-" + "z".repeat(60);

/** A busybox-like rootfs: dirs, files, symlinks, a hardlink, special modes, a long path, a fifo. */
async function buildTree(src: string): Promise<void> {
  for (const d of ["bin", "sbin", "etc/init.d", "usr/lib", "var/empty", "tmp", LONG_DIR]) {
    await Deno.mkdir(`${src}/${d}`, { recursive: true });
  }
  const busybox = new Uint8Array(300_000).map((_, i) => (i * 31 + (i >> 7)) & 0xff);
  await Deno.writeFile(`${src}/bin/busybox`, busybox);
  await Deno.chmod(`${src}/bin/busybox`, 0o755);
  for (const app of ["sh", "ls", "cat"]) await Deno.symlink("busybox", `${src}/bin/${app}`);
  await Deno.symlink("../bin/busybox", `${src}/sbin/init`);
  await Deno.symlink("/usr/lib", `${src}/lib`); // absolute links are fine as entries
  await Deno.link(`${src}/bin/busybox`, `${src}/sbin/busybox-hard`);
  await Deno.writeTextFile(`${src}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  await Deno.writeTextFile(`${src}/etc/shadow`, "root:*:1::::::\n");
  await Deno.chmod(`${src}/etc/shadow`, 0o600);
  await Deno.writeTextFile(`${src}/bin/su`, "#!/bin/sh\n");
  await Deno.chmod(`${src}/bin/su`, 0o4755);
  await Deno.writeTextFile(`${src}/etc/init.d/rcS`, "#!/bin/sh\nmount -a\n");
  await Deno.chmod(`${src}/etc/init.d/rcS`, 0o750);
  await Deno.writeTextFile(`${src}/${LONG_DIR}/${"f".repeat(80)}.txt`, "deep\n");
  await Deno.writeFile(`${src}/usr/lib/empty.so`, new Uint8Array(0));
  await Deno.chmod(`${src}/tmp`, 0o1777);
  await Deno.chmod(`${src}/var/empty`, 0o555);
  await run("mknod", `${src}/etc/initctl`, "p");
  if (isRoot) {
    await Deno.chown(`${src}/etc/shadow`, 0, 42);
    await Deno.chown(`${src}/var/empty`, 1234, 5678);
    await Deno.chown(`${src}/bin/su`, 0, 0);
    await Deno.chmod(`${src}/bin/su`, 0o4755); // chown cleared setuid
  }
  await run("touch", "-h", "-d", "2021-03-04 05:06:07", `${src}/bin/busybox`, `${src}/bin/sh`);
  await run("touch", "-d", "2020-01-02 03:04:05", `${src}/etc/passwd`, `${src}/${LONG_DIR}`);
  await run("touch", "-d", "2019-12-31 23:59:59", `${src}/etc`);
}

const COMPARE: TreeOptions = { mtime: true, owner: isRoot };

for (const format of ["gnu", "pax", "ustar"] as const) {
  Deno.test(`extraction equals GNU tar -x (${format} format)`, async () => {
    const base = await Deno.makeTempDir({ prefix: "layer_gnu_" });
    try {
      await Deno.mkdir(`${base}/src`);
      await buildTree(`${base}/src`);
      await run(
        "tar",
        "-czf",
        `${base}/layer.tar.gz`,
        `--format=${format}`,
        "-C",
        `${base}/src`,
        ".",
      );
      // The long path really uses each format's own long-name mechanism.
      const raw = new TextDecoder("latin1").decode(
        new Uint8Array(
          await new Response(
            (await Deno.open(`${base}/layer.tar.gz`)).readable.pipeThrough(
              new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
            ),
          ).arrayBuffer(),
        ),
      );
      const marker =
        { gnu: "././@LongLink", pax: ` path=./${LONG_DIR}`, ustar: "ustar\u000000" }[format];
      assert.ok(raw.includes(marker), `archive lacks ${marker}`);
      await Deno.mkdir(`${base}/ref`);
      await run("tar", "-xzf", `${base}/layer.tar.gz`, "--same-owner", "-p", "-C", `${base}/ref`);
      await Deno.mkdir(`${base}/ours`);
      const result = await extractLayerFile(`${base}/layer.tar.gz`, `${base}/ours`, {
        label: `test-${format}`,
      });
      assert.ok(result.entries >= 20, `entries ${result.entries}`);

      const ref = await listTree(`${base}/ref`, COMPARE);
      const ours = await listTree(`${base}/ours`, COMPARE);
      assert.deepEqual(ours, ref);
      // The same with gzip inflated in a Worker (the default for large layer files).
      await Deno.mkdir(`${base}/ours_worker`);
      const viaWorker = await extractLayerFile(`${base}/layer.tar.gz`, `${base}/ours_worker`, {
        label: `test-${format}`,
        inflateInWorker: true,
      });
      assert.deepEqual(viaWorker, result);
      assert.deepEqual(await listTree(`${base}/ours_worker`, COMPARE), ref);
      assert.equal(
        await digestTree(`${base}/ours`, COMPARE),
        await digestTree(`${base}/ref`, COMPARE),
      );
      // The test can fail: the digest sees a one-bit mode change.
      await Deno.chmod(`${base}/ours/etc/passwd`, 0o640);
      assert.notEqual(
        await digestTree(`${base}/ours`, COMPARE),
        await digestTree(`${base}/ref`, COMPARE),
      );

      // Spot checks of what the comparison covers.
      const byPath = new Map(ours.map((e) => [e.path, e]));
      assert.equal(byPath.get("bin/su")?.mode, 0o4755);
      assert.equal(byPath.get("etc/shadow")?.mode, 0o600);
      assert.equal(byPath.get("tmp")?.mode, 0o1777);
      assert.equal(byPath.get("bin/busybox")?.nlink, 2);
      assert.equal(byPath.get("lib")?.link, "/usr/lib");
      assert.equal(byPath.get("etc/initctl")?.type, "fifo");
      assert.equal(byPath.get("etc/passwd")?.mtimeMs, Date.parse("2020-01-02T03:04:05"));
      assert.ok(byPath.has(`${LONG_DIR}/${"f".repeat(80)}.txt`));
      if (isRoot) assert.equal(byPath.get("var/empty")?.uid, 1234);
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  });
}

import assert from "node:assert/strict";
import { extractLayer, type SetXattrFn } from "./extract.ts";
import { entry, gzip, tar } from "./_tar_builder.ts";

async function tree(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    out.push(e.isDirectory ? `${p}/` : p);
    if (e.isDirectory) out.push(...await tree(dir, p));
  }
  return out.sort();
}

async function lower(target: string): Promise<void> {
  await Deno.mkdir(`${target}/bar/deep`, { recursive: true });
  await Deno.mkdir(`${target}/opq/sub`, { recursive: true });
  await Deno.writeTextFile(`${target}/foo`, "lower");
  await Deno.writeTextFile(`${target}/keep`, "lower");
  await Deno.writeTextFile(`${target}/bar/deep/x`, "lower");
  await Deno.writeTextFile(`${target}/opq/old`, "lower");
  await Deno.writeTextFile(`${target}/opq/sub/x`, "lower");
  await Deno.symlink("/etc", `${target}/etc-link`);
}

const layer = () =>
  gzip(tar(
    entry({ name: "./.wh.foo" }),
    entry({ name: "./.wh.bar" }),
    entry({ name: "./.wh.etc-link" }), // removes the link itself, not what it points to
    entry({ name: "./.wh.absent" }),
    entry({ name: "./nodir/.wh.x" }), // parent missing: nothing to hide
    entry({ name: "./opq/", type: "5", mode: 0o755 }),
    entry({ name: "./opq/.wh..wh..opq" }),
    entry({ name: "./opq/new" }, "upper"),
    entry({ name: "./opq/sub/", type: "5", mode: 0o755 }),
    entry({ name: "./same" }, "this layer"),
    entry({ name: "./.wh.same" }), // same-layer content is not hidden by its own whiteout
  ));

Deno.test("whiteouts applied onto a lower dir delete entries and clear opaque dirs", async () => {
  const target = await Deno.makeTempDir({ prefix: "layer_wh_" });
  try {
    await lower(target);
    const r = await extractLayer(ReadableStream.from([await layer()]), target, { chown: false });
    assert.deepEqual(await tree(target), ["keep", "opq/", "opq/new", "opq/sub/", "same"]);
    assert.equal(await Deno.readTextFile(`${target}/keep`), "lower");
    assert.deepEqual(r.whiteouts.sort(), ["bar", "etc-link", "foo"]);
    assert.deepEqual(r.opaqueDirs, ["opq"]);
    assert.ok((await Deno.stat("/etc")).isDirectory);
  } finally {
    await Deno.remove(target, { recursive: true });
  }
});

Deno.test("whiteoutMode keep extracts the markers as files", async () => {
  const target = await Deno.makeTempDir({ prefix: "layer_wh_" });
  try {
    await lower(target);
    await extractLayer(ReadableStream.from([await layer()]), target, {
      chown: false,
      whiteoutMode: "keep",
    });
    const t = await tree(target);
    assert.ok(t.includes(".wh.foo") && t.includes("foo") && t.includes("opq/.wh..wh..opq"));
  } finally {
    await Deno.remove(target, { recursive: true });
  }
});

Deno.test({
  name: "whiteoutMode overlay creates 0:0 char devices and marks opaque dirs",
  ignore: Deno.uid() !== 0, // mknod of a char device needs CAP_MKNOD
  async fn() {
    const target = await Deno.makeTempDir({ prefix: "layer_wh_" });
    try {
      // setfattr may be missing here; the port records what would be set.
      const xattrs: [string, string, string][] = [];
      const setXattr: SetXattrFn = (p, n, v) => {
        xattrs.push([p, n, v]);
        return Promise.resolve();
      };
      const r = await extractLayer(
        ReadableStream.from([
          await gzip(tar(
            entry({ name: "a/", type: "5", mode: 0o755 }),
            entry({ name: "a/.wh.gone" }),
            entry({ name: "o/.wh..wh..opq" }),
          )),
        ]),
        target,
        { whiteoutMode: "overlay", setXattr },
      );
      const st = await Deno.lstat(`${target}/a/gone`);
      assert.ok(st.isCharDevice);
      assert.equal(st.rdev, 0);
      assert.equal(st.uid, 0);
      assert.ok((await Deno.lstat(`${target}/o`)).isDirectory);
      assert.deepEqual(xattrs, [[
        `${await Deno.realPath(target)}/o`,
        "trusted.overlay.opaque",
        "y",
      ]]);
      assert.deepEqual(r.whiteouts, ["a/gone"]);
      assert.deepEqual(r.opaqueDirs, ["o"]);
    } finally {
      await Deno.remove(target, { recursive: true });
    }
  },
});

Deno.test({
  name: "devices and directories keep modes when allowed; a dir entry updates an existing dir",
  ignore: Deno.uid() !== 0,
  async fn() {
    const target = await Deno.makeTempDir({ prefix: "layer_dev_" });
    try {
      await Deno.mkdir(`${target}/d`);
      await Deno.writeTextFile(`${target}/d/lower`, "x");
      await extractLayer(
        ReadableStream.from([
          await gzip(tar(
            entry({ name: "d/", type: "5", mode: 0o711, mtime: 1_000_000 }),
            entry({ name: "d/null", type: "3", mode: 0o666, devmajor: 1, devminor: 3 }),
          )),
        ]),
        target,
        { allowDevices: true },
      );
      const st = await Deno.lstat(`${target}/d/null`);
      assert.ok(st.isCharDevice);
      assert.equal(st.mode! & 0o7777, 0o666);
      const dst = await Deno.lstat(`${target}/d`);
      assert.equal(dst.mode! & 0o7777, 0o711);
      assert.equal(dst.mtime?.getTime(), 1_000_000_000);
      assert.equal(await Deno.readTextFile(`${target}/d/lower`), "x");
    } finally {
      await Deno.remove(target, { recursive: true });
    }
  },
});

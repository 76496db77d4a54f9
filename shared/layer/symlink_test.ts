import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const child = fileURLToPath(new URL("./testdata/extract_scoped.ts", import.meta.url));

Deno.test("a layer with symlinks extracts under path-scoped grants with the ln port (either inflate)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/src/bin`, { recursive: true });
    await Deno.writeTextFile(`${dir}/src/bin/busybox`, "#!/bin/true\n");
    await Deno.symlink("busybox", `${dir}/src/bin/sh`);
    await Deno.symlink("/bin/busybox", `${dir}/src/bin/ls`);
    const tar = await new Deno.Command("tar", {
      args: ["-czf", `${dir}/layer.tgz`, "-C", `${dir}/src`, "."],
    }).output();
    assert.ok(tar.success);
    // Inflating in a Worker needs no grant beyond the caller's either.
    for (const inflate of ["thread", "worker"]) {
      const target = `${dir}/out-${inflate}`;
      await Deno.mkdir(target);
      const scoped = [`--allow-read=${dir}`, `--allow-write=${target}`];
      // Deno itself refuses symlinks under scoped grants; the ln port makes them.
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          ...scoped,
          "--allow-run=ln",
          child,
          `${dir}/layer.tgz`,
          target,
          inflate,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.equal(await Deno.readLink(`${target}/bin/sh`), "busybox");
      assert.equal(await Deno.readLink(`${target}/bin/ls`), "/bin/busybox");
      assert.equal(await Deno.readTextFile(`${target}/bin/busybox`), "#!/bin/true\n");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const child = fileURLToPath(new URL("./testdata/extract_scoped.ts", import.meta.url));

Deno.test("a layer with symlinks extracts under path-scoped grants with the ln port", async () => {
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
    await Deno.mkdir(`${dir}/out`);
    const scoped = [`--allow-read=${dir}`, `--allow-write=${dir}/out`];
    // Deno itself refuses symlinks under scoped grants; the ln port makes them.
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        ...scoped,
        "--allow-run=ln",
        child,
        `${dir}/layer.tgz`,
        `${dir}/out`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(await Deno.readLink(`${dir}/out/bin/sh`), "busybox");
    assert.equal(await Deno.readLink(`${dir}/out/bin/ls`), "/bin/busybox");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

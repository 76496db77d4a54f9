import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { aosDirDigest, digestTree, listTree } from "./dir_digest.ts";

Deno.test("aosDirDigest matches sha256 over sha256sum lines of sorted regular files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dirdigest_" });
  try {
    await Deno.mkdir(`${dir}/b/c`, { recursive: true });
    await Deno.writeTextFile(`${dir}/b/c/z`, "zz");
    await Deno.writeTextFile(`${dir}/B`, "upper sorts first in C order");
    await Deno.writeTextFile(`${dir}/a b`, "space");
    await Deno.symlink("B", `${dir}/link`);
    const out = await new Deno.Command("sh", {
      args: ["-c", "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum"],
      cwd: dir,
      stdout: "piped",
    }).output();
    const expected = `sha256:${createHash("sha256").update(out.stdout).digest("hex")}`;
    assert.equal(await aosDirDigest(dir), expected);

    const before = await digestTree(dir);
    const list = await listTree(dir);
    assert.deepEqual(list.map((e) => e.path), ["B", "a b", "b", "b/c", "b/c/z", "link"]);
    await Deno.writeTextFile(`${dir}/b/c/z`, "zZ");
    assert.notEqual(await digestTree(dir), before);
    assert.notEqual(await aosDirDigest(dir), expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

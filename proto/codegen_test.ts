// Fails when proto/gen no longer matches what generate.sh produces from the
// .proto files: regenerates into a temp dir (installing the pinned tools on
// first use) and compares every file byte for byte.
import { deepStrictEqual } from "node:assert/strict";
import { join, relative } from "node:path";

const protoDir = new URL(".", import.meta.url).pathname;
const committedGen = join(protoDir, "gen");

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await listFiles(root, path));
    else out.push(relative(root, path));
  }
  return out.sort();
}

Deno.test("proto/gen is up to date with the .proto files", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "aos-proto-gen-" });
  try {
    const result = await new Deno.Command("bash", {
      args: [join(protoDir, "generate.sh"), tmp],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!result.success) {
      const stderr = new TextDecoder().decode(result.stderr);
      throw new Error(`generate.sh failed with exit code ${result.code}: ${stderr}`);
    }

    const fresh = await listFiles(tmp);
    const committed = await listFiles(committedGen);
    deepStrictEqual(committed, fresh, "generated file set differs: run `deno task proto`");

    const stale: string[] = [];
    for (const file of fresh) {
      const [a, b] = await Promise.all([
        Deno.readFile(join(tmp, file)),
        Deno.readFile(join(committedGen, file)),
      ]);
      if (a.length !== b.length || a.some((byte, i) => byte !== b[i])) stale.push(file);
    }
    deepStrictEqual(
      stale,
      [],
      `stale generated files (run \`deno task proto\`): ${stale.join(", ")}`,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

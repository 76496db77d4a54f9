import assert from "node:assert/strict";
import { nullLogger } from "@aos/shared/logger";
import { FileIdentifier, parseSubjects, parseUnitModel } from "./identity.ts";

Deno.test({
  name: "unit model and subjects parsing",
  permissions: "none",
  fn() {
    assert.deepEqual(parseUnitModel("aos-core;1.0.0\n"), {
      unitModel: "aos-core",
      version: "1.0.0",
    });
    assert.throws(() => parseUnitModel("aos-core"), /expected "model;version"/);
    assert.deepEqual(parseSubjects("a\n\n b \n"), ["a", "b"]);
  },
});

Deno.test("file identifier reads files and reports subject changes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/sid`, "system-1\n");
    await Deno.writeTextFile(`${dir}/model`, "aos-core;1.0.0");
    const ident = new FileIdentifier(
      {
        systemIdPath: `${dir}/sid`,
        unitModelPath: `${dir}/model`,
        subjectsPath: `${dir}/subjects`,
      },
      nullLogger,
    );
    await ident.init();
    assert.deepEqual(await ident.getSystemInfo(), {
      systemId: "system-1",
      unitModel: "aos-core",
      version: "1.0.0",
    });
    assert.deepEqual(await ident.getSubjects(), []);
    const changes: string[][] = [];
    ident.subscribeSubjects((s) => changes.push(s));
    await Deno.writeTextFile(`${dir}/subjects`, "s1\ns2\n");
    assert.equal(await ident.reload(), true);
    assert.equal(await ident.reload(), false);
    assert.deepEqual(changes, [["s1", "s2"]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

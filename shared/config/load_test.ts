import assert from "node:assert/strict";
import * as z from "zod/mini";
import { AosError } from "../core/errors.ts";
import { loadConfigFile, parseConfigText } from "./load.ts";
import { ciObject, durationOr } from "./schema.ts";

const schema = ciObject({
  workingDir: z.string().check(z.minLength(1)),
  cmReconnectTimeout: durationOr("10s"),
  monitoring: z.prefault(ciObject({ pollPeriod: durationOr("35s") }), {}),
  runtimes: z._default(z.array(ciObject({ plugin: z.literal("container") })), []),
});

function errorOf(fn: () => unknown): AosError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AosError);
    return err;
  }
  throw new Error("expected an error");
}

Deno.test({
  name: "config errors name the file and the key in one line",
  permissions: "none",
  fn() {
    const bad = errorOf(() =>
      parseConfigText("sm.cfg", '{"workingDir":"/w","monitoring":{"pollPeriod":"10x"}}', schema)
    );
    assert.match(bad.message, /^sm\.cfg: key "monitoring\.pollPeriod": invalid duration "10x"/);
    assert.ok(!bad.message.includes("\n"));

    const type = errorOf(() => parseConfigText("sm.cfg", '{"workingDir": 5}', schema));
    assert.equal(type.message, 'sm.cfg: key "workingDir": expected string, got number 5');

    const missing = errorOf(() => parseConfigText("sm.cfg", "{}", schema));
    assert.match(missing.message, /key "workingDir": expected string, got nothing \(missing\)/);

    const plugin = errorOf(() =>
      parseConfigText("sm.cfg", '{"workingDir":"/w","runtimes":[{"plugin":"boot"}]}', schema)
    );
    assert.match(plugin.message, /key "runtimes\.0\.plugin"/);

    const json = errorOf(() => parseConfigText("sm.cfg", '{"workingDir": ', schema));
    assert.match(json.message, /^sm\.cfg: malformed JSON: /);
  },
});

Deno.test("loadConfigFile reads a real file and reports a missing one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/sm.cfg`;
    await Deno.writeTextFile(file, '{"WorkingDir":"/w","CMReconnectTimeout":"PT5S"}');
    const cfg = await loadConfigFile(file, schema);
    assert.equal(cfg.workingDir, "/w");
    assert.equal(cfg.cmReconnectTimeout, 5000);
    await assert.rejects(
      () => loadConfigFile(`${dir}/none.cfg`, schema),
      (e: Error) =>
        e instanceof AosError && /none\.cfg: cannot read config: file not found/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

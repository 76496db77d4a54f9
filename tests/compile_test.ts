/**
 * compile.ts bakes exactly the manifest flags into each executable of a role; without
 * DENORT_BIN it writes every artefact but the binaries.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { commandFor, mainModule } from "../permissions/launch.ts";
import { runtimeFlags } from "../permissions/mod.ts";
import { planCompile } from "../compile.ts";
import { startComponent, waitFor } from "../devcloud/process.ts";
import { writeSampleUnit } from "./fixtures/configs.ts";

const compileScript = fileURLToPath(new URL("../compile.ts", import.meta.url));

Deno.test("compile plan: each role's binaries carry their component's exact flags", async () => {
  const unit = await writeSampleUnit();
  try {
    const configDir = `${unit.root}/etc`;
    for (
      const [role, components] of [["main", ["iam", "sm", "cm"]], ["secondary", [
        "iam",
        "sm",
        "mp",
      ]]] as const
    ) {
      const targets = await planCompile(role, configDir, `${unit.root}/dist`);
      assert.deepEqual(targets.map((t) => t.component), components);
      for (const t of targets) {
        const { flags, args } = await commandFor(t.component, [
          "-c",
          `${configDir}/${t.component}.cfg`,
        ]);
        assert.deepEqual(t.flags, flags);
        assert.equal(t.args[0], "compile");
        for (const f of flags) assert.ok(t.args.includes(f));
        // The same V8 settings as the launched process, before the entry module.
        for (const f of runtimeFlags(t.component)) {
          assert.ok(t.args.indexOf(f) > 0 && t.args.indexOf(f) < t.args.indexOf("--output"));
          assert.ok(args.indexOf(f) > 0 && args.indexOf(f) < args.indexOf(mainModule(t.component)));
        }
        assert.ok(
          !t.args.some((a) =>
            a === "-A" || a.startsWith("--allow-all") || a.startsWith("--allow-ffi")
          ),
        );
        assert.ok(t.args.includes(`${configDir}/${t.component}.cfg`));
      }
    }
    await assert.rejects(() => planCompile("gateway", configDir, "x"), /unknown role "gateway"/);
  } finally {
    await Deno.remove(unit.root, { recursive: true });
  }
});

Deno.test("compile.ts without DENORT_BIN writes bundles, the manifest and build script, skips binaries", async () => {
  const unit = await writeSampleUnit();
  try {
    const out = `${unit.root}/dist`;
    const env = { ...Deno.env.toObject() };
    delete env.DENORT_BIN;
    const res = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        compileScript,
        "--role",
        "main",
        "--config-dir",
        `${unit.root}/etc`,
        "--out",
        out,
      ],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(res.stdout);
    assert.equal(res.code, 0, new TextDecoder().decode(res.stderr));
    assert.match(stdout, /skipping the final binary step/);
    const manifest = JSON.parse(await Deno.readTextFile(`${out}/main.manifest.json`));
    assert.deepEqual(Object.keys(manifest), ["iam", "sm", "cm"]);
    assert.ok(manifest.cm.flags.every((f: string) => !f.startsWith("--allow-run")));
    const script = await Deno.readTextFile(`${out}/build-main.sh`);
    assert.equal(script.match(/^deno compile /gm)?.length, 3);
    assert.equal(script.match(/^deno bundle /gm)?.length, 3);
    await assert.rejects(() => Deno.stat(`${out}/aos-iam`), Deno.errors.NotFound);

    // The bundles were built; one runs under its component's exact flags.
    for (const c of ["iam", "sm", "cm"]) {
      assert.equal(manifest[c].bundle, `${out}/${c}.bundle.js`);
      assert.ok((await Deno.stat(manifest[c].bundle)).size > 100_000);
    }
    const { args } = await commandFor("iam", ["-c", unit.iamConfig, "-p"], {
      main: manifest.iam.bundle,
    });
    assert.ok(args.includes(manifest.iam.bundle));
    const iam = await startComponent("iam", args);
    try {
      await waitFor("iam started from its bundle", () => / iam started /.test(iam.log()), 30_000)
        .catch((err) => {
          throw new Error(`${err}\n${iam.log()}`);
        });
    } finally {
      await iam.stop();
    }
  } finally {
    await Deno.remove(unit.root, { recursive: true });
  }
});

/**
 * Permission assertions: each component's manifest contains no forbidden grant, the component
 * starts under exactly those flags and stops cleanly, and a process under the same flags is
 * denied what the manifest does not name.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createIamClient } from "@aos/shared/iamclient";
import { assertNoForbiddenFlags } from "@aos/shared/permissions";
import { commandFor, mainModule } from "../permissions/launch.ts";
import { COMPONENTS, runtimeFlags } from "../permissions/mod.ts";
import { type SampleUnit, writeSampleUnit } from "./fixtures/configs.ts";

const probe = fileURLToPath(new URL("./fixtures/probe.ts", import.meta.url));
const launcher = fileURLToPath(new URL("../permissions/launch.ts", import.meta.url));

type Component = "iam" | "sm" | "cm" | "mp";

function configOf(unit: SampleUnit, c: Component): string {
  return { iam: unit.iamConfig, sm: unit.smConfig, cm: unit.cmConfig, mp: unit.mpConfig }[c];
}

async function runProbe(flags: string[], action: string, target: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, probe, action, target],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** A running component process. */
interface Running {
  stop(): Promise<{ code: number; stderr: string }>;
}

/** Spawns a component and resolves once it logged "started" (rejects if it exits first). */
async function startComponent(args: string[]): Promise<Running> {
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" })
    .spawn();
  let stderr = "";
  const decoder = new TextDecoder();
  const reader = child.stderr.getReader();
  const drained = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      stderr += decoder.decode(value, { stream: true });
    }
  })();
  while (!/ started /.test(stderr)) {
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 50)),
    ]);
    if (exited) {
      await drained;
      throw new Error(`component exited before start:\n${stderr}`);
    }
  }
  return {
    async stop() {
      child.kill("SIGTERM");
      const { code } = await child.status;
      await drained;
      return { code, stderr };
    },
  };
}

/** Gives the sample IAM an identifier (system id, model, subjects) and makes cm insecure. */
async function prepareCmBesideProvisioningIam(unit: SampleUnit): Promise<void> {
  const etc = `${unit.root}/etc`;
  await Deno.writeTextFile(`${etc}/system-id`, "unit-permissions\n");
  await Deno.writeTextFile(`${etc}/unit_model`, "test-unit;1.0\n");
  await Deno.writeTextFile(`${etc}/subjects`, "subject1\n");
  const iam = JSON.parse(await Deno.readTextFile(unit.iamConfig));
  iam.identifier = {
    plugin: "fileidentifier",
    params: {
      systemIdPath: `${etc}/system-id`,
      unitModelPath: `${etc}/unit_model`,
      subjectsPath: `${etc}/subjects`,
    },
  };
  await Deno.writeTextFile(unit.iamConfig, JSON.stringify(iam));
  const cm = JSON.parse(await Deno.readTextFile(unit.cmConfig));
  await Deno.writeTextFile(unit.cmConfig, JSON.stringify({ ...cm, insecure: true }));
}

for (const component of ["iam", "sm", "cm", "mp"] as const) {
  Deno.test(`${component}: starts under its manifest and is denied the rest`, async () => {
    const unit = await writeSampleUnit();
    try {
      // IAM runs in provisioning mode (nothing provisioned yet); SM needs a live IAM for its
      // node info, so one runs beside it.
      const extra = component === "iam" ? ["-p"] : [];
      const { flags, args } = await commandFor(component, [
        "-c",
        configOf(unit, component),
        ...extra,
      ]);
      // cm needs the unit's identity (IAM's identifier) and dials IAM without TLS while IAM is
      // in provisioning mode.
      if (component === "cm") await prepareCmBesideProvisioningIam(unit);
      const iam = component === "sm" || component === "cm"
        ? await startComponent((await commandFor("iam", ["-c", unit.iamConfig, "-p"])).args)
        : undefined;
      assertNoForbiddenFlags(flags);
      for (const f of flags) {
        assert.ok(!/^(-A|--allow-all|--allow-ffi)/.test(f), f);
        assert.ok(/^--(no-prompt|(allow|ignore)-[a-z]+=.+)$/.test(f), `unscoped flag ${f}`);
      }

      const started = await startComponent(args);
      if (component === "iam") {
        // Node facts come through even though Deno keeps /proc closed to the component.
        await using client = await createIamClient({
          publicUrl: `localhost:${unit.ports.iamPublic}`,
          caCert: unit.ca.cert,
          certStorage: "sm",
          insecure: true,
        });
        const node = await client.getCurrentNodeInfo();
        assert.ok(node.totalRam > 0n, "totalRam");
        assert.ok(node.cpus.length >= 1 && node.cpus[0]!.numCores >= 1n, "cpus");
      }
      const run = await started.stop().finally(() => iam?.stop());
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, new RegExp(`${component} stopped`));

      // Reading another component's working dir is denied.
      const other = component === "cm" ? unit.dirs.sm : unit.dirs.cm;
      assert.equal(await runProbe(flags, "read", other), "NotCapable");
      // Writing outside its own paths is denied.
      assert.equal(await runProbe(flags, "write", `${unit.root}/etc/evil`), "NotCapable");
      // A shell is never allowed.
      assert.equal(await runProbe(flags, "run", "sh"), "NotCapable");
      // Its own working dir is allowed.
      const own = unit.dirs[component];
      assert.equal(await runProbe(flags, "read", own), "ok");
      assert.equal(await runProbe(flags, "write", `${own}/probe`), "ok");
      // Another component's listen port is not reachable (net is scoped to its own peers).
      if (component !== "mp") {
        assert.equal(await runProbe(flags, "listen", `127.0.0.1:${unit.ports.mp}`), "NotCapable");
      }
      // Environment variables are not granted.
      assert.equal(await runProbe(flags, "env", "HOME"), "NotCapable");
    } finally {
      await Deno.remove(unit.root, { recursive: true });
    }
  });
}

Deno.test("key files: sm and cm read only their own IAM cert storages", async () => {
  const unit = await writeSampleUnit();
  try {
    for (const id of ["online", "iam", "sm", "cm"]) {
      await Deno.mkdir(`${unit.dirs.certs}/${id}`, { recursive: true });
    }
    const sm = await commandFor("sm", ["-c", unit.smConfig]);
    assert.equal(await runProbe(sm.flags, "read", `${unit.dirs.certs}/sm`), "ok");
    assert.equal(await runProbe(sm.flags, "read", `${unit.dirs.certs}/iam`), "NotCapable");
    assert.equal(await runProbe(sm.flags, "read", `${unit.dirs.certs}/cm`), "NotCapable");
    const cm = await commandFor("cm", ["-c", unit.cmConfig]);
    assert.equal(await runProbe(cm.flags, "read", `${unit.dirs.certs}/cm`), "ok");
    assert.equal(await runProbe(cm.flags, "read", `${unit.dirs.certs}/online`), "ok");
    assert.equal(await runProbe(cm.flags, "read", `${unit.dirs.certs}/sm`), "NotCapable");
    assert.equal(await runProbe(cm.flags, "read", `${unit.dirs.certs}/iam`), "NotCapable");
  } finally {
    await Deno.remove(unit.root, { recursive: true });
  }
});

Deno.test("programs: sm may run only its runtime, iam only configured commands, cm none", async () => {
  const unit = await writeSampleUnit();
  try {
    const runc = (await commandFor("sm", ["-c", unit.smConfig])).flags;
    assert.ok(
      runc.includes("--allow-run=/usr/sbin/runc,ln,ls,mknod,mount,setfattr,stat,umount"),
      runc.join(" "),
    );
    assert.equal(await runProbe(runc, "run", "/usr/sbin/runc"), "ok");
    assert.equal(await runProbe(runc, "run", "ip"), "NotCapable");

    const iamCfg = JSON.parse(await Deno.readTextFile(unit.iamConfig));
    iamCfg.finishProvisioningCmdArgs = ["/bin/true", "finish"];
    await Deno.writeTextFile(unit.iamConfig, JSON.stringify(iamCfg));
    const iam = (await commandFor("iam", ["-c", unit.iamConfig])).flags;
    assert.equal(await runProbe(iam, "run", "/bin/true"), "ok");
    assert.equal(await runProbe(iam, "run", "/bin/false"), "NotCapable");

    const cm = (await commandFor("cm", ["-c", unit.cmConfig])).flags;
    assert.ok(!cm.some((f) => f.startsWith("--allow-run")));
    assert.equal(await runProbe(cm, "run", "/usr/sbin/runc"), "NotCapable");
    // cm listens on its own addresses only.
    assert.equal(
      await runProbe(cm, "net", `127.0.0.1:${unit.ports.iamProtected}`),
      "ConnectionRefused",
    );
    assert.equal(await runProbe(cm, "listen", `127.0.0.1:${unit.ports.mp}`), "NotCapable");
  } finally {
    await Deno.remove(unit.root, { recursive: true });
  }
});

Deno.test("start-up check: a missing grant or a dangerous extra grant fails fast", async () => {
  const unit = await writeSampleUnit();
  try {
    const { flags } = await commandFor("cm", ["-c", unit.cmConfig]);
    const main = mainModule("cm");
    const base = ["-c", unit.cmConfig, "--iam-config", unit.iamConfig];
    const noWrite = flags.filter((f) => !f.startsWith("--allow-write"));
    let out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...noWrite, main, ...base],
      stderr: "piped",
      stdout: "null",
    }).output();
    let text = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1);
    assert.match(text, /^cm: permission set does not match its config: write .* not granted/);

    out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, "--allow-run=sh", main, ...base],
      stderr: "piped",
      stdout: "null",
    }).output();
    text = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1);
    assert.match(text, /running sh must not be granted/);
  } finally {
    await Deno.remove(unit.root, { recursive: true });
  }
});

Deno.test("permissions task prints the flags for audit", async () => {
  const unit = await writeSampleUnit();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", launcher, "print", "--", "sm", "-c", unit.smConfig],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /--no-prompt/);
    assert.match(text, new RegExp(`--allow-write=.*${unit.dirs.sm}`));
  } finally {
    await Deno.remove(unit.root, { recursive: true });
  }
});

Deno.test({
  name: "runtime flags: one --v8-flags per component, lite mode for iam only",
  permissions: "none",
  fn() {
    for (const c of COMPONENTS) {
      const flags = runtimeFlags(c);
      const v8 = flags.filter((f) => f.startsWith("--v8-flags="));
      assert.equal(v8.length, 1, `${c}: ${flags.join(" ")}`);
      assert.ok(v8[0]!.includes("--max-semi-space-size=1"), c);
      assert.equal(v8[0]!.includes("--lite-mode"), c === "iam", c);
      assert.ok(flags.includes("--no-code-cache"), c);
    }
  },
});

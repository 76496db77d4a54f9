/**
 * `iam` under its permission manifest: the grant is sufficient (it provisions and runs its
 * configured commands, see also iam_provisioning_test.ts) and minimal (a process under the
 * same flags cannot read other nodes' keys, write elsewhere, listen elsewhere, read the
 * environment, or run any program its config does not name).
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { commandFor } from "../permissions/launch.ts";
import {
  call,
  freePort,
  iamClients,
  IamProcess,
  makeUnit,
  ok,
  writeIamNode,
} from "./iam_support.ts";

const probe = fileURLToPath(new URL("./fixtures/probe.ts", import.meta.url));

async function runProbe(flags: string[], action: string, target: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, probe, action, target],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("iam: its manifest grants exactly the configured programs, paths and addresses", async () => {
  await using unit = await makeUnit();
  const marker = join(unit.root, "started");
  const node = await writeIamNode(unit.root, unit.ca, {
    nodeId: "perm0",
    main: true,
    extra: {
      startProvisioningCmdArgs: ["/usr/bin/touch", marker],
      finishProvisioningCmdArgs: ["/bin/true", "finish"],
    },
  });
  const other = await writeIamNode(unit.root, unit.ca, { nodeId: "other", main: false });
  await Deno.mkdir(join(other.certsDir, "iam"), { recursive: true });

  const { flags } = await commandFor("iam", ["-c", node.config, "-p"]);
  const run = flags.filter((f) => f.startsWith("--allow-run"));
  assert.deepEqual(run, ["--allow-run=/bin/true,/usr/bin/touch"]);
  assert.ok(!flags.some((f) => /^(-A|--allow-(ffi|all))/.test(f)), flags.join(" "));

  // Sufficient: the configured command runs from inside iam under these flags.
  {
    await using iam = await IamProcess.start(node, true);
    using c = await iamClients(node.protectedUrl, { mode: "insecure" });
    ok(
      await call(c.provisioning, c.provisioning.startProvisioning, {
        nodeId: "",
        password: "pw",
      }),
    );
    await Deno.stat(marker);
    await iam.stop("SIGTERM");
  }

  // Minimal: the same flags deny everything else.
  assert.equal(await runProbe(flags, "run", "/bin/true"), "ok");
  for (const program of ["/bin/false", "sh", "/bin/sh", "env", "/usr/bin/openssl"]) {
    assert.equal(await runProbe(flags, "run", program), "NotCapable", program);
  }
  assert.equal(await runProbe(flags, "read", join(node.certsDir, "iam")), "ok");
  assert.equal(await runProbe(flags, "read", join(other.certsDir, "iam")), "NotCapable");
  assert.equal(await runProbe(flags, "read", other.workingDir), "NotCapable");
  assert.equal(await runProbe(flags, "read", unit.ca.key), "NotCapable");
  assert.equal(await runProbe(flags, "read", "/etc/shadow"), "NotCapable");
  assert.equal(await runProbe(flags, "write", join(node.workingDir, "probe")), "ok");
  assert.equal(await runProbe(flags, "write", join(dirname(node.config), "evil")), "NotCapable");
  assert.equal(await runProbe(flags, "write", join(other.certsDir, "evil")), "NotCapable");
  assert.equal(await runProbe(flags, "listen", node.protectedUrl), "ok");
  assert.equal(await runProbe(flags, "listen", `127.0.0.1:${freePort()}`), "NotCapable");
  assert.equal(await runProbe(flags, "net", other.protectedUrl), "NotCapable");
  assert.equal(await runProbe(flags, "env", "HOME"), "NotCapable");
});

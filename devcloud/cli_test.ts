/**
 * `devcloud serve` as a real process under its own manifest, driven by the CLI commands (also
 * processes, under the client manifest), with CM's cloud link as the unit.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  buildAlerts,
  buildUnitStatus,
  type CloudToUnitMessage,
  type MessageOf,
} from "@aos/shared/cloudprotocol";
import { CloudLink } from "../cm/cloud/mod.ts";
import { devcloudCommand } from "./launch.ts";
import { parseClientArgs } from "./cli.ts";
import { DevPki } from "./pki.ts";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

async function until(what: string, cond: () => boolean, limitMs = 20_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: await devcloudCommand(argv),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, out: d.decode(out.stdout), err: d.decode(out.stderr) };
}

Deno.test({
  name: "devcloud cli: argument parsing",
  permissions: "none",
  fn() {
    const a = parseClientArgs([
      "deploy",
      "hello",
      "--instances",
      "3",
      "-c",
      "x.cfg",
      "--timeout=30s",
    ]);
    assert.deepEqual(
      [a.command, a.service, a.instances, a.config, a.timeoutMs],
      ["deploy", "hello", 3, "x.cfg", 30_000],
    );
    assert.throws(() => parseClientArgs(["deploy"]), /exactly one service/);
    assert.throws(() => parseClientArgs(["deploy", "x", "--instances", "-1"]), /integer >= 0/);
    assert.throws(() => parseClientArgs(["status", "extra"]), /takes no argument/);
    assert.throws(() => parseClientArgs(["launch"]), /unknown command/);
  },
});

Deno.test("devcloud cli: serve under its manifest; deploy follows the unit, status, alerts, remove", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_cli_" });
  let server: Deno.ChildProcess | undefined;
  let log = "";
  try {
    const workingDir = join(dir, "work");
    const svc = join(workingDir, "services", "hello");
    await Deno.mkdir(join(svc, "rootfs", "bin"), { recursive: true });
    await Deno.writeTextFile(join(svc, "rootfs", "bin", "hello"), "#!/bin/sh\n", { mode: 0o755 });
    await Deno.writeTextFile(
      join(svc, "service.json"),
      JSON.stringify({ version: "1.0.0", cmd: ["/bin/hello"], quotas: { ramLimit: 1 << 26 } }),
    );
    const cloudPort = freePort();
    const config = join(dir, "devcloud.cfg");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        workingDir,
        cloudUrl: `localhost:${cloudPort}`,
        blobsUrl: `localhost:${freePort()}`,
        dashboardUrl: `localhost:${freePort()}`,
        adminUrl: `localhost:${freePort()}`,
      }),
    );

    server = new Deno.Command(Deno.execPath(), {
      args: await devcloudCommand(["--", "serve", "-c", config]),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reading = (async () => {
      for await (const chunk of server.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
    })();
    await until("devcloud ready", () => log.includes("devcloud ready") || log.includes("failed"));
    assert.match(log, /devcloud ready/, log);

    let r = await run(["deploy", "hello", "--instances", "2", "-c", config]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Deployed hello 1\.0\.0 \(2 instances/);
    assert.match(r.out, /No unit is connected/);

    // A unit: CM's cloud link with an online certificate of the dev CA. It "runs" whatever the
    // desired status asks for by reporting it installed and active.
    const pki = await DevPki.open(join(workingDir, "pki"));
    const unit = await pki.issueUnitCert("cli-unit");
    const link = new CloudLink({
      systemId: "cli-unit",
      config: {
        serviceDiscoveryUrl: `https://localhost:${cloudPort}/sd/v7/`,
        overrideServiceDiscoveryUrl: "",
        allowedHosts: [],
      },
      credentials: () => ({ ...unit, ca: pki.rootPem }),
      timing: { reconnectInitialMs: 50, minSessionMs: 0, closeTimeoutMs: 200 },
    });
    const messages: CloudToUnitMessage[] = [];
    link.on("connect", () => link.send(buildUnitStatus({ isDeltaInfo: false })));
    link.onMessage((m) => {
      messages.push(m);
      if (m.messageType !== "desiredStatus") return;
      const d = m as MessageOf<"desiredStatus">;
      link.send(buildUnitStatus({
        isDeltaInfo: true,
        items: d.items.map((i) => ({ item: i.item, version: i.version, state: "installed" })),
        instances: d.instances.map((i) => ({
          item: i.item,
          subject: i.subject,
          version: d.items.find((x) => x.item.id === i.item.id)?.version ?? "",
          instances: Array.from({ length: i.numInstances }, (_, n) => ({
            node: { codename: "main" },
            runtime: { codename: "runc" },
            instance: n,
            state: "active" as const,
          })),
        })),
      }));
    });
    await using _link = link;
    link.start();
    await until("desired status", () => messages.some((m) => m.messageType === "desiredStatus"));

    r = await run(["deploy", "hello", "--instances", "3", "-c", config, "--timeout", "20s"]);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /cli-unit: item installed, instances 3\/3 active/);
    assert.match(r.out, /hello 1\.0\.0 is running on every connected unit/);

    link.send(buildAlerts({
      items: [{
        tag: "coreAlert",
        timestamp: new Date(),
        node: { codename: "main" },
        coreComponent: "SM",
        message: "something happened",
      }],
    }));
    await until("alert acked", () => link.pendingCount === 0);
    r = await run(["status", "-c", config]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /hello\s+1\.0\.0\s+3/);
    assert.match(r.out, /cli-unit\s+yes/);
    r = await run(["alerts", "-c", config]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /coreAlert\s+main\/SM\s+something happened/);

    r = await run(["remove", "hello", "-c", config]);
    assert.equal(r.code, 0, r.err);
    r = await run(["remove", "hello", "-c", config]);
    assert.equal(r.code, 1);
    assert.match(r.err, /not deployed/);
    r = await run(["deploy", "nope", "-c", config]);
    assert.equal(r.code, 1);
    assert.match(r.err, /Cannot read .*nope\/service\.json/);

    server.kill("SIGTERM");
    assert.equal((await server.status).code, 0, log);
    await reading;
    server = undefined;
    const units = JSON.parse(await Deno.readTextFile(join(workingDir, "units.json")));
    assert.equal(units.units[0].systemId, "cli-unit");
  } finally {
    if (server) {
      server.kill("SIGKILL");
      await server.status;
      await server.stderr.cancel().catch(() => {});
    }
    await Deno.remove(dir, { recursive: true });
  }
});

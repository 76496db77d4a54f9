import assert from "node:assert/strict";
import { join } from "node:path";
import {
  IAMCertificateServiceClient,
  IAMPermissionsServiceClient,
  IAMProvisioningServiceClient,
  IAMPublicCurrentNodeServiceClient,
  IAMPublicIdentityServiceClient,
  IAMPublicNodesServiceClient,
  IAMPublicPermissionsServiceClient,
  type NodeInfo,
  type Subjects,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import { IAMVersionServiceClient } from "@aos/proto/iamanager/version.ts";
import type { CliArgs } from "@aos/shared/cli";
import { parseConfigText } from "@aos/shared/config";
import { AosError } from "@aos/shared/errors";
import { callUnary, createGrpcClient, type GrpcClientConstructor } from "@aos/shared/grpc";
import { memoryLogger } from "@aos/shared/logger";
import { makeTestCa } from "@aos/shared/testing";
import type * as grpc from "@grpc/grpc-js";
import { iamConfigSchema } from "./config.ts";
import { start } from "./start.ts";

const ARGS: CliArgs = {
  config: "iam.cfg",
  logLevel: "debug",
  logFormat: "text",
  provisioning: true,
  version: false,
  help: false,
};

async function until(what: string, cond: () => boolean, limitMs = 5_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function writeConfig(dir: string, main: boolean, extra: Record<string, unknown> = {}) {
  const ca = await makeTestCa(dir, "Root");
  await Deno.writeTextFile(join(dir, "machine-id"), main ? "main\n" : "lonely\n");
  await Deno.writeTextFile(join(dir, "system-id"), "sys-1\n");
  await Deno.writeTextFile(join(dir, "unit_model"), "model;2.0\n");
  await Deno.writeTextFile(join(dir, "subjects"), "a\nb\n");
  return parseConfigText(
    "iam.cfg",
    JSON.stringify({
      caCert: ca.cert,
      iamPublicServerUrl: "127.0.0.1:0",
      iamProtectedServerUrl: "127.0.0.1:0",
      workingDir: join(dir, "work"),
      nodeInfo: {
        nodeIdPath: join(dir, "machine-id"),
        provisioningStatePath: join(dir, "work/.provisionstate"),
        attrs: main ? { MainNode: "" } : {},
      },
      identifier: {
        plugin: "fileidentifier",
        params: {
          systemIdPath: join(dir, "system-id"),
          unitModelPath: join(dir, "unit_model"),
          subjectsPath: join(dir, "subjects"),
        },
      },
      certModules: [{ id: "iam", plugin: "filemodule", params: { storagePath: join(dir, "iam") } }],
      ...extra,
    }),
    iamConfigSchema,
  );
}

function clientsAt(port: number) {
  const all: grpc.Client[] = [];
  const make = async <C extends grpc.Client>(ctor: GrpcClientConstructor<C>) => {
    const c = await createGrpcClient(ctor, `127.0.0.1:${port}`, { security: { mode: "insecure" } });
    all.push(c);
    return c;
  };
  return { make, [Symbol.dispose]: () => all.forEach((c) => c.close()) };
}

const unimplemented = (e: unknown) => e instanceof AosError && e.code === "notSupported";

Deno.test("start: main node services, subjects watch, node feeds, permissions; stops cleanly", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const config = await writeConfig(dir, true, { enablePermissionsHandler: true });
    const logger = memoryLogger("debug");
    const subscribed = (stream: string) =>
      logger.records.some((r) => r.msg === "subscriber added" && r.fields.stream === stream);
    await using iam = await start({
      config,
      args: ARGS,
      logger,
      signal: new AbortController().signal,
    }, { forwardTimeouts: { connectWaitMs: 100 } });
    assert.equal(iam.nodeId, "main");
    using pub = clientsAt(iam.publicPort);
    using prot = clientsAt(iam.protectedPort);

    await t.step(
      "version 6; the protected-only services are absent from the public server",
      async () => {
        const v = await pub.make(IAMVersionServiceClient);
        assert.equal((await callUnary(v.getApiVersion.bind(v), {})).version, 6n);
        const p = await pub.make(IAMProvisioningServiceClient);
        await assert.rejects(callUnary(p.getCertTypes.bind(p), { nodeId: "" }), unimplemented);
        const c = await pub.make(IAMCertificateServiceClient);
        await assert.rejects(
          callUnary(c.createKey.bind(c), { nodeId: "", type: "iam", subject: "", password: "" }),
          unimplemented,
        );
        const pp = await prot.make(IAMProvisioningServiceClient);
        assert.deepEqual((await callUnary(pp.getCertTypes.bind(pp), { nodeId: "" })).types, [
          "iam",
        ]);
      },
    );

    await t.step("subjects follow the file; subscribers hear about it", async () => {
      const id = await pub.make(IAMPublicIdentityServiceClient);
      assert.deepEqual(await callUnary(id.getSystemInfo.bind(id), {}), {
        systemId: "sys-1",
        unitModel: "model",
        version: "2.0",
      });
      const seen: string[][] = [];
      const stream = id.subscribeSubjectsChanged({});
      stream.on("data", (s: Subjects) => seen.push(s.subjects));
      stream.on("error", () => {});
      await until("subscription", () => subscribed("SubscribeSubjectsChanged"));
      // Atomic replace, as a provisioning tool would do it.
      await Deno.writeTextFile(join(dir, "subjects.tmp"), "a\nc\n");
      await Deno.rename(join(dir, "subjects.tmp"), join(dir, "subjects"));
      await until("subjects change", () => seen.some((s) => s.join() === "a,c"));
      assert.deepEqual((await callUnary(id.getSubjects.bind(id), {})).subjects, ["a", "c"]);
      stream.cancel();
    });

    await t.step("node feeds: current node and registry follow the state", async () => {
      const cur = await pub.make(IAMPublicCurrentNodeServiceClient);
      const nodes = await pub.make(IAMPublicNodesServiceClient);
      const current: NodeInfo[] = [];
      const registry: NodeInfo[] = [];
      const s1 = cur.subscribeCurrentNodeChanged({});
      const s2 = nodes.subscribeNodeChanged({});
      s1.on("data", (n: NodeInfo) => current.push(n));
      s2.on("data", (n: NodeInfo) => registry.push(n));
      s1.on("error", () => {});
      s2.on("error", () => {});
      await until(
        "subscriptions",
        () => subscribed("SubscribeCurrentNodeChanged") && subscribed("SubscribeNodeChanged"),
      );
      const p = await prot.make(IAMProvisioningServiceClient);
      const c = await prot.make(IAMCertificateServiceClient);
      const ok = async <T extends { error?: unknown }>(x: Promise<T>) => {
        const r = await x;
        assert.equal(r.error, undefined, JSON.stringify(r.error));
        return r;
      };
      await ok(callUnary(p.startProvisioning.bind(p), { nodeId: "", password: "pw" }));
      await ok(callUnary(p.finishProvisioning.bind(p), { nodeId: "main", password: "pw" }));
      await until("state feeds", () =>
        current.some((n) => n.state === "provisioned") &&
        registry.some((n) => n.nodeId === "main" && n.state === "provisioned"));
      const info = await callUnary(nodes.getNodeInfo.bind(nodes), { nodeId: "main" });
      assert.equal(info.state, "provisioned");
      await assert.rejects(
        callUnary(nodes.getNodeInfo.bind(nodes), { nodeId: "nobody" }),
        (e) => e instanceof AosError && e.code === "notFound",
      );
      // Not connected: a forwarded request gets a status, not an ErrorInfo.
      const fwd = callUnary(c.createKey.bind(c), {
        nodeId: "nobody",
        type: "iam",
        subject: "",
        password: "pw",
      });
      await assert.rejects(fwd, (e) => e instanceof AosError && /not connected/.test(e.message));
      s1.cancel();
      s2.cancel();
    });

    await t.step("permissions: register on protected, look up on public", async () => {
      const reg = await prot.make(IAMPermissionsServiceClient);
      const instance = {
        itemId: "svc",
        subjectId: "subj",
        instance: 1n,
        type: 0,
        preinstalled: false,
      };
      const { secret } = await callUnary(reg.registerInstance.bind(reg), {
        instance,
        permissions: { vis: { permissions: { "*": "rw" } } },
      });
      assert.match(secret, /^[0-9a-f-]{36}$/);
      const look = await pub.make(IAMPublicPermissionsServiceClient);
      const res = await callUnary(look.getPermissions.bind(look), {
        secret,
        functionalServerId: "vis",
      });
      assert.deepEqual(res.permissions?.permissions, { "*": "rw" });
      assert.equal(res.instance?.itemId, "svc");
      await callUnary(reg.unregisterInstance.bind(reg), { instance });
      await assert.rejects(
        callUnary(reg.unregisterInstance.bind(reg), { instance }),
        (e) => e instanceof AosError && e.code === "notFound",
      );
      const noReg = await pub.make(IAMPermissionsServiceClient);
      await assert.rejects(
        callUnary(noReg.registerInstance.bind(noReg), { instance, permissions: {} }),
        unimplemented,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start: a node that is not main serves no node or provisioning services", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = await writeConfig(dir, false);
    await using iam = await start({
      config,
      args: ARGS,
      logger: memoryLogger(),
      signal: new AbortController().signal,
    });
    using prot = clientsAt(iam.protectedPort);
    const p = await prot.make(IAMProvisioningServiceClient);
    await assert.rejects(callUnary(p.getCertTypes.bind(p), { nodeId: "" }), unimplemented);
    const n = await prot.make(IAMPublicNodesServiceClient);
    await assert.rejects(callUnary(n.getAllNodeIDs.bind(n), {}), unimplemented);
    const id = await prot.make(IAMPublicIdentityServiceClient);
    await assert.rejects(callUnary(id.getSubjects.bind(id), {}), unimplemented);
    const cur = await prot.make(IAMPublicCurrentNodeServiceClient);
    assert.equal((await callUnary(cur.getCurrentNodeInfo.bind(cur), {})).nodeId, "lonely");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start: normal mode without an IAM certificate fails with a clear message", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = await writeConfig(dir, true);
    await assert.rejects(
      start({
        config,
        args: { ...ARGS, provisioning: false },
        logger: memoryLogger(),
        signal: new AbortController().signal,
      }),
      /No certificate of type "iam" for the IAM servers: provision the node first/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

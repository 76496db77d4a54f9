import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import type { InstanceIdent } from "@aos/proto/common/v2/common.ts";
import { AosError } from "../core/errors.ts";
import { memoryLogger } from "../core/logger.ts";
import { callUnary, createGrpcClient, createGrpcServer, unaryHandler } from "../grpc/mod.ts";
import { ECHO_SERVICE, EchoClient } from "../grpc/testdata/echo.ts";
import { type CertFiles, issueTestCert, makeTestCa, type TestCa } from "../testing/mod.ts";
import { createIamClient, type IamClient, type IamClientOptions, type TlsFiles } from "./mod.ts";
import { certInfoOf, type FakeIam, nodeInfo, startFakeIam } from "./testdata/fake_iam.ts";

interface Pki {
  dir: string;
  ca: TestCa;
  otherCa: TestCa;
  iamServer: CertFiles;
  sm1: CertFiles;
  sm2: CertFiles;
}

async function withPki(fn: (pki: Pki) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aos_iamclient_test_" });
  try {
    const [ca, otherCa] = await Promise.all([
      makeTestCa(dir, "Aos Root"),
      makeTestCa(dir, "Other Root"),
    ]);
    const [iamServer, sm1, sm2] = await Promise.all([
      issueTestCert(dir, ca, { commonName: "iam", san: ["DNS:localhost", "IP:127.0.0.1"] }),
      issueTestCert(dir, ca, { commonName: "sm one", san: ["DNS:localhost"] }),
      issueTestCert(dir, ca, { commonName: "sm two", san: ["DNS:localhost"] }),
    ]);
    await fn({ dir, ca, otherCa, iamServer, sm1, sm2 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function serialOf(files: CertFiles): Promise<string> {
  return new X509Certificate(await Deno.readFile(files.cert)).serialNumber.toLowerCase();
}

async function until(what: string, cond: () => boolean, limitMs = 8_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function options(iam: FakeIam, pki: Pki, extra: Partial<IamClientOptions> = {}): IamClientOptions {
  return {
    publicUrl: iam.publicUrl,
    protectedUrl: iam.protectedUrl,
    caCert: pki.ca.cert,
    certStorage: "sm",
    certReconnectDelayMs: 10,
    resubscribeDelay: { initialMs: 20, maxMs: 100 },
    connectTries: 1,
    ...extra,
  };
}

function secureIam(pki: Pki): Promise<FakeIam> {
  return startFakeIam({ server: pki.iamServer, ca: pki.ca.cert });
}

const ident: InstanceIdent = {
  itemId: "service1",
  subjectId: "subject1",
  instance: 0n,
  type: 0,
  preinstalled: false,
};

async function rejectsWith(p: Promise<unknown>, code: string, text: RegExp): Promise<void> {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof AosError, `not an AosError: ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, text);
    return true;
  });
}

Deno.test("bootstrap: GetCert over server TLS, then mTLS with the returned files", async () => {
  await withPki(async (pki) => {
    await using iam = await secureIam(pki);
    iam.certs.set("sm", certInfoOf("sm", pki.sm1));
    await using client = await createIamClient(options(iam, pki));

    assert.deepEqual(client.tlsFiles(), {
      certFile: pki.sm1.cert,
      keyFile: pki.sm1.key,
      caFile: pki.ca.cert,
    });
    const serial = await serialOf(pki.sm1);
    assert.equal(client.certInfo()?.serial, serial);

    // Public server (TLS only).
    assert.deepEqual(await client.getSystemInfo(), {
      systemId: "system-1",
      unitModel: "model;1.0",
      version: "9.1.0",
    });
    assert.equal((await client.getCurrentNodeInfo()).nodeId, "main");
    assert.deepEqual(await client.getAllNodeIds(), ["main"]);
    assert.deepEqual(await client.getSubjects(), ["subject1"]);

    // Protected server: mTLS with the sm cert.
    const secret = await client.registerInstance(ident, { vis: { "Attribute.*": "rw" } });
    assert.match(secret, /^[0-9a-f-]{36}$/);
    assert.equal(await client.registerInstance(ident, {}), secret);
    await client.unregisterInstance(ident);
    assert.deepEqual(iam.calls.map((c) => c.peerSerial), [serial, serial, serial]);
    assert.deepEqual(await client.getCertTypes(""), ["online", "sm"]);
    await client.startProvisioning("", "pw");
    await client.finishProvisioning("", "pw");
    await client.deprovision("node1", "pw");
    await client.pauseNode("node1");
    await client.resumeNode("node1");
    assert.equal(
      await client.createKey("", "cm", "", "pw"),
      "-----BEGIN CERTIFICATE REQUEST-----\n",
    );
    const applied = await client.applyCert("", "cm", "PEM");
    assert.equal(applied.serial, "0a1b");
    assert.equal(applied.certUrl, "file:///x.pem");

    // The same files serve the caller's own mTLS links (CM's server, SM's client).
    await using echo = await createGrpcServer({
      address: "127.0.0.1:0",
      security: client.serverCredentials(),
      services: [{
        definition: ECHO_SERVICE,
        implementation: { echo: unaryHandler((b: Buffer) => b) },
      }],
    });
    const echoClient = await createGrpcClient(EchoClient, `127.0.0.1:${echo.port}`, {
      security: client.clientCredentials(),
    });
    try {
      const reply = await callUnary(echoClient.echo.bind(echoClient), Buffer.from("hi"), {
        timeoutMs: 5_000,
      });
      assert.equal(reply.toString(), "hi");
    } finally {
      echoClient.close();
    }
    // That server requires a client certificate.
    const anonymous = await createGrpcClient(EchoClient, `127.0.0.1:${echo.port}`, {
      security: { mode: "tls", ca: pki.ca.cert },
    });
    try {
      await assert.rejects(
        callUnary(anonymous.echo.bind(anonymous), Buffer.from("hi"), { timeoutMs: 5_000 }),
        AosError,
      );
    } finally {
      anonymous.close();
    }
  });
});

Deno.test("bootstrap fails clearly: wrong CA, missing cert, non-file URLs, unreachable IAM", async () => {
  await withPki(async (pki) => {
    await using iam = await secureIam(pki);
    // IAM's certificate does not chain to the configured CA.
    await assert.rejects(
      createIamClient(options(iam, pki, { caCert: pki.otherCa.cert })),
      AosError,
    );
    // IAM has no cert of our type.
    await rejectsWith(createIamClient(options(iam, pki)), "notFound", /GetCert\("sm"\).*no cert/);
    // PKCS#11 keys are not supported.
    iam.certs.set("sm", { ...certInfoOf("sm", pki.sm1), keyUrl: "pkcs11:token=aos;object=sm" });
    await rejectsWith(createIamClient(options(iam, pki)), "notSupported", /pkcs11:.*file:\/\//);
    iam.certs.set("sm", { ...certInfoOf("sm", pki.sm1), certUrl: "https://x/sm.pem" });
    await rejectsWith(createIamClient(options(iam, pki)), "notSupported", /https:/);
    // A URL that points at no file.
    iam.certs.set("sm", { ...certInfoOf("sm", pki.sm1), certUrl: "file:///nonexistent/sm.pem" });
    await rejectsWith(createIamClient(options(iam, pki)), "notFound", /nonexistent/);

    // Nothing listens: retried `connectTries` times, then the transport error.
    const port = iam.publicPort;
    await iam.stop();
    const logger = memoryLogger();
    await assert.rejects(
      createIamClient({
        ...options(iam, pki, { connectTries: 2, logger }),
        publicUrl: `127.0.0.1:${port}`,
      }),
      AosError,
    );
    assert.equal(logger.records.filter((r) => r.msg.includes("retrying")).length, 1);
  });
});

Deno.test("errors: ErrorInfo in responses and gRPC statuses become AosErrors", async () => {
  await withPki(async (pki) => {
    await using iam = await secureIam(pki);
    iam.certs.set("sm", certInfoOf("sm", pki.sm1));
    await using client = await createIamClient(options(iam, pki));

    iam.responseError = { aosCode: 9, exitCode: 0, message: "node is paused" };
    await rejectsWith(client.createKey("n1", "iam", "", "pw"), "wrongState", /CreateKey.*paused/);
    await rejectsWith(client.startProvisioning("n1", "pw"), "wrongState", /node is paused/);
    await rejectsWith(client.pauseNode("n1"), "wrongState", /PauseNode\("n1"\)/);
    iam.responseError = { aosCode: 0, exitCode: 13, message: "permission denied" };
    await assert.rejects(client.applyCert("n1", "iam", "PEM"), (e) => {
      assert.ok(e instanceof AosError);
      assert.equal(e.code, "runtime");
      assert.equal(e.exitCode, 13);
      return true;
    });
    iam.responseError = undefined;

    await rejectsWith(client.getNodeInfo("ghost"), "notFound", /GetNodeInfo\("ghost"\).*ghost/);
    // Upstream IAM answers INTERNAL for an unknown instance.
    await rejectsWith(client.unregisterInstance(ident), "failed", /not found/);
    await rejectsWith(client.getCert("online"), "notFound", /online/);
  });
});

Deno.test("insecure mode (provisioning): plaintext, no own certificate; protected URL optional", async () => {
  await using iam = await startFakeIam({});
  const logger = memoryLogger();
  {
    await using client = await createIamClient({
      publicUrl: iam.publicUrl,
      protectedUrl: iam.protectedUrl,
      caCert: "/nonexistent/ca.pem",
      certStorage: "cm",
      insecure: true,
      logger,
    });
    assert.equal(client.tlsFiles(), undefined);
    assert.equal(client.clientCredentials()._isSecure(), false);
    await client.startProvisioning("", "pw");
    assert.deepEqual(iam.calls, [{ method: "StartProvisioning", peerSerial: "" }]);
  }
  await using mpLike = await createIamClient({
    publicUrl: iam.publicUrl,
    caCert: "",
    certStorage: "sm",
    insecure: true,
  });
  assert.equal((await mpLike.getCurrentNodeInfo()).nodeId, "main");
  await rejectsWith(mpLike.registerInstance(ident, {}), "wrongState", /no protected server/);
});

Deno.test("subscriptions deliver converted values and survive an IAM restart", async () => {
  await withPki(async (pki) => {
    await using iam = await secureIam(pki);
    iam.certs.set("sm", certInfoOf("sm", pki.sm1));
    await using client = await createIamClient(options(iam, pki));

    const nodes: string[] = [];
    const subjects: string[][] = [];
    const onlineSerials: string[] = [];
    client.subscribeNodeChanged((n) => nodes.push(`${n.nodeId}:${n.state}`));
    client.subscribeSubjectsChanged((s) => subjects.push(s));
    const unsubscribe = client.subscribeCertChanged("online", (c) => onlineSerials.push(c.serial));
    await until(
      "subscriptions",
      () =>
        iam.nodeSubscribers === 1 && iam.subjectSubscribers === 1 &&
        iam.certSubscribers("online") === 1,
    );
    iam.pushNode(nodeInfo("node1", "unprovisioned"));
    iam.pushSubjects(["a", "b"]);
    iam.pushCert({ ...certInfoOf("online", pki.sm1), serial: new TextEncoder().encode("ABCD") });
    await until(
      "first values",
      () => nodes.length === 1 && subjects.length === 1 && onlineSerials.length === 1,
    );
    assert.deepEqual(nodes, ["node1:unprovisioned"]);
    assert.deepEqual(subjects, [["a", "b"]]);
    assert.deepEqual(onlineSerials, ["abcd"]);

    // IAM restarts on the same ports: every stream ends, the client resubscribes.
    await iam.stop();
    await new Promise((r) => setTimeout(r, 150)); // a few failed resubscribe attempts
    await iam.start();
    await until(
      "resubscription",
      () =>
        iam.nodeSubscribers === 1 && iam.subjectSubscribers === 1 &&
        iam.certSubscribers("online") === 1,
    );
    iam.pushNode(nodeInfo("node1", "provisioned"));
    iam.pushSubjects(["c"]);
    await until("values after restart", () => nodes.length === 2 && subjects.length === 2);
    assert.deepEqual(nodes, ["node1:unprovisioned", "node1:provisioned"]);
    assert.deepEqual(subjects, [["a", "b"], ["c"]]);
    // Unary calls work again too.
    assert.equal((await client.getNodeInfo("node1")).state, "provisioned");

    // Unsubscribing ends that stream only.
    unsubscribe();
    await until("unsubscribed", () => iam.certSubscribers("online") === 0);
    assert.equal(iam.nodeSubscribers, 1);
  });
});

Deno.test("cert change: credentials are rebuilt, listeners told, later calls use the new cert", async () => {
  await withPki(async (pki) => {
    await using iam = await secureIam(pki);
    iam.certs.set("sm", certInfoOf("sm", pki.sm1));
    const logger = memoryLogger();
    await using client = await createIamClient(options(iam, pki, { logger }));
    const [serial1, serial2] = await Promise.all([serialOf(pki.sm1), serialOf(pki.sm2)]);

    await client.registerInstance(ident, {});
    assert.equal(iam.calls.at(-1)?.peerSerial, serial1);
    const oldClientCreds = client.clientCredentials();

    const changes: TlsFiles[] = [];
    let serialSeenByListener = "";
    client.onCredentialsChanged(async (files) => {
      // A listener can reconnect its own channel with the new credentials right away.
      serialSeenByListener = client.certInfo()?.serial ?? "";
      await new Promise((r) => setTimeout(r, 10));
      changes.push(files);
    });
    await until("cert subscription", () => iam.certSubscribers("sm") === 1);
    iam.pushCert(certInfoOf("sm", pki.sm2));
    await until("credentials change", () => changes.length === 1);
    assert.deepEqual(changes[0], {
      certFile: pki.sm2.cert,
      keyFile: pki.sm2.key,
      caFile: pki.ca.cert,
    });
    assert.equal(serialSeenByListener, serial2);
    assert.deepEqual(client.tlsFiles(), changes[0]);
    assert.notEqual(client.clientCredentials(), oldClientCreds);

    await client.registerInstance(ident, {});
    assert.equal(iam.calls.at(-1)?.peerSerial, serial2);

    // A change IAM cannot serve yet (broken URL) is retried until it can.
    iam.pushCert({ ...certInfoOf("sm", pki.sm1), keyUrl: "pkcs11:object=sm" });
    await until("rebuild failure logged", () => logger.records.some((r) => r.level === "error"));
    assert.equal(changes.length, 1);
    iam.certs.set("sm", certInfoOf("sm", pki.sm1));
    await until("second change", () => changes.length === 2);
    await client.registerInstance(ident, {});
    assert.equal(iam.calls.at(-1)?.peerSerial, serial1);
  });
});

Deno.test("close: streams, timers and channels end; later calls fail with wrongState", async () => {
  await withPki(async (pki) => {
    await using iam = await secureIam(pki);
    iam.certs.set("sm", certInfoOf("sm", pki.sm1));
    // A long reconnect delay: the pending rebuild timer must not outlive close().
    const client: IamClient = await createIamClient(
      options(iam, pki, { certReconnectDelayMs: 60_000 }),
    );
    const unsubscribe = client.subscribeNodeChanged(() => {});
    await until("subscribed", () => iam.nodeSubscribers === 1 && iam.certSubscribers("sm") === 1);
    iam.pushCert(certInfoOf("sm", pki.sm2));
    await client.registerInstance(ident, {}); // a live protected channel too
    await Promise.all([client.close(), client.close()]);
    unsubscribe();
    await until("streams gone", () => iam.nodeSubscribers === 0 && iam.certSubscribers("sm") === 0);
    await rejectsWith(client.getSystemInfo(), "wrongState", /closed/);
    assert.throws(() => client.subscribeSubjectsChanged(() => {}), AosError);
    assert.equal(client.tlsFiles()?.certFile, pki.sm1.cert, "rebuilt after close");
  });
});

Deno.test("close during start-up retries stops waiting for IAM", async () => {
  await withPki(async (pki) => {
    const abort = new AbortController();
    const pending = createIamClient({
      publicUrl: "127.0.0.1:1",
      caCert: pki.ca.cert,
      certStorage: "sm",
      connectTries: Infinity,
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(new AosError("canceled", "stop")), 50);
    await assert.rejects(pending, AosError);
  });
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { WebSocket } from "ws";
import { AosError, memoryLogger } from "@aos/shared/core";
import { openDatabase } from "@aos/shared/db";
import { makeTestPki } from "@aos/shared/testing";
import { buildAlerts, buildUnitStatus, type CloudToUnitMessage } from "@aos/shared/cloudprotocol";
import { CLOUD_OUTBOX_MIGRATION, Outbox } from "./outbox.ts";
import { CloudLink, type CloudLinkOptions, type CloudLinkTiming } from "./link.ts";
import type { CloudCredentials } from "./discovery.ts";
import { TestCloud, until } from "./_test_cloud.ts";

const SYSTEM_ID = "unit-system-1";
const dir = await Deno.makeTempDir({ prefix: "cm_cloud_link_" });
const pki = await makeTestPki(dir);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const read = (f: string) => Deno.readTextFileSync(f);
const creds: CloudCredentials = {
  cert: read(pki.client.cert),
  key: read(pki.client.key),
  ca: read(pki.ca.cert),
};

const FAST: Partial<CloudLinkTiming> = {
  responseWaitMs: 150,
  reconnectInitialMs: 20,
  reconnectMaxMs: 200,
  minSessionMs: 0,
  connectTimeoutMs: 3000,
  closeTimeoutMs: 200,
};

/** A small valid cloud → unit message. */
const VALID = { messageType: "updateState", instance: 0, stateChecksum: "00", state: "" };

const migrations = [{ version: 1, ...CLOUD_OUTBOX_MIGRATION }];

function delta(): ReturnType<typeof buildUnitStatus> {
  return buildUnitStatus({ isDeltaInfo: true, subjects: [{ codename: "s1" }] });
}

async function setup(
  options: Partial<CloudLinkOptions> & { autoPong?: boolean } = {},
) {
  const cloud = await new TestCloud(pki, SYSTEM_ID, { autoPong: options.autoPong ?? true })
    .listen();
  const logger = memoryLogger();
  const link = new CloudLink({
    systemId: SYSTEM_ID,
    config: {
      serviceDiscoveryUrl: cloud.sdUrl,
      overrideServiceDiscoveryUrl: "",
      allowedHosts: [],
    },
    credentials: () => creds,
    logger,
    ...options,
    timing: { ...FAST, ...options.timing },
  });
  const events: string[] = [];
  link.on("connect", () => events.push("connect"));
  link.on("disconnect", () => events.push("disconnect"));
  const messages: CloudToUnitMessage[] = [];
  link.onMessage((m) => {
    messages.push(m);
  });
  return {
    cloud,
    link,
    logger,
    events,
    messages,
    async [Symbol.asyncDispose]() {
      await link.close();
      await cloud.close();
    },
  };
}

const connects = (events: string[]) => events.filter((e) => e === "connect").length;

Deno.test("discovery, WSS with mTLS and Bearer token, messages flow both ways", async () => {
  await using t = await setup();
  t.link.start();
  await until(() => t.link.connected, "connection");

  assert.equal(t.cloud.discoveries.length, 1);
  const sd = t.cloud.discoveries[0]!;
  assert.deepEqual(sd.body, { version: 7, systemId: SYSTEM_ID, supportedProtocols: ["wss"] });
  assert.equal(sd.path, "/sd/v7/");
  assert.equal(sd.clientCn, "client");
  assert.deepEqual(t.cloud.upgrades, [
    { authorization: "Bearer token-1", clientCn: "client", accepted: true },
  ]);

  const txn = t.link.send(delta());
  await until(() => t.link.pendingCount === 0, "ack of unitStatus");
  const [got] = t.cloud.messages("unitStatus");
  assert.ok(got?.binary);
  assert.equal(got.json.header.txn, txn);
  assert.equal(got.json.header.version, 7);
  assert.equal(got.json.header.systemId, SYSTEM_ID);

  const cloudTxn = t.cloud.sendEnvelope({
    messageType: "stateAcceptance",
    item: { id: "9f1d7a26-3b2f-4e55-9d0c-0e6f1f2a3b4c" },
    subject: { id: "0b9c3e2a-1d4f-4a5b-8c6d-7e8f9a0b1c2d" },
    instance: 0,
    checksum: "abc",
    result: "accepted",
  });
  await until(() => t.messages.length === 1, "stateAcceptance handled");
  assert.equal(t.messages[0]?.messageType, "stateAcceptance");
  await until(() => t.cloud.messages("ack").length === 1, "ack from the unit");
  const ack = t.cloud.messages("ack")[0]!;
  assert.equal(ack.json.header.txn, cloudTxn);
  assert.ok(ack.binary);
  assert.deepEqual(t.events, ["connect"]);
});

Deno.test("an unacked message is resent at most 3 times with identical bytes, then dropped", async () => {
  await using t = await setup();
  t.cloud.reply = () => ({ none: true });
  const dropped: string[] = [];
  t.link.on("dropped", (e) => dropped.push(e.txn));
  t.link.start();
  const txn = t.link.send(delta());
  await until(() => dropped.length === 1, "drop after resends");
  assert.deepEqual(dropped, [txn]);
  const copies = t.cloud.messages("unitStatus");
  assert.equal(copies.length, 4);
  for (const c of copies) assert.deepEqual(c.bytes, copies[0]!.bytes);
  assert.equal(t.link.pendingCount, 0);
  assert.ok(t.logger.records.some((r) => r.level === "error" && /after all resends/.test(r.msg)));
});

Deno.test("a nack delays the resend and does not use up a retry", async () => {
  await using t = await setup({ timing: { maxResends: 0, responseWaitMs: 100 } });
  // Nacked three times with a short delay, then acked: with no resends allowed it still arrives.
  t.cloud.reply = (_r, nth) => nth <= 3 ? { nack: 20 } : { ack: true };
  t.link.start();
  t.link.send(delta());
  await until(() => t.link.pendingCount === 0, "delivery after nacks");
  assert.equal(t.cloud.messages("unitStatus").length, 4);

  // A long retryAfter holds the message although the ack wait (100 ms) passes several times.
  t.cloud.reply = () => ({ nack: 60_000 });
  t.link.send(delta());
  await until(() => t.cloud.messages("unitStatus").length === 5, "nacked send");
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(t.cloud.messages("unitStatus").length, 5);
  assert.equal(t.link.pendingCount, 1);
});

Deno.test("a duplicated cloud txn is acked twice but handled once", async () => {
  await using t = await setup();
  t.link.start();
  await until(() => t.link.connected, "connection");
  const body = VALID;
  const txn = t.cloud.sendEnvelope(body);
  t.cloud.sendEnvelope(body, { txn });
  await until(() => t.cloud.messages("ack").length === 2, "two acks");
  assert.ok(t.cloud.messages("ack").every((a) => a.json.header.txn === txn));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(t.messages.length, 1);
});

Deno.test("bad input is logged and dropped without an ack; the link keeps working", async () => {
  await using t = await setup();
  t.link.start();
  await until(() => t.link.connected, "connection");
  t.cloud.sendRaw("not json");
  t.cloud.sendRaw(JSON.stringify({ data: { messageType: "ack" } }));
  t.cloud.sendRaw(JSON.stringify([1, 2]));
  t.cloud.sendEnvelope(VALID, { systemId: "other" });
  t.cloud.sendEnvelope(VALID, { version: 6 });
  t.cloud.sendEnvelope({ messageType: "somethingNew" });
  t.cloud.sendEnvelope({ messageType: "unitStatus", isDeltaInfo: true }); // a unit → cloud type
  t.cloud.sendEnvelope({ messageType: "desiredStatus", items: "no" }); // body fails its schema
  // A text frame with a valid message is accepted.
  const good = t.cloud.sendEnvelope(VALID, {
    text: true,
  });
  await until(() => t.messages.length === 1, "the valid message");
  await until(() => t.cloud.messages("ack").length === 1, "its ack");
  assert.equal(t.cloud.messages("ack")[0]?.json.header.txn, good);
  const warnings = t.logger.records.filter((r) => r.level === "warn" && /Dropped/.test(r.msg));
  assert.equal(warnings.length, 8);
  assert.equal(connects(t.events), 1);
  assert.ok(t.link.connected);
  t.link.send(delta());
  await until(() => t.link.pendingCount === 0, "sending still works");
});

Deno.test("reconnects after the cloud drops the connection, reusing the discovery result", async () => {
  await using t = await setup();
  t.cloud.reply = (_r, nth) => nth === 1 ? { none: true } : { ack: true };
  t.link.start();
  await until(() => t.link.connected, "connection");
  t.link.send(delta());
  await until(() => t.cloud.messages("unitStatus").length === 1, "first transmission");
  t.cloud.dropAll();
  await until(() => connects(t.events) === 2, "reconnection");
  assert.deepEqual(t.events, ["connect", "disconnect", "connect"]);
  assert.equal(t.cloud.discoveries.length, 1);
  // The message in flight on the dead socket is sent again on the new session.
  await until(() => t.link.pendingCount === 0, "resend on the new session");
  assert.deepEqual(t.cloud.messages("unitStatus").map((r) => r.session), [1, 2]);
});

Deno.test("HTTP 401 on the upgrade forgets discovery; a failing URL is dropped", async () => {
  await using t = await setup();
  // A closed port first: the link must skip it and use the next URL of the same discovery.
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = closed.addr.port;
  closed.close();
  let token = "token-1";
  t.cloud.discovery = () => ({
    status: 200,
    body: {
      connectionInfo: [`wss://localhost:${deadPort}/ws`, t.cloud.wsUrl],
      authToken: token,
    },
  });
  t.link.start();
  await until(() => t.link.connected, "connection");
  assert.equal(t.cloud.discoveries.length, 1);

  token = "token-2";
  t.cloud.validTokens = new Set(["token-2"]);
  t.cloud.dropAll();
  await until(() => connects(t.events) === 2, "reconnection with a new token");
  assert.equal(t.cloud.discoveries.length, 2);
  assert.deepEqual(
    t.cloud.upgrades.map((u) => [u.authorization, u.accepted]),
    [["Bearer token-1", true], ["Bearer token-1", false], ["Bearer token-2", true]],
  );
});

Deno.test("reconnect back-off: 5 tries doubling from 1 s or nextRequestDelay, then a new cycle", async () => {
  const delays: number[] = [];
  await using t = await setup({
    timing: { reconnectInitialMs: 1000, reconnectMaxMs: 600_000 },
    sleep: (ms) => {
      delays.push(ms);
      return new Promise((r) => setTimeout(r, 1));
    },
  });
  let nextRequestDelay = 0;
  t.cloud.discovery = () => ({
    status: nextRequestDelay ? 200 : 503,
    body: { nextRequestDelay, connectionInfo: [] },
  });
  t.link.start();
  await until(() => delays.length >= 6, "six waits");
  assert.deepEqual(delays.slice(0, 6), [1000, 2000, 4000, 8000, 1000, 2000]);

  nextRequestDelay = 300;
  const from = delays.length;
  await until(() => delays.length >= from + 5, "five more waits");
  // Once discovery named a delay, a cycle starts from it.
  assert.ok(delays.slice(from).join(",").includes("300,600,1200"), delays.join(","));
});

Deno.test("requestBlobUrls resolves with the matching blobUrls; no reply times out", async () => {
  await using t = await setup();
  t.link.start();
  t.cloud.reply = (r) => {
    if (r.json.data.messageType === "requestBlobUrls") {
      // An unrelated reply first: it must not resolve the request.
      t.cloud.sendEnvelope({ messageType: "blobUrls", correlationId: "other", items: [] });
      t.cloud.sendEnvelope({
        messageType: "blobUrls",
        correlationId: r.json.data.correlationId,
        items: [{ digest: "sha256:" + "a".repeat(64), urls: ["https://blobs.example/a"] }],
      });
    }
    return { ack: true };
  };
  const reply = await t.link.requestBlobUrls(["sha256:" + "a".repeat(64)], { timeoutMs: 3000 });
  assert.equal(reply.items.length, 1);
  assert.equal(reply.items[0]?.digest, "sha256:" + "a".repeat(64));
  await until(() => t.messages.length === 1, "the unrelated blobUrls to reach handlers");

  t.cloud.reply = () => ({ ack: true });
  await assert.rejects(
    t.link.requestBlobUrls(["sha256:" + "b".repeat(64)], { timeoutMs: 100 }),
    (err: unknown) => err instanceof AosError && err.code === "timeout",
  );
});

Deno.test("the durable outbox survives a restart and keeps only the latest full status", async () => {
  const dbPath = join(dir, `outbox_${crypto.randomUUID()}.db`);
  const cloud = await new TestCloud(pki, SYSTEM_ID).listen();
  try {
    cloud.reply = () => ({ none: true });
    const config = {
      serviceDiscoveryUrl: cloud.sdUrl,
      overrideServiceDiscoveryUrl: "",
      allowedHosts: [],
    };
    let txns: string[];
    {
      using db = openDatabase({ path: dbPath, migrations });
      const link = new CloudLink({
        systemId: SYSTEM_ID,
        config,
        credentials: () => creds,
        db,
        timing: { ...FAST, responseWaitMs: 60_000 },
      });
      link.start();
      const full = (n: number) =>
        buildUnitStatus({ isDeltaInfo: false, subjects: [{ codename: `s${n}` }] });
      link.send(full(1), { persist: { group: "unitStatus", supersede: true } });
      const status = link.send(full(2), { persist: { group: "unitStatus", supersede: true } });
      const alert = link.send(
        buildAlerts({
          items: [{
            tag: "systemAlert",
            timestamp: new Date(),
            node: { codename: "main" },
            message: "disk",
          }],
        }),
        { persist: true },
      );
      link.send(delta()); // not persisted: lost with the process
      txns = [status, alert];
      await until(() => cloud.received.length >= 3, "first transmissions");
      await link.close();
      assert.deepEqual(new Outbox(db).list().map((e) => e.txn), txns);
    }
    const before = cloud.received.length;
    cloud.reply = () => ({ ack: true });
    {
      using db = openDatabase({ path: dbPath, migrations });
      await using link = new CloudLink({
        systemId: SYSTEM_ID,
        config,
        credentials: () => creds,
        db,
        timing: FAST,
      });
      assert.equal(link.pendingCount, 2);
      link.start();
      await until(() => link.pendingCount === 0, "stored messages delivered");
      const after = cloud.received.slice(before).map((r) => String(r.json.header.txn));
      assert.deepEqual(after, txns);
      assert.equal(new Outbox(db).size, 0);
    }
  } finally {
    await cloud.close();
  }
});

Deno.test("hosts outside the allow-list are refused (discovery and WebSocket)", async () => {
  await using t = await setup();
  const refused: string[] = [];
  t.link.on("refusedHost", (e) => refused.push(`${e.purpose} ${e.host}:${e.port}`));
  t.cloud.discovery = () => ({
    status: 200,
    body: { connectionInfo: [`wss://127.0.0.1:${t.cloud.port}/ws`], authToken: "token-1" },
  });
  t.link.start();
  await until(() => refused.length >= 1, "refusal");
  assert.equal(refused[0], `websocket 127.0.0.1:${t.cloud.port}`);
  assert.equal(t.cloud.upgrades.length, 0);
  assert.ok(
    t.logger.records.some((r) => /Refused to dial 127\.0\.0\.1/.test(String(r.fields.error))),
  );
  await t.link.close();

  // A discovery URL taken from the online certificate (subject O=) must be allowed too.
  const key = join(dir, "org.key");
  const cert = join(dir, "org.crt");
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=unit/O=sd.evil.example",
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.ok(out.success);
  const refused2: string[] = [];
  await using link = new CloudLink({
    systemId: SYSTEM_ID,
    config: {
      serviceDiscoveryUrl: t.cloud.sdUrl,
      overrideServiceDiscoveryUrl: "",
      allowedHosts: ["*.example.com"],
    },
    credentials: () => ({ cert: read(cert), key: read(key), ca: creds.ca }),
    timing: FAST,
  });
  link.on("refusedHost", (e) => refused2.push(`${e.purpose} ${e.host}:${e.port}`));
  link.start();
  await until(() => refused2.length >= 1, "refusal of the certificate's discovery host");
  assert.equal(refused2[0], "discovery sd.evil.example:9000");
});

Deno.test("mTLS is enforced: a foreign client certificate and no certificate are rejected", async () => {
  await using t = await setup({
    credentials: () => ({
      cert: read(pki.otherCaClient.cert),
      key: read(pki.otherCaClient.key),
      ca: read(pki.ca.cert),
    }),
  });
  t.link.start();
  await until(() => t.cloud.tlsErrors.length >= 1, "TLS rejection");
  assert.equal(t.cloud.discoveries.length, 0);
  assert.equal(t.link.connected, false);

  // A WebSocket client without a certificate (and a valid token) is refused as well.
  const err = await new Promise<string>((resolve) => {
    const ws = new WebSocket(t.cloud.wsUrl, {
      ca: read(pki.ca.cert),
      headers: { Authorization: "Bearer token-1" },
    });
    ws.on("open", () => {
      ws.terminate();
      resolve("opened");
    });
    ws.on("error", (e: Error) => resolve(e.message));
  });
  assert.notEqual(err, "opened");
  assert.equal(t.cloud.upgrades.length, 0);
});

Deno.test("the watchdog drops a connection whose peer stops answering pings", async () => {
  await using t = await setup({
    autoPong: false,
    timing: { pingIntervalMs: 50, pongTimeoutMs: 100 },
  });
  t.link.start();
  await until(() => connects(t.events) >= 2, "reconnection after a silent peer");
  assert.ok(t.logger.records.some((r) => /silent after a ping/.test(r.msg)));
});

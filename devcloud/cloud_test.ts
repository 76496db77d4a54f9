/**
 * devcloud against CM's real cloud link: discovery and WSS with mTLS on loopback, acked
 * messages both ways, desired status, blob URLs whose blobs decrypt and verify, unit status,
 * alerts and monitoring.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { memoryLogger } from "@aos/shared/core";
import {
  buildAlerts,
  buildEnvelope,
  buildMonitoringData,
  buildUnitStatus,
  type CloudToUnitMessage,
  encodeEnvelope,
  type MessageOf,
  type NodeInfo,
} from "@aos/shared/cloudprotocol";
import {
  decryptBytes,
  decryptParamsFromInfo,
  sha256Hex,
  sha3_256Hex,
  verifyBlobSignature,
} from "@aos/shared/crypto";
import { openDatabase } from "@aos/shared/db";
import { imageIndexSchema, imageManifestSchema } from "@aos/shared/oci";
import { createSpaceRegistry } from "@aos/shared/space";
import { CloudLink, requestDiscovery } from "../cm/cloud/mod.ts";
import { CM_IMAGE_MIGRATIONS, createImageManager } from "../cm/image/mod.ts";
import { type Devcloud, type DevcloudEvent, startDevcloud } from "./cloud.ts";
import { serviceManifestSchema } from "./packer.ts";
import { DevPki } from "./pki.ts";

const SYSTEM_ID = "devcloud-unit-1";

const NODE: NodeInfo = {
  identity: { codename: "main", title: "main" },
  nodeGroupSubject: { codename: "main" },
  maxDmips: 10000,
  totalRam: 1 << 30,
  osInfo: { os: "linux", features: [] },
  cpus: [],
  attrs: {},
  partitions: [],
  runtimes: [],
  resources: [],
  state: "provisioned",
  isConnected: true,
};

async function until(what: string, cond: () => boolean, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function setup(dir: string) {
  const logger = memoryLogger();
  const cloud = await startDevcloud({
    workingDir: join(dir, "devcloud"),
    cloudListen: "localhost:0",
    blobsListen: "localhost:0",
    logger,
    ackTimeoutMs: 2000,
  });
  const rootfs = join(dir, "rootfs");
  await Deno.mkdir(join(rootfs, "bin"), { recursive: true });
  await Deno.writeTextFile(join(rootfs, "bin/app"), "#!/bin/sh\nsleep 1000\n", { mode: 0o755 });
  return { cloud, rootfs, logger };
}

function openLink(cloud: Devcloud, unit: { cert: string; key: string }) {
  const link = new CloudLink({
    systemId: SYSTEM_ID,
    config: {
      serviceDiscoveryUrl: cloud.discoveryUrl,
      overrideServiceDiscoveryUrl: "",
      allowedHosts: [],
    },
    credentials: () => ({ cert: unit.cert, key: unit.key, ca: cloud.pki.rootPem }),
    timing: { responseWaitMs: 3000, reconnectInitialMs: 50, minSessionMs: 0, closeTimeoutMs: 200 },
  });
  const messages: CloudToUnitMessage[] = [];
  link.onMessage((m) => {
    messages.push(m);
  });
  link.on("connect", () => {
    link.send(buildUnitStatus({ isDeltaInfo: false, nodes: [NODE], items: [], instances: [] }));
  });
  return { link, messages };
}

function lastDesired(messages: CloudToUnitMessage[]): MessageOf<"desiredStatus"> | undefined {
  return messages.filter((m): m is MessageOf<"desiredStatus"> => m.messageType === "desiredStatus")
    .at(-1);
}

Deno.test("devcloud: CM's cloud link connects, gets the desired status, fetches and verifies blobs, reports status", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_cloud_" });
  try {
    const { cloud, rootfs } = await setup(dir);
    await using _cloud = cloud;
    // The unit's online certificate names the cloud (issuer alternative name), as AosCloud's do.
    const unit = await cloud.pki.issueUnitCert(SYSTEM_ID, { discoveryUrl: cloud.cloudBaseUrl });
    const { link, messages } = openLink(cloud, unit);
    await using _link = link;
    link.start();

    await t.step(
      "discovery + WSS with mTLS; full unit status answered by the desired status",
      async () => {
        await until("desired status", () => lastDesired(messages) !== undefined);
        const desired = lastDesired(messages)!;
        assert.deepEqual(desired.items, []);
        assert.equal(desired.certificateChains[0]?.fingerprints.length, 2);
        await until("unit status at devcloud", () => cloud.units()[0]?.status.nodes.length === 1);
        const [u] = cloud.units();
        assert.equal(u?.systemId, SYSTEM_ID);
        assert.equal(u?.connected, true);
        // Both sides got their acks.
        await until("acks", () => link.pendingCount === 0 && cloud.unacked(SYSTEM_ID) === 0);
      },
    );

    let indexDigest = "";
    let itemId = "";
    await t.step(
      "deploy sends a desired status with the item, instances and signing chain",
      async () => {
        const manifest = serviceManifestSchema.parse({
          name: "sleeper",
          version: "1.0.0",
          cmd: ["/bin/app"],
        });
        const rec = await cloud.deploy("sleeper", { instances: 2, source: rootfs, manifest });
        await until(
          "desired status with the item",
          () => lastDesired(messages)?.items.length === 1,
        );
        const desired = lastDesired(messages)!;
        assert.equal(desired.items[0]?.indexDigest, rec.indexDigest);
        assert.equal(desired.items[0]?.item.type, "service");
        assert.equal(desired.instances[0]?.numInstances, 2);
        assert.equal(desired.instances[0]?.item.id, rec.id);
        indexDigest = rec.indexDigest;
        itemId = rec.id;
        await until("desired status acked", () => cloud.unacked(SYSTEM_ID) === 0);
      },
    );

    await t.step(
      "blob URLs: every blob of the image downloads, decrypts and verifies",
      async () => {
        const desired = lastDesired(messages)!;
        const fetchBlob = async (digest: string): Promise<Uint8Array> => {
          const answer = await link.requestBlobUrls([digest]);
          const [info] = answer.items;
          assert.ok(info, `no blob info for ${digest}`);
          assert.equal(info.digest, digest);
          assert.equal(info.decryptInfo?.blockAlg, "AES256/CBC/PKCS7PADDING");
          const res = await fetch(info.urls[0]!);
          assert.equal(res.status, 200);
          const encrypted = new Uint8Array(await res.arrayBuffer());
          assert.equal(encrypted.byteLength, info.size);
          assert.equal(sha3_256Hex(encrypted), info.sha256);
          const plain = await decryptBytes(decryptParamsFromInfo(info.decryptInfo!), encrypted);
          assert.equal(`sha256:${sha256Hex(plain)}`, digest);
          await verifyBlobSignature(plain, info.signInfo!, {
            certificates: desired.certificates,
            chains: desired.certificateChains,
            roots: [cloud.pki.root],
          });
          return plain;
        };
        const text = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b));
        const index = imageIndexSchema.parse(text(await fetchBlob(indexDigest)));
        const manifest = imageManifestSchema.parse(
          text(await fetchBlob(index.manifests[0]!.digest)),
        );
        for (const d of [manifest.config, manifest.aosItemConfig!, ...manifest.layers]) {
          await fetchBlob(d.digest);
        }
        // A second request serves the same bytes (encrypted once per blob).
        const again = await link.requestBlobUrls([indexDigest]);
        const first = await link.requestBlobUrls([indexDigest]);
        assert.equal(again.items[0]?.sha256, first.items[0]?.sha256);
        // Unknown digests get no entry.
        const none = await link.requestBlobUrls([`sha256:${"0".repeat(64)}`]);
        assert.deepEqual(none.items, []);
      },
    );

    await t.step("CM's image manager installs the deployed image through the link", async () => {
      const desired = lastDesired(messages)!;
      using db = openDatabase({ path: join(dir, "cm.db"), migrations: CM_IMAGE_MIGRATIONS });
      await using images = await createImageManager({
        database: db,
        installPath: join(dir, "cm", "install"),
        downloadPath: join(dir, "cm", "download"),
        blobInfo: {
          requestBlobUrls: async (digests, signal) =>
            (await link.requestBlobUrls(digests, signal ? { signal } : {})).items,
        },
        caCert: cloud.pki.rootPem,
        space: createSpaceRegistry(),
        removeOutdatedPeriodMs: 0,
        blobs: { requireSignature: true, maxAttempts: 2, retryDelayMs: 10 },
      });
      const [status] = await images.downloadItems(
        [{ id: itemId, type: "service", version: "1.0.0", indexDigest }],
        { certificates: desired.certificates, chains: desired.certificateChains },
      );
      assert.equal(status?.error, undefined, status?.error?.message ?? "");
      assert.equal(status?.state, "pending");
      assert.equal(await images.hasBlob(indexDigest), true);
    });

    await t.step("unit status deltas, alerts and monitoring are kept", async () => {
      link.send(buildUnitStatus({
        isDeltaInfo: true,
        items: [{ item: { id: itemId, type: "service" }, version: "1.0.0", state: "installed" }],
        instances: [{
          item: { id: itemId },
          subject: lastDesired(messages)!.instances[0]!.subject,
          version: "1.0.0",
          instances: [0, 1].map((i) => ({
            node: { codename: "main" },
            runtime: { codename: "runc" },
            instance: i,
            state: "active" as const,
          })),
        }],
      }));
      const now = new Date();
      link.send(buildAlerts({
        items: [{ tag: "systemAlert", timestamp: now, node: { codename: "main" }, message: "hi" }],
      }));
      link.send(buildMonitoringData({
        nodes: [{
          node: { codename: "main" },
          nodeStates: [],
          items: [{ timestamp: now, ram: 1000, cpu: 5, download: 0, upload: 0, partitions: [] }],
        }],
        instances: [],
      }));
      await until("service done", () => cloud.status().services[0]?.units[0]?.done === true);
      await until("alerts", () => cloud.alerts().length === 1);
      await until("monitoring", () => cloud.units()[0]?.monitoring !== undefined);
      assert.equal(cloud.units()[0]?.status.nodes.length, 1, "the delta kept the nodes");
      assert.equal(cloud.alerts()[0]?.tag, "systemAlert");
    });

    await t.step("remove empties the desired items", async () => {
      await cloud.remove("sleeper");
      await until("empty desired status", () => lastDesired(messages)?.items.length === 0);
      await assert.rejects(cloud.remove("sleeper"), /not deployed/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("devcloud: refuses foreign client certificates and unknown tokens; state survives a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_cloud_" });
  try {
    const { cloud, rootfs } = await setup(dir);
    {
      await using _cloud = cloud;
      const other = await DevPki.open(join(dir, "other"));
      const foreign = await other.issueUnitCert(SYSTEM_ID);
      await assert.rejects(
        requestDiscovery({
          url: cloud.discoveryUrl,
          systemId: SYSTEM_ID,
          credentials: { ...foreign, ca: cloud.pki.rootPem },
          timeoutMs: 5000,
        }),
        /Service discovery .* failed/,
      );
      const unit = await cloud.pki.issueUnitCert(SYSTEM_ID);
      const answer = await requestDiscovery({
        url: cloud.discoveryUrl,
        systemId: SYSTEM_ID,
        credentials: { ...unit, ca: cloud.pki.rootPem },
        timeoutMs: 5000,
      });
      assert.deepEqual(answer.connectionInfo, [cloud.wsUrl]);
      assert.ok(answer.authToken.length > 0);

      const { WebSocket } = await import("ws");
      const status = await new Promise<string>((resolve) => {
        const ws = new WebSocket(cloud.wsUrl, {
          ca: cloud.pki.rootPem,
          cert: unit.cert,
          key: unit.key,
          headers: { Authorization: "Bearer nope" },
        });
        ws.on("error", (err: Error) => resolve(err.message));
        ws.on("open", () => {
          ws.terminate();
          resolve("opened");
        });
      });
      assert.match(status, /401/);

      const manifest = serviceManifestSchema.parse({ name: "a", version: "1", cmd: ["/bin/app"] });
      await cloud.deploy("a", { instances: 3, source: rootfs, manifest });
    }
    await using again = await startDevcloud({
      workingDir: join(dir, "devcloud"),
      cloudListen: "localhost:0",
      blobsListen: "localhost:0",
    });
    assert.deepEqual(again.services().map((s) => [s.name, s.instances]), [["a", 3]]);
    assert.equal(again.pki.root.fingerprintSha256, cloud.pki.root.fingerprintSha256);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("devcloud: resends unacked messages with the same txn, acks duplicates without handling them twice", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_cloud_" });
  try {
    await using cloud = await startDevcloud({
      workingDir: join(dir, "devcloud"),
      cloudListen: "localhost:0",
      blobsListen: "localhost:0",
      ackTimeoutMs: 100,
      maxResends: 2,
    });
    const events: DevcloudEvent[] = [];
    cloud.subscribe((e) => events.push(e));
    const unit = await cloud.pki.issueUnitCert(SYSTEM_ID);
    const credentials = { ...unit, ca: cloud.pki.rootPem };
    const { authToken } = await requestDiscovery({
      url: cloud.discoveryUrl,
      systemId: SYSTEM_ID,
      credentials,
      timeoutMs: 5000,
    });
    const { WebSocket } = await import("ws");
    const ws = new WebSocket(cloud.wsUrl, {
      ca: credentials.ca,
      cert: credentials.cert,
      key: credentials.key,
      headers: { Authorization: `Bearer ${authToken}` },
    });
    const frames: { header: { txn: string }; data: { messageType: string } }[] = [];
    ws.on("message", (data: Uint8Array) => frames.push(JSON.parse(new TextDecoder().decode(data))));
    const closed = new Promise((r) => ws.on("close", r));
    await new Promise((resolve, reject) => {
      ws.on("open", resolve);
      ws.on("error", reject);
    });
    const status = encodeEnvelope(buildEnvelope(
      { systemId: SYSTEM_ID, txn: crypto.randomUUID(), createdAt: new Date() },
      buildUnitStatus({ isDeltaInfo: false, nodes: [NODE] }),
    ));
    ws.send(status);
    ws.send(status);
    // Not ours to ack: the desired status comes 1 + 2 times with one txn, then is given up.
    await until("dropped", () => events.some((e) => e.type === "dropped"));
    const desired = frames.filter((f) => f.data.messageType === "desiredStatus");
    assert.equal(desired.length, 3);
    assert.equal(new Set(desired.map((f) => f.header.txn)).size, 1);
    const acks = frames.filter((f) => f.data.messageType === "ack");
    assert.equal(acks.length, 2, "each transmission is acked");
    const handled = events.filter((e) => e.type === "message");
    assert.equal(handled.length, 1, "a duplicate txn is handled once");
    // Garbage is not acked and does not end the session.
    ws.send(new TextEncoder().encode("{not json"));
    await until("invalid", () => events.some((e) => e.type === "invalid"));
    assert.equal(frames.filter((f) => f.data.messageType === "ack").length, 2);
    ws.close();
    await closed;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("devcloud: dropSessions ends the unit's session, refuses upgrades for a while; blobsBaseUrl replaces the blobs URL", async () => {
  const dir = await Deno.makeTempDir({ prefix: "devcloud_cloud_" });
  try {
    const logger = memoryLogger();
    await using cloud = await startDevcloud({
      workingDir: join(dir, "devcloud"),
      cloudListen: "localhost:0",
      blobsListen: "localhost:0",
      blobsBaseUrl: "http://localhost:1/via-proxy",
      logger,
    });
    assert.equal(cloud.blobsUrl, "http://localhost:1/via-proxy");
    assert.match(cloud.blobServerUrl, /^http:\/\/localhost:\d+\/blobs$/);
    const events: string[] = [];
    cloud.subscribe((e) => {
      if (e.type === "connected" || e.type === "disconnected") events.push(e.type);
    });
    const unit = await cloud.pki.issueUnitCert(SYSTEM_ID);
    const { link } = openLink(cloud, unit);
    await using _link = link;
    link.start();
    await until("connected", () => events.includes("connected"));
    assert.equal(cloud.dropSessions({ refuseForMs: 300 }), 1);
    assert.deepEqual(events, ["connected", "disconnected"]);
    assert.equal(cloud.units()[0]?.connected, false);
    await until("reconnected", () => events.length === 3);
    assert.deepEqual(events, ["connected", "disconnected", "connected"]);
    assert.ok(
      logger.records.some((r) => /upgrade refused: sessions are being dropped/.test(r.msg)),
      "the unit's first attempts were refused",
    );
    assert.equal(cloud.dropSessions(), 1);
    await until("reconnected at once", () => events.length === 5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

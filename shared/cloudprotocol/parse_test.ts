import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { isMessage, MESSAGE_TYPES, parseCloudMessage } from "./parse.ts";
import type { AlertOf } from "./unit_messages.ts";

const HEADER = { version: 7, systemId: "unit-1", createdAt: "2026-03-02T10:00:00.5Z", txn: "t-1" };

function parse(data: unknown, header: unknown = HEADER) {
  return parseCloudMessage(JSON.stringify({ header, data }));
}

function parseError(input: Uint8Array | string, options = {}): AosError {
  try {
    parseCloudMessage(input, options);
  } catch (err) {
    assert.ok(err instanceof AosError, String(err));
    assert.equal(err.code, "invalidArgument");
    return err;
  }
  assert.fail("expected an error");
}

function dataError(data: unknown, header: unknown = HEADER): string {
  return parseError(JSON.stringify({ header, data })).message;
}

const test = (name: string, fn: () => void) => Deno.test({ name, permissions: "none", fn });

test("parse: every message type accepts a minimal body or reports what is missing", () => {
  assert.equal(MESSAGE_TYPES.length, 26);
  for (const messageType of MESSAGE_TYPES) {
    try {
      const { message } = parse({ messageType });
      assert.equal(message.messageType, messageType);
    } catch (err) {
      // Only required objects and enums may be missing-is-error; the message names them.
      assert.match(
        (err as Error).message,
        new RegExp(`^Invalid ${messageType}: ${messageType}\\.`),
      );
    }
  }
});

test("parse: keys match case-insensitively at every level, messageType value too", () => {
  const { header, message } = parse(
    {
      MESSAGETYPE: "DesiredStatus",
      Items: [{
        ITEM: { ID: "i-1", Type: "service" },
        Version: "1.0",
        owner: { id: "o" },
        indexdigest: "sha256:aa",
      }],
      instances: [{ item: { id: "i-1" }, Subject: { Id: "s-1" }, NUMINSTANCES: 3 }],
    },
    { VERSION: 7, SystemID: "unit-1", TXN: "t-9" },
  );
  assert.equal(header.txn, "t-9");
  assert.equal(header.systemId, "unit-1");
  assert.ok(isMessage(message, "desiredStatus"));
  assert.deepEqual(message.items[0]?.item, { id: "i-1", type: "service" });
  assert.equal(message.items[0]?.indexDigest, "sha256:aa");
  assert.equal(message.instances[0]?.subject.id, "s-1");
  assert.equal(message.instances[0]?.numInstances, 3);
});

test("parse: an exact-case key wins over a differently cased duplicate", () => {
  const { message } = parse({ messageType: "nack", RetryAfter: 1, retryAfter: 2 });
  assert.ok(isMessage(message, "nack"));
  assert.equal(message.retryAfter, 2);
});

test("parse: missing scalars get the spec defaults; absent lists read as empty", () => {
  const { message: nack } = parse({ messageType: "nack" });
  assert.ok(isMessage(nack, "nack"));
  assert.equal(nack.retryAfter, 500);

  const { message } = parse({
    messageType: "desiredStatus",
    instances: [{ item: { id: "i" }, subject: { id: "s" } }],
    items: [{ item: { id: "i", type: "service" }, owner: { id: "o" } }],
  });
  assert.ok(isMessage(message, "desiredStatus"));
  // Schema defaults, not the C++ zeroes (spec §8 #10).
  assert.equal(message.instances[0]?.numInstances, 1);
  assert.equal(message.instances[0]?.priority, 0);
  assert.deepEqual(message.instances[0]?.labels, []);
  assert.equal(message.items[0]?.version, "");
  assert.equal(message.items[0]?.indexDigest, "");
  assert.deepEqual(message.nodes, []);
  assert.deepEqual(message.subjects, []);
  assert.deepEqual(message.certificates, []);
  assert.equal(message.unitConfig, undefined);

  const { message: blobs } = parse({
    messageType: "blobUrls",
    items: [{ digest: "sha256:ab", decryptInfo: { blockIv: "AA==", blockKey: "AA==" } }],
  });
  assert.ok(isMessage(blobs, "blobUrls"));
  assert.equal(blobs.items[0]?.decryptInfo?.blockAlg, "AES256/CBC/pkcs7");
  assert.equal(blobs.items[0]?.size, 0);
  assert.equal(blobs.items[0]?.sha256, "");

  const { header } = parse({ messageType: "ack" }, { systemId: "unit-1", txn: "t" });
  assert.equal(header.version, 7);
  assert.equal(header.createdAt, undefined);
});

test("parse: null reads as absent, unknown keys are ignored", () => {
  const { message } = parse({
    messageType: "unitStatus",
    correlationId: null,
    isDeltaInfo: null,
    nodes: null,
    surprise: { deeply: ["nested"] },
    items: [{ item: { id: "i", extra: 1 }, version: "1", state: "installed", future: true }],
  });
  assert.ok(isMessage(message, "unitStatus"));
  assert.equal(message.correlationId, undefined);
  assert.equal(message.isDeltaInfo, false);
  assert.equal(message.nodes, undefined);
  assert.ok(!("surprise" in message));
  assert.deepEqual(message.items, [{ item: { id: "i" }, version: "1", state: "installed" }]);
});

test("parse: a __proto__ key neither pollutes nor leaks into the result", () => {
  const text = '{"header":{"systemId":"u","txn":"t"},"data":{"messageType":"nack",' +
    '"__proto__":{"retryAfter":9999,"polluted":true}}}';
  const { message } = parseCloudMessage(text);
  assert.ok(isMessage(message, "nack"));
  assert.equal(message.retryAfter, 500);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.getPrototypeOf(message), Object.prototype);
});

test("parse: schema and C++ forms of each §8 difference give the same model", () => {
  // #1, #2: alert tag and subject key.
  const alerts = (items: unknown[]) => {
    const { message } = parse({ messageType: "alerts", items });
    assert.ok(isMessage(message, "alerts"));
    return message.items;
  };
  const base = { timestamp: "2026-03-02T10:00:00Z", item: { id: "i" }, instance: 0 };
  const [schemaAlloc, cppAlloc] = alerts([
    { ...base, tag: "deviceAllocateAlert", subject: { id: "s" }, node: {}, deviceId: "d" },
    { ...base, tag: "resourceAllocateAlert", subject: { id: "s" }, node: {}, deviceId: "d" },
  ]);
  assert.deepEqual(schemaAlloc, cppAlloc);
  assert.equal(cppAlloc?.tag, "resourceAllocateAlert");
  const [schemaInst, cppInst] = alerts([
    { ...base, tag: "updateItemInstanceAlert", subjectId: { id: "s" }, version: "1", message: "m" },
    { ...base, tag: "updateItemInstanceAlert", subject: { id: "s" }, version: "1", message: "m" },
  ]) as AlertOf<"updateItemInstanceAlert">[];
  assert.deepEqual(schemaInst, cppInst);
  assert.deepEqual(cppInst?.subject, { id: "s" });

  // #3: env var status subject key.
  const statuses = (s: unknown) => {
    const { message } = parse({ messageType: "overrideEnvVarsStatus", statuses: [s] });
    assert.ok(isMessage(message, "overrideEnvVarsStatus"));
    return message.statuses[0];
  };
  assert.deepEqual(
    statuses({ item: { id: "i" }, subjectId: { id: "s" }, instance: 0, name: "A" }),
    statuses({ item: { id: "i" }, subject: { id: "s" }, instance: 0, name: "A" }),
  );

  // #4: connected / isConnected.
  const nodeState = (s: unknown) => {
    const { message } = parse({
      messageType: "monitoringData",
      nodes: [{ node: { codename: "n" }, nodeStates: [s], items: [] }],
    });
    assert.ok(isMessage(message, "monitoringData"));
    return message.nodes[0]?.nodeStates[0];
  };
  const ts = "2026-03-02T10:00:00Z";
  assert.equal(
    nodeState({ timestamp: ts, state: "provisioned", connected: true })?.isConnected,
    true,
  );
  assert.equal(
    nodeState({ timestamp: ts, state: "provisioned", isConnected: true })?.isConnected,
    true,
  );
  assert.equal(
    nodeState({ timestamp: ts, state: "paused", isConnected: false, connected: true })?.isConnected,
    false,
  );

  // #5: failed / error.
  for (const status of ["failed", "error", "ERROR"]) {
    const { message } = parse({ messageType: "pushLog", node: { codename: "n" }, status });
    assert.ok(isMessage(message, "pushLog"));
    assert.equal(message.status, "error");
  }

  // #6: unitSecrets as list (C++), single object (schema) and map.
  const secrets = (unitSecrets: unknown) => {
    const { message } = parse({
      messageType: "renewCertificatesNotification",
      certificates: [],
      unitSecrets,
    });
    assert.ok(isMessage(message, "renewCertificatesNotification"));
    return message.unitSecrets;
  };
  const expected = { version: "7", nodes: [{ node: { codename: "main" }, secret: "pw" }] };
  assert.deepEqual(
    secrets({ version: "7", nodes: [{ node: { codename: "main" }, secret: "pw" }] }),
    expected,
  );
  assert.deepEqual(
    secrets({ version: 7, nodes: { node: { codename: "main" }, secret: "pw" } }),
    expected,
  );
  assert.deepEqual(secrets({ version: 7, nodes: { main: "pw" } }), expected);
  assert.deepEqual(secrets({ version: 7, nodes: { main: { secret: "pw" } } }), expected);
  assert.deepEqual(secrets({ version: 7 }).nodes, []);

  // #7: sha256 hex or base64.
  const sha = (sha256: string) => {
    const { message } = parse({ messageType: "blobUrls", items: [{ sha256 }] });
    assert.ok(isMessage(message, "blobUrls"));
    return message.items[0]?.sha256;
  };
  const hex = "a49367e1e25d4f8af3bf2c5ac59ceab97319dacc731e26a4ef2e1a07346dc48c";
  const b64 = btoa(String.fromCharCode(...hex.match(/../g)!.map((h) => parseInt(h, 16))));
  assert.equal(sha(hex), hex);
  assert.equal(sha(hex.toUpperCase()), hex);
  assert.equal(sha(b64), hex);

  // #14: minTimeout as seconds or a duration string, read as milliseconds.
  const timeout = (minTimeout: unknown) => {
    const { message } = parse({
      messageType: "desiredStatus",
      unitConfig: {
        version: "1",
        formatVersion: "7",
        nodes: [{
          nodeGroupSubject: { codename: "g" },
          priority: 1,
          alertRules: { cpu: { minThreshold: 1, maxThreshold: 2, minTimeout } },
        }],
      },
    });
    assert.ok(isMessage(message, "desiredStatus"));
    return message.unitConfig?.nodes[0]?.alertRules?.cpu?.minTimeout;
  };
  assert.equal(timeout(30), 30_000);
  assert.equal(timeout("30s"), 30_000);
  assert.equal(timeout("PT1M"), 60_000);
  assert.equal(timeout(undefined), 0);

  // #12: unknown identity and certificate types pass through.
  const { message } = parse({
    messageType: "issuedUnitCertificates",
    certificates: [{ type: "azure-iot", node: { codename: "n", type: "node-subject" } }],
  });
  assert.ok(isMessage(message, "issuedUnitCertificates"));
  assert.equal(message.certificates[0]?.type, "azure-iot");
  assert.equal(message.certificates[0]?.node.type, "node-subject");
});

test("parse: timestamps of any RFC 3339 precision become Dates", () => {
  const { message } = parse({
    messageType: "requestLog",
    logType: "systemLog",
    filter: { from: "2026-03-02T09:00:00Z", till: "2026-03-02T10:00:00.123456+02:00" },
  });
  assert.ok(isMessage(message, "requestLog"));
  assert.equal(message.filter.from?.toISOString(), "2026-03-02T09:00:00.000Z");
  assert.equal(message.filter.till?.toISOString(), "2026-03-02T08:00:00.123Z");
  assert.deepEqual(message.filter.nodeIds, []);
});

test("parse: bad input gives invalidArgument saying what and where", () => {
  assert.equal(
    dataError({
      messageType: "desiredStatus",
      items: [
        { item: { id: "a" }, owner: {}, version: "1" },
        { item: { id: "b" }, owner: {}, version: "1" },
        { item: { id: "c" }, owner: {}, version: 3 },
      ],
    }),
    "Invalid desiredStatus: desiredStatus.items[2].version: expected string, received number",
  );
  assert.match(
    dataError({ messageType: "unitStatus", items: [{ item: {}, version: "1", state: "done" }] }),
    /unitStatus\.items\[0\]\.state: expected one of/,
  );
  assert.match(
    dataError({ messageType: "startProvisioningRequest", password: "x" }),
    /startProvisioningRequest\.node: expected object/,
  );
  assert.match(
    dataError({ messageType: "alerts", items: [{ tag: "fooAlert" }] }),
    /alerts\.items\[0\]\.tag: unknown tag "fooAlert"/,
  );
  assert.match(
    dataError({ messageType: "alerts", items: [{ tag: "systemAlert", timestamp: "yesterday" }] }),
    /alerts\.items\[0\]\.timestamp: expected an RFC 3339 timestamp/,
  );
  assert.match(
    dataError({ messageType: "blobUrls", items: [{ sha256: "xyz" }] }),
    /blobUrls\.items\[0\]\.sha256: expected 64 hex digits/,
  );
  assert.match(
    dataError({ messageType: "stateRequest", instance: -1, item: {}, subject: {} }),
    /stateRequest\.instance: Too small/,
  );
  assert.match(
    dataError({ messageType: "launchRockets" }),
    /unknown data\.messageType "launchRockets"/,
  );
  assert.match(dataError({ nothing: 1 }), /unknown data\.messageType null/);
  assert.match(
    dataError({ messageType: "ack" }, { version: 6, systemId: "u", txn: "t" }),
    /header\.version/,
  );
  assert.match(dataError({ messageType: "ack" }, { txn: 5 }), /header\.txn: expected string/);
  assert.match(parseError('{"data":{"messageType":"ack"}}').message, /header is missing/);
  assert.match(parseError('{"header":{}}').message, /data is missing/);
  assert.match(parseError("[1,2]").message, /envelope is not a JSON object/);
  assert.match(parseError("{not json").message, /not JSON/);
  assert.match(parseError(new Uint8Array([0x7b, 0xff, 0x7d])).message, /not valid UTF-8/);
  assert.match(
    parseError(JSON.stringify({ header: HEADER, data: { messageType: "desiredStatus" } }), {
      accept: ["ack"],
    }).message,
    /"desiredStatus" is not expected here/,
  );
});

test("parse: oversized messages and lists are rejected", () => {
  const big = JSON.stringify({
    header: HEADER,
    data: { messageType: "ack", pad: "x".repeat(2000) },
  });
  assert.match(parseError(big, { maxBytes: 1000 }).message, /bytes exceed the limit of 1000/);
  assert.match(
    parseError(new TextEncoder().encode(big), { maxBytes: 1000 }).message,
    /exceed the limit/,
  );
  // Multi-byte text is measured in UTF-8 bytes, not UTF-16 units.
  const wide = JSON.stringify({
    header: HEADER,
    data: { messageType: "ack", pad: "é".repeat(600) },
  });
  assert.ok(wide.length < 1000);
  assert.match(parseError(wide, { maxBytes: 1000 }).message, /exceed the limit/);
  parseCloudMessage(wide, { maxBytes: 2000 });

  const certs = Array.from({ length: 33 }, () => ({ certificate: "", fingerprint: "" }));
  assert.match(
    dataError({ messageType: "desiredStatus", certificates: certs }),
    /desiredStatus\.certificates: Too big: expected array to have <=32 items/,
  );
  const digests = Array.from({ length: 1025 }, (_, i) => `sha256:${i}`);
  assert.match(dataError({ messageType: "requestBlobUrls", digests }), /digests: Too big/);
});

test("parse: bytes and text give the same result", () => {
  const text = JSON.stringify({ header: HEADER, data: { messageType: "ack", correlationId: "c" } });
  assert.deepEqual(parseCloudMessage(new TextEncoder().encode(text)), parseCloudMessage(text));
  const { header, message } = parseCloudMessage(text);
  assert.equal(header.createdAt?.toISOString(), "2026-03-02T10:00:00.500Z");
  assert.deepEqual(message, { correlationId: "c", messageType: "ack" });
});

import assert from "node:assert/strict";
import { parseCloudMessage } from "./parse.ts";
import type { AlertOf } from "./unit_messages.ts";
import { EXAMPLES_URL as EXAMPLES, HAVE_SPEC } from "./_test_samples.ts";

interface Example {
  name: string;
  direction: string;
  message: { header: { txn: string; systemId: string }; data: { messageType: string } };
}

async function loadExamples(): Promise<{ systemId: string; all: Example[] }> {
  const file = JSON.parse(await Deno.readTextFile(EXAMPLES));
  return {
    systemId: file.systemId,
    all: [...file.examples, ...file.extraExamples, ...file.cppVariants],
  };
}

Deno.test({
  name: "every example of cloudprotocol-examples.json parses",
  ignore: !HAVE_SPEC,
  permissions: { read: [EXAMPLES] },
  async fn() {
    const { systemId, all } = await loadExamples();
    assert.equal(all.length, 27);
    const failures: string[] = [];
    for (const ex of all) {
      try {
        const { header, message } = parseCloudMessage(JSON.stringify(ex.message));
        assert.equal(header.version, 7);
        assert.equal(header.systemId, systemId);
        assert.equal(header.txn, ex.message.header.txn);
        assert.ok(header.createdAt instanceof Date);
        assert.equal(message.messageType, ex.message.data.messageType);
      } catch (err) {
        failures.push(`${ex.name}: ${(err as Error).message}`);
      }
    }
    assert.deepEqual(failures, []);
  },
});

Deno.test({
  name: "examples: C++ variants normalise to the same model as the schema forms",
  ignore: !HAVE_SPEC,
  permissions: { read: [EXAMPLES] },
  async fn() {
    const { all } = await loadExamples();
    const byName = (name: string) => {
      const ex = all.find((e) => e.name === name);
      assert.ok(ex, name);
      return parseCloudMessage(new TextEncoder().encode(JSON.stringify(ex.message))).message;
    };

    const schemaRenew = byName("renewCertificatesNotification (schema shape)");
    const cppRenew = byName("renewCertificatesNotification (AosCore shape)");
    assert.ok(schemaRenew.messageType === "renewCertificatesNotification");
    assert.ok(cppRenew.messageType === "renewCertificatesNotification");
    const expectedSecrets = {
      version: "7",
      nodes: [{ node: { codename: "main" }, secret: "tpm-owner-pass" }],
    };
    assert.deepEqual(schemaRenew.unitSecrets, expectedSecrets);
    assert.deepEqual(cppRenew.unitSecrets, expectedSecrets);

    const monitoring = byName("monitoringData with nodeStates (AosCore shape)");
    assert.ok(monitoring.messageType === "monitoringData");
    assert.equal(monitoring.nodes[0]?.nodeStates[0]?.isConnected, true);

    const alerts = byName("alerts: resource allocate + instance alert (AosCore shape)");
    assert.ok(alerts.messageType === "alerts");
    assert.deepEqual(alerts.items.map((a) => a.tag), [
      "resourceAllocateAlert",
      "updateItemInstanceAlert",
    ]);
    const instanceAlert = alerts.items[1] as AlertOf<"updateItemInstanceAlert">;
    assert.equal(instanceAlert.subject.id, "36f675cc-81e7-4ef5-a8e2-5d940ed90475");

    const pushLog = byName("pushLog error (AosCore shape)");
    assert.ok(pushLog.messageType === "pushLog");
    assert.equal(pushLog.status, "error");
    assert.deepEqual(pushLog.errorInfo, { aosCode: 5, exitCode: 0, message: "log not found" });

    const desired = byName("desiredStatus");
    assert.ok(desired.messageType === "desiredStatus");
    assert.equal(desired.unitConfig?.nodes[0]?.alertRules?.cpu?.minTimeout, 30_000);
    assert.equal(desired.instances[0]?.numInstances, 2);
    assert.equal(desired.items.length, 2);

    const blobs = byName("blobUrls");
    assert.ok(blobs.messageType === "blobUrls");
    assert.equal(
      blobs.items[0]?.sha256,
      "a49367e1e25d4f8af3bf2c5ac59ceab97319dacc731e26a4ef2e1a07346dc48c",
    );
    assert.equal(
      blobs.items[0]?.signInfo?.trustedTimestamp.toISOString(),
      "2026-03-01T09:00:00.000Z",
    );
  },
});

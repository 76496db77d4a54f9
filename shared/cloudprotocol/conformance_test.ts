/**
 * Every message we build validates against the official v7 schema, except for the documented
 * schema-vs-AosCore differences of spec §8: for those, the raw C++ form is shown to fail, the
 * minimal documented adjustment to pass, and the C++ form is asserted on its own.
 */
import assert from "node:assert/strict";
import * as b from "./build.ts";
import * as c from "./build_cloud.ts";
import { parseCloudMessage } from "./parse.ts";
import {
  HAVE_SPEC,
  loadValidator,
  sampleAlerts,
  sampleBlobUrls,
  sampleDesiredStatus,
  sampleEnvVarsStatus,
  sampleMonitoring,
  samplePushLogError,
  sampleRenew,
  sampleRequestLog,
  sampleUnitStatus,
  SCHEMA_URL,
  small,
} from "./_test_samples.ts";

const { T0, ITEM, SUBJECT, MAIN, CORR, ERR, DIGEST, CHECKSUM } = small;
const HEADER = {
  systemId: "2f1c0f6e4b8a4d2e9c3a7b5d1e0f9a8c",
  txn: "6b0d549b-6f03-475a-9600-a35a099950d8",
  createdAt: T0,
};

type Wire = b.WireData;
type Json = Record<string, unknown>;

/** A known difference: how to turn our C++ form into the schema form, and what to assert. */
interface KnownDifference {
  /** Spec §8 row. */
  ref: string;
  /** Minimal change that makes the C++ form schema-valid (mutates a deep copy). */
  toSchemaForm(data: Json): void;
  /** Asserts the C++ form. */
  assertCppForm(data: Json): void;
}

const items = (data: Json) => data.items as Json[];
const byTag = (data: Json, tag: string) => items(data).filter((a) => a.tag === tag);

const ALERT_DIFFERENCES: KnownDifference[] = [
  {
    ref: "§8 #1 resourceAllocateAlert (schema deviceAllocateAlert)",
    toSchemaForm: (d) =>
      byTag(d, "resourceAllocateAlert").forEach((a) => a.tag = "deviceAllocateAlert"),
    assertCppForm: (d) => assert.equal(byTag(d, "resourceAllocateAlert").length, 1),
  },
  {
    ref: "§8 #2 updateItemInstanceAlert.subject (schema subjectId)",
    toSchemaForm: (d) =>
      byTag(d, "updateItemInstanceAlert").forEach((a) => {
        a.subjectId = a.subject;
        delete a.subject;
      }),
    assertCppForm: (d) => {
      const [a] = byTag(d, "updateItemInstanceAlert");
      assert.deepEqual(a?.subject, SUBJECT);
      assert.ok(!("subjectId" in a!));
    },
  },
];

/** Every message we build, with its known differences (empty = must validate as is). */
const CASES: { name: string; data: Wire; differences: KnownDifference[] }[] = [
  // unit → cloud
  { name: "ack", data: b.buildAck(), differences: [] },
  { name: "ack with correlationId", data: b.buildAck({ correlationId: CORR }), differences: [] },
  { name: "nack", data: b.buildNack({ retryAfter: 2000 }), differences: [] },
  { name: "unitStatus (full)", data: b.buildUnitStatus(sampleUnitStatus), differences: [] },
  {
    name: "unitStatus (delta)",
    data: b.buildUnitStatus({
      isDeltaInfo: true,
      items: [{ item: { ...ITEM, type: "service" }, version: "1.2.0", state: "downloading" }],
    }),
    differences: [],
  },
  {
    name: "monitoringData",
    data: b.buildMonitoringData(sampleMonitoring),
    // §8 #4: we send both isConnected (C++) and connected (schema), so no adjustment is needed.
    differences: [],
  },
  { name: "alerts", data: b.buildAlerts(sampleAlerts), differences: ALERT_DIFFERENCES },
  {
    name: "alerts (schema-compatible kinds only)",
    data: b.buildAlerts({
      items: sampleAlerts.items.filter((a) =>
        a.tag !== "resourceAllocateAlert" && a.tag !== "updateItemInstanceAlert"
      ),
    }),
    differences: [],
  },
  {
    name: "requestBlobUrls",
    data: b.buildRequestBlobUrls({ correlationId: CORR, digests: [DIGEST] }),
    differences: [],
  },
  {
    name: "newState",
    data: b.buildNewState({
      item: ITEM,
      subject: SUBJECT,
      instance: 0,
      stateChecksum: CHECKSUM,
      state: '{"counter": 42}',
    }),
    differences: [],
  },
  {
    name: "stateRequest",
    data: b.buildStateRequest({ item: ITEM, subject: SUBJECT, instance: 1, default: false }),
    differences: [],
  },
  {
    name: "pushLog (ok)",
    data: b.buildPushLog({
      correlationId: CORR,
      node: MAIN,
      part: 1,
      partsCount: 2,
      content: "aGVsbG8K",
      status: "ok",
    }),
    differences: [],
  },
  {
    name: "pushLog (error)",
    data: b.buildPushLog(samplePushLogError),
    differences: [{
      ref: "§8 #5 pushLog.status error (schema failed)",
      toSchemaForm: (d) => d.status = "failed",
      assertCppForm: (d) => assert.equal(d.status, "error"),
    }],
  },
  {
    name: "overrideEnvVarsStatus",
    data: b.buildOverrideEnvVarsStatus(sampleEnvVarsStatus),
    differences: [{
      ref: "§8 #3 overrideEnvVarsStatus.statuses[].subject (schema subjectId)",
      toSchemaForm: (d) =>
        (d.statuses as Json[]).forEach((s) => {
          s.subjectId = s.subject;
          delete s.subject;
        }),
      assertCppForm: (d) =>
        (d.statuses as Json[]).forEach((s) => {
          assert.deepEqual(s.subject, SUBJECT);
          assert.ok(!("subjectId" in s));
        }),
    }],
  },
  {
    name: "issueUnitCertificates",
    data: b.buildIssueUnitCertificates({
      requests: [{ type: "online", node: MAIN, csr: "-----BEGIN CERTIFICATE REQUEST-----\n" }],
    }),
    differences: [],
  },
  {
    name: "installUnitCertificatesConfirmation",
    data: b.buildInstallUnitCertificatesConfirmation({
      certificates: [
        { type: "online", node: MAIN, serial: "5e2b" },
        { type: "iam", node: MAIN, serial: "", errorInfo: ERR },
      ],
    }),
    differences: [],
  },
  {
    name: "startProvisioningResponse",
    data: b.buildStartProvisioningResponse({
      correlationId: CORR,
      node: { codename: "secondary-1" },
      csrs: [{ type: "iam", csr: "-----BEGIN CERTIFICATE REQUEST-----\n" }],
    }),
    differences: [],
  },
  {
    name: "startProvisioningResponse (error, empty csrs)",
    data: b.buildStartProvisioningResponse({
      correlationId: CORR,
      node: { codename: "secondary-1" },
      errorInfo: ERR,
      csrs: [],
    }),
    differences: [],
  },
  {
    name: "finishProvisioningResponse",
    data: b.buildFinishProvisioningResponse({ correlationId: CORR, node: MAIN, errorInfo: ERR }),
    differences: [],
  },
  {
    name: "deprovisioningResponse",
    data: b.buildDeprovisioningResponse({ correlationId: CORR, node: MAIN }),
    differences: [],
  },
  // cloud → unit (dev cloud)
  { name: "desiredStatus", data: c.buildDesiredStatus(sampleDesiredStatus), differences: [] },
  { name: "blobUrls", data: c.buildBlobUrls(sampleBlobUrls), differences: [] },
  {
    name: "stateAcceptance",
    data: c.buildStateAcceptance({
      item: ITEM,
      subject: SUBJECT,
      instance: 0,
      checksum: CHECKSUM,
      result: "rejected",
      reason: "quota",
    }),
    differences: [],
  },
  {
    name: "updateState",
    data: c.buildUpdateState({
      item: ITEM,
      subject: SUBJECT,
      instance: 0,
      stateChecksum: CHECKSUM,
      state: "{}",
    }),
    differences: [],
  },
  { name: "requestLog", data: c.buildRequestLog(sampleRequestLog), differences: [] },
  {
    name: "overrideEnvVars",
    data: c.buildOverrideEnvVars({
      correlationId: CORR,
      items: [{
        item: ITEM,
        subject: SUBJECT,
        instance: 0,
        variables: [{ name: "LOG_LEVEL", value: "debug", ttl: T0 }, { name: "X", value: "" }],
      }, { variables: [{ name: "GLOBAL", value: "1" }] }],
    }),
    differences: [],
  },
  {
    name: "renewCertificatesNotification",
    data: c.buildRenewCertificatesNotification(sampleRenew),
    differences: [{
      ref: "§8 #6 unitSecrets: version string + nodes list (schema: int 7 + one object)",
      toSchemaForm: (d) => {
        const secrets = d.unitSecrets as Json;
        secrets.version = Number(secrets.version);
        secrets.nodes = (secrets.nodes as Json[])[0];
      },
      assertCppForm: (d) =>
        assert.deepEqual(d.unitSecrets, {
          version: "7",
          nodes: [{ node: MAIN, secret: "tpm-owner-pass" }],
        }),
    }],
  },
  {
    name: "issuedUnitCertificates",
    data: c.buildIssuedUnitCertificates({
      certificates: [{
        type: "online",
        node: MAIN,
        certificateChain: "-----BEGIN CERTIFICATE-----\n",
      }],
    }),
    differences: [],
  },
  {
    name: "startProvisioningRequest",
    data: c.buildStartProvisioningRequest({ correlationId: CORR, node: MAIN, password: "pw" }),
    differences: [],
  },
  {
    name: "finishProvisioningRequest",
    data: c.buildFinishProvisioningRequest({
      correlationId: CORR,
      node: MAIN,
      certificates: [{ type: "iam", chain: "-----BEGIN CERTIFICATE-----\n" }],
      password: "pw",
    }),
    differences: [],
  },
  {
    name: "deprovisioningRequest",
    data: c.buildDeprovisioningRequest({ correlationId: CORR, node: MAIN, password: "pw" }),
    differences: [],
  },
];

Deno.test({
  name: "conformance: the cases cover all 26 v7 message types",
  permissions: "none",
  fn() {
    const covered = new Set(CASES.map((x) => x.data.messageType));
    assert.equal(covered.size, 26);
  },
});

Deno.test({
  name:
    "conformance: every built message validates against the v7 schema (§8 differences explicit)",
  ignore: !HAVE_SPEC,
  permissions: { read: [SCHEMA_URL] },
  async fn(t) {
    const validate = await loadValidator();
    for (const { name, data, differences } of CASES) {
      await t.step(name, () => {
        const envelope = b.buildEnvelope(HEADER, data);
        if (differences.length === 0) {
          assert.deepEqual(validate(envelope), [], name);
          return;
        }
        // The C++ form is what we send, and the schema rejects it…
        assert.notDeepEqual(validate(envelope), [], `${name}: C++ form unexpectedly schema-valid`);
        const copy = structuredClone(envelope) as { header: Json; data: Json };
        for (const diff of differences) {
          diff.assertCppForm(envelope.data);
          diff.toSchemaForm(copy.data);
        }
        // …and only the documented differences stand between it and the schema.
        assert.deepEqual(validate(copy), [], `${name} after ${differences.map((d) => d.ref)}`);
      });
    }
  },
});

Deno.test({
  name: "conformance: the official schema rejects a broken message (the validator is live)",
  ignore: !HAVE_SPEC,
  permissions: { read: [SCHEMA_URL] },
  async fn() {
    const validate = await loadValidator();
    const bad = b.buildEnvelope(HEADER, { messageType: "unitStatus", nodes: [{ state: "x" }] });
    assert.notDeepEqual(validate(bad), []);
    const noTxn = b.buildEnvelope(HEADER, b.buildAck()) as unknown as { header: Json };
    delete noTxn.header.txn;
    assert.notDeepEqual(validate(noTxn), []);
  },
});

Deno.test({
  name: "conformance: every built message parses back and rebuilds to the same bytes",
  permissions: "none",
  fn() {
    const rebuild: Record<string, (m: never) => Wire> = {
      ack: b.buildAck,
      nack: b.buildNack,
      unitStatus: b.buildUnitStatus,
      monitoringData: b.buildMonitoringData,
      alerts: b.buildAlerts,
      requestBlobUrls: b.buildRequestBlobUrls,
      newState: b.buildNewState,
      stateRequest: b.buildStateRequest,
      pushLog: b.buildPushLog,
      overrideEnvVarsStatus: b.buildOverrideEnvVarsStatus,
      issueUnitCertificates: b.buildIssueUnitCertificates,
      installUnitCertificatesConfirmation: b.buildInstallUnitCertificatesConfirmation,
      startProvisioningResponse: b.buildStartProvisioningResponse,
      finishProvisioningResponse: b.buildFinishProvisioningResponse,
      deprovisioningResponse: b.buildDeprovisioningResponse,
      desiredStatus: c.buildDesiredStatus,
      blobUrls: c.buildBlobUrls,
      stateAcceptance: c.buildStateAcceptance,
      updateState: c.buildUpdateState,
      requestLog: c.buildRequestLog,
      overrideEnvVars: c.buildOverrideEnvVars,
      renewCertificatesNotification: c.buildRenewCertificatesNotification,
      issuedUnitCertificates: c.buildIssuedUnitCertificates,
      startProvisioningRequest: c.buildStartProvisioningRequest,
      finishProvisioningRequest: c.buildFinishProvisioningRequest,
      deprovisioningRequest: c.buildDeprovisioningRequest,
    };
    for (const { name, data } of CASES) {
      const bytes = b.encodeEnvelope(b.buildEnvelope(HEADER, data));
      const { header, message } = parseCloudMessage(bytes);
      assert.equal(header.txn, HEADER.txn);
      assert.equal(header.createdAt?.getTime(), T0.getTime());
      const { messageType, ...body } = message;
      const again = rebuild[messageType]!(body as never);
      assert.equal(JSON.stringify(again), JSON.stringify(data), name);
    }
  },
});

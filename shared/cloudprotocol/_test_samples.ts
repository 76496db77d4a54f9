/**
 * Test helpers: the official v7 JSON Schema through Ajv 2020, and sample models of every
 * message type. The schema and examples live outside the repository (in the steering `shared/`
 * folder beside it); tests that need them are ignored when it is absent.
 * @module
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { Body } from "./build.ts";
import type {
  BlobUrls,
  DesiredStatus,
  RenewCertificatesNotification,
  RequestLog,
} from "./cloud_messages.ts";
import type {
  Alerts,
  MonitoringData,
  NodeInfo,
  OverrideEnvVarsStatus,
  PushLog,
  UnitStatus,
} from "./unit_messages.ts";

/** The steering folder with `spec/` and `conformance/`. */
export const SPEC_ROOT = new URL("../../../shared/", import.meta.url);
/** The official v7 schema. */
export const SCHEMA_URL = new URL("conformance/aos-unit-messages-v7.schema.json", SPEC_ROOT);
/** The spec's example messages. */
export const EXAMPLES_URL = new URL("spec/cloudprotocol-examples.json", SPEC_ROOT);

function exists(url: URL): boolean {
  try {
    return Deno.statSync(url).isFile;
  } catch {
    return false;
  }
}

/** True when the schema and examples are available. */
export const HAVE_SPEC = exists(SCHEMA_URL) && exists(EXAMPLES_URL);

/** A validator of whole envelopes; returns Ajv's error list, empty when valid. */
export type Validate = (envelope: unknown) => string[];

/** Compiles the official schema with the recipe of spec §5 (strict off, custom formats). */
export async function loadValidator(): Promise<Validate> {
  const schema = JSON.parse(await Deno.readTextFile(SCHEMA_URL));
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addFormat(
    "uuid4",
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i,
  );
  ajv.addFormat("base64", (s: string) => s.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(s));
  ajv.addFormat("password", /.*/);
  const validate = ajv.compile(schema);
  return (envelope) =>
    validate(envelope)
      ? []
      : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ""}`);
}

const ITEM = { id: "6513270e-269e-4d37-b2a7-4de452e6b438" };
const SUBJECT = { id: "36f675cc-81e7-4ef5-a8e2-5d940ed90475" };
const OWNER = { id: "9531985d-5d9d-49f8-9818-e811892f902b" };
const MAIN = { codename: "main" };
const T0 = new Date("2026-03-02T10:00:00.123Z");
const T1 = new Date("2026-03-02T10:00:01Z");
const CORR = "0fd630f1-f29d-4da9-953f-48f1a09f76b5";
const ERR = { aosCode: 7, exitCode: 110, message: "timeout" };
const DIGEST = "sha256:572f8edc445eca1b28aee0a5df3c1396cc6f1b9b2af1d78c11cc6daf219ad5ee";
const CHECKSUM = "9661d47169c2d8014928d7c850283d9e74790f614155a853595b36fa";

/** A node with every optional part filled. */
export const sampleNode: NodeInfo = {
  identity: { codename: "main", title: "Main node" },
  nodeGroupSubject: { codename: "main-node" },
  maxDmips: 120000,
  physicalRam: 8589934592,
  totalRam: 8589934592,
  osInfo: { os: "linux", version: "6.6.23", features: ["cgroupv2"] },
  cpus: [{
    modelName: "Cortex-A76",
    totalNumCores: 4,
    totalNumThreads: 4,
    archInfo: { architecture: "arm64", variant: "v8" },
    maxDmips: 120000,
  }],
  attrs: { MainNode: "", AosComponents: "cm,iam,sm" },
  partitions: [{ name: "storages", path: "/var/aos/storages", types: ["storages"], totalSize: 1 }],
  runtimes: [{
    identity: { codename: "runc" },
    runtimeType: "runc",
    archInfo: { architecture: "arm64" },
    osInfo: { os: "linux", features: [] },
    maxDmips: 1000,
    allowedDmips: 800,
    totalRam: 1024,
    allowedRam: 512,
    maxInstances: 0,
  }],
  resources: [{ name: "camera0", sharedCount: 1 }],
  state: "provisioned",
  isConnected: true,
};

/** A full unit status with every section. */
export const sampleUnitStatus: Body<UnitStatus> = {
  isDeltaInfo: false,
  unitConfig: [{ version: "2", state: "installed" }, {
    version: "3",
    state: "failed",
    errorInfo: ERR,
  }],
  nodes: [sampleNode, {
    identity: { codename: "secondary-1" },
    nodeGroupSubject: { codename: "secondary-node" },
    maxDmips: 40000,
    totalRam: 2147483648,
    osInfo: { os: "linux", features: [] },
    cpus: [],
    attrs: {},
    partitions: [],
    runtimes: [],
    resources: [],
    state: "error",
    isConnected: false,
    errorInfo: ERR,
  }],
  items: [
    { item: { ...ITEM, type: "service" }, version: "1.1.0", state: "installed" },
    { item: { codename: "aos-sm", type: "component" }, version: "9.1.1", state: "installed" },
    {
      item: { id: "d23f0824-128b-4f33-8c5c-7fd0a6a3a450", type: "component" },
      version: "5.0.1",
      state: "failed",
      errorInfo: ERR,
    },
  ],
  instances: [{
    item: { ...ITEM, type: "service" },
    subject: SUBJECT,
    version: "1.1.0",
    instances: [
      {
        node: MAIN,
        runtime: { codename: "runc" },
        instance: 0,
        stateChecksum: CHECKSUM,
        state: "active",
      },
      {
        node: MAIN,
        runtime: { codename: "runc" },
        instance: 1,
        state: "failed",
        errorInfo: ERR,
      },
    ],
  }],
  subjects: [{ codename: "local-subject" }],
};

/** Monitoring with node states and instances. */
export const sampleMonitoring: Body<MonitoringData> = {
  nodes: [{
    node: MAIN,
    nodeStates: [{ timestamp: T0, isConnected: true, state: "provisioned" }],
    items: [{
      timestamp: T0,
      ram: 2147483648,
      cpu: 23,
      download: 1200,
      upload: 800,
      partitions: [{ name: "storages", usedSize: 104857600 }],
    }],
  }],
  instances: [{
    item: ITEM,
    subject: SUBJECT,
    instance: 0,
    node: MAIN,
    itemStates: [{ timestamp: T0, state: "active" }],
    items: [{ timestamp: T1, ram: 52428800, cpu: 3, download: 0, upload: 0, partitions: [] }],
  }],
};

/** One alert of every kind. */
export const sampleAlerts: Body<Alerts> = {
  items: [
    { tag: "systemAlert", timestamp: T0, node: MAIN, message: "kernel: eth0 link down" },
    { tag: "coreAlert", timestamp: T0, node: MAIN, coreComponent: "SM", message: "restarted" },
    { tag: "systemQuotaAlert", timestamp: T0, node: MAIN, parameter: "cpu", value: 93 },
    {
      tag: "instanceQuotaAlert",
      timestamp: T0,
      item: ITEM,
      subject: SUBJECT,
      instance: 0,
      parameter: "ram",
      value: 268435456,
    },
    {
      tag: "resourceAllocateAlert",
      timestamp: T0,
      item: ITEM,
      subject: SUBJECT,
      instance: 0,
      node: MAIN,
      deviceId: "camera0",
      message: "device busy",
    },
    {
      tag: "updateItemInstanceAlert",
      timestamp: T0,
      item: ITEM,
      subject: SUBJECT,
      instance: 1,
      version: "1.2.0",
      message: "exit code 1",
    },
    {
      tag: "downloadProgressAlert",
      timestamp: T1,
      digest: DIGEST,
      url: "https://files.example/blobs/572f",
      downloadedBytes: 524288,
      totalBytes: 1048576,
      state: "interrupted",
      reason: "connection reset",
      errorInfo: ERR,
    },
  ],
};

/** A failed log push. */
export const samplePushLogError: Body<PushLog> = {
  correlationId: CORR,
  node: MAIN,
  part: 0,
  partsCount: 0,
  content: "",
  status: "error",
  errorInfo: { aosCode: 5, exitCode: 0, message: "log not found" },
};

/** Env var statuses. */
export const sampleEnvVarsStatus: Body<OverrideEnvVarsStatus> = {
  correlationId: CORR,
  statuses: [
    { item: ITEM, subject: SUBJECT, instance: 0, name: "LOG_LEVEL" },
    {
      item: ITEM,
      subject: SUBJECT,
      instance: 0,
      name: "MODE",
      errorInfo: { aosCode: 12, exitCode: 0, message: "not supported" },
    },
  ],
};

/** A desired status with every part. */
export const sampleDesiredStatus: Body<DesiredStatus> = {
  nodes: [{ item: MAIN, state: "provisioned" }],
  unitConfig: {
    version: "3",
    formatVersion: "7",
    nodes: [{
      nodeGroupSubject: { codename: "main-node" },
      node: MAIN,
      priority: 100,
      labels: ["main"],
      alertRules: {
        cpu: { minThreshold: 40, maxThreshold: 90, minTimeout: 30_000 },
        partitions: [{ name: "storages", minThreshold: 60, maxThreshold: 95, minTimeout: 60_000 }],
        download: { minThreshold: 1000, maxThreshold: 10000, minTimeout: 10_000 },
      },
      resourceRatios: { cpu: 50, ram: 50 },
    }, { nodeGroupSubject: { codename: "secondary-node" }, priority: 50, labels: [] }],
  },
  items: [{
    item: { ...ITEM, type: "service" },
    version: "1.2.0",
    owner: OWNER,
    indexDigest: DIGEST,
  }],
  instances: [{ item: ITEM, subject: SUBJECT, priority: 10, numInstances: 2, labels: ["main"] }],
  subjects: [{ identity: SUBJECT, type: "group", isReportedFromUnit: false }],
  certificates: [{ certificate: "MIIBCi4uLg==", fingerprint: "a1b2c3" }],
  certificateChains: [{ name: "sp-chain", fingerprints: ["a1b2c3"] }],
};

/** Blob URLs with decrypt and sign info. */
export const sampleBlobUrls: Body<BlobUrls> = {
  correlationId: CORR,
  items: [{
    digest: DIGEST,
    urls: ["https://files.example/blobs/572f"],
    sha256: "a49367e1e25d4f8af3bf2c5ac59ceab97319dacc731e26a4ef2e1a07346dc48c",
    size: 1024,
    decryptInfo: {
      blockAlg: "AES256/CBC/pkcs7",
      blockIv: "MDEyMzQ1Njc4OWFiY2RlZg==",
      blockKey: "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
    },
    signInfo: {
      chainName: "sp-chain",
      alg: "RSA/SHA256",
      value: "c2lnbmF0dXJl",
      trustedTimestamp: T1,
      ocspValues: [],
    },
  }],
};

/** A log request with every filter and upload options. */
export const sampleRequestLog: Body<RequestLog> = {
  correlationId: CORR,
  logType: "instanceLog",
  filter: { from: T0, till: T1, nodeIds: [MAIN], item: ITEM, subject: SUBJECT, instance: 0 },
  uploadOptions: {
    type: "https",
    url: "https://logs.example/upload",
    bearerToken: "token",
    bearerTokenTtl: T1,
  },
};

/** A renewal for one node (so the schema's single-object form can express it too). */
export const sampleRenew: Body<RenewCertificatesNotification> = {
  certificates: [{ type: "online", node: MAIN, serial: "4f1a", validTill: T1 }],
  unitSecrets: { version: "7", nodes: [{ node: MAIN, secret: "tpm-owner-pass" }] },
};

/** Other samples, small enough to keep inline. */
export const small = {
  T0,
  T1,
  ITEM,
  SUBJECT,
  MAIN,
  CORR,
  ERR,
  DIGEST,
  CHECKSUM,
};

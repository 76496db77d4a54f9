/**
 * Builders for the messages the cloud sends (used by the dev cloud and by tests). They write
 * the form both readers accept: schema-valid where the schema can express it, and the AosCore
 * form where it cannot (`unitSecrets.nodes` as a list, spec §8 #6; `sha256` as hex, §8 #7).
 * @module
 */
import type {
  AlertRules,
  BlobUrls,
  DeprovisioningRequest,
  DesiredStatus,
  FinishProvisioningRequest,
  IssuedUnitCertificates,
  NodeConfig,
  OverrideEnvVars,
  RenewCertificatesNotification,
  RequestLog,
  StartProvisioningRequest,
  StateAcceptance,
  UpdateState,
} from "./cloud_messages.ts";
import type { Identity } from "./common.ts";
import { type Body, type JsonObject, type WireData, wireIdentity, wireTime } from "./build.ts";

function head(messageType: string, correlationId: string | undefined): WireData {
  const out: WireData = { messageType };
  if (correlationId) out.correlationId = correlationId;
  return out;
}

function optIdentity(out: JsonObject, key: string, identity: Identity | undefined): void {
  if (identity !== undefined) out[key] = wireIdentity(identity);
}

/** Alert rule timeouts go out as seconds (schema form; C++ reads numbers and duration strings). */
function rule(r: { minThreshold: number; maxThreshold: number; minTimeout: number }): JsonObject {
  return {
    minThreshold: r.minThreshold,
    maxThreshold: r.maxThreshold,
    minTimeout: r.minTimeout / 1000,
  };
}

function wireAlertRules(rules: AlertRules): JsonObject {
  const out: JsonObject = {};
  if (rules.cpu) out.cpu = rule(rules.cpu);
  if (rules.ram) out.ram = rule(rules.ram);
  if (rules.partitions.length > 0) {
    out.partitions = rules.partitions.map((p) => ({ name: p.name, ...rule(p) }));
  }
  if (rules.download) out.download = rule(rules.download);
  if (rules.upload) out.upload = rule(rules.upload);
  return out;
}

function wireNodeConfig(c: NodeConfig): JsonObject {
  const out: JsonObject = {};
  if (c.version) out.version = c.version;
  out.nodeGroupSubject = wireIdentity(c.nodeGroupSubject);
  optIdentity(out, "node", c.node);
  out.priority = c.priority;
  if (c.labels.length > 0) out.labels = [...c.labels];
  if (c.alertRules) out.alertRules = wireAlertRules(c.alertRules);
  if (c.resourceRatios) {
    const ratios: JsonObject = {};
    for (const k of ["cpu", "ram", "storage", "state"] as const) {
      const v = c.resourceRatios[k];
      if (v !== undefined) ratios[k] = v;
    }
    out.resourceRatios = ratios;
  }
  return out;
}

/** `desiredStatus` body: a complete snapshot (every list written, even empty). */
export function buildDesiredStatus(status: Body<DesiredStatus>): WireData {
  const out = head("desiredStatus", status.correlationId);
  out.nodes = status.nodes.map((n) => ({ item: wireIdentity(n.item), state: n.state }));
  if (status.unitConfig) {
    out.unitConfig = {
      version: status.unitConfig.version,
      formatVersion: status.unitConfig.formatVersion,
      nodes: status.unitConfig.nodes.map(wireNodeConfig),
    };
  }
  out.items = status.items.map((i) => ({
    item: wireIdentity(i.item),
    version: i.version,
    owner: wireIdentity(i.owner),
    indexDigest: i.indexDigest,
  }));
  out.instances = status.instances.map((i) => ({
    item: wireIdentity(i.item),
    subject: wireIdentity(i.subject),
    priority: i.priority,
    numInstances: i.numInstances,
    labels: [...i.labels],
  }));
  out.subjects = status.subjects.map((s) => ({
    identity: wireIdentity(s.identity),
    type: s.type,
    isReportedFromUnit: s.isReportedFromUnit,
  }));
  out.certificates = status.certificates.map((c) => ({
    certificate: c.certificate,
    fingerprint: c.fingerprint,
  }));
  out.certificateChains = status.certificateChains.map((c) => ({
    name: c.name,
    fingerprints: [...c.fingerprints],
  }));
  return out;
}

/** `blobUrls` body (`sha256` hex, as AosCore decodes it). */
export function buildBlobUrls(blobs: Body<BlobUrls>): WireData {
  const out = head("blobUrls", blobs.correlationId);
  out.items = blobs.items.map((b) => {
    const item: JsonObject = {
      digest: b.digest,
      urls: [...b.urls],
      sha256: b.sha256,
      size: b.size,
    };
    if (b.decryptInfo) {
      item.decryptInfo = {
        blockAlg: b.decryptInfo.blockAlg,
        blockIv: b.decryptInfo.blockIv,
        blockKey: b.decryptInfo.blockKey,
      };
    }
    if (b.signInfo) {
      item.signInfo = {
        chainName: b.signInfo.chainName,
        alg: b.signInfo.alg,
        value: b.signInfo.value,
        trustedTimestamp: wireTime(b.signInfo.trustedTimestamp),
        ocspValues: [...b.signInfo.ocspValues],
      };
    }
    return item;
  });
  return out;
}

/** `stateAcceptance` body. */
export function buildStateAcceptance(a: Body<StateAcceptance>): WireData {
  return {
    ...head("stateAcceptance", a.correlationId),
    item: wireIdentity(a.item),
    subject: wireIdentity(a.subject),
    instance: a.instance,
    checksum: a.checksum,
    result: a.result,
    reason: a.reason,
  };
}

/** `updateState` body. */
export function buildUpdateState(u: Body<UpdateState>): WireData {
  const out = head("updateState", u.correlationId);
  optIdentity(out, "item", u.item);
  optIdentity(out, "subject", u.subject);
  out.instance = u.instance;
  out.stateChecksum = u.stateChecksum;
  out.state = u.state;
  return out;
}

/** `requestLog` body. */
export function buildRequestLog(r: Body<RequestLog>): WireData {
  const filter: JsonObject = {};
  if (r.filter.from) filter.from = wireTime(r.filter.from);
  if (r.filter.till) filter.till = wireTime(r.filter.till);
  if (r.filter.nodeIds.length > 0) filter.nodeIds = r.filter.nodeIds.map(wireIdentity);
  optIdentity(filter, "item", r.filter.item);
  optIdentity(filter, "subject", r.filter.subject);
  if (r.filter.instance !== undefined) filter.instance = r.filter.instance;
  const out: WireData = { ...head("requestLog", r.correlationId), logType: r.logType, filter };
  if (r.uploadOptions) {
    const u: JsonObject = {
      type: r.uploadOptions.type,
      url: r.uploadOptions.url,
      bearerToken: r.uploadOptions.bearerToken,
    };
    if (r.uploadOptions.bearerTokenTtl) {
      u.bearerTokenTtl = wireTime(r.uploadOptions.bearerTokenTtl);
    }
    out.uploadOptions = u;
  }
  return out;
}

/** `overrideEnvVars` body. */
export function buildOverrideEnvVars(o: Body<OverrideEnvVars>): WireData {
  const out = head("overrideEnvVars", o.correlationId);
  out.items = o.items.map((i) => {
    const item: JsonObject = {};
    optIdentity(item, "item", i.item);
    optIdentity(item, "subject", i.subject);
    if (i.instance !== undefined) item.instance = i.instance;
    item.variables = i.variables.map((v) => {
      const variable: JsonObject = { name: v.name, value: v.value };
      if (v.ttl) variable.ttl = wireTime(v.ttl);
      return variable;
    });
    return item;
  });
  return out;
}

/**
 * `renewCertificatesNotification` body. `unitSecrets` is written in the AosCore form
 * (`version` string, `nodes` a list): the schema's single-object form cannot hold two nodes.
 */
export function buildRenewCertificatesNotification(
  n: Body<RenewCertificatesNotification>,
): WireData {
  const out = head("renewCertificatesNotification", n.correlationId);
  out.certificates = n.certificates.map((c) => {
    const cert: JsonObject = { type: c.type, node: wireIdentity(c.node), serial: c.serial };
    if (c.validTill) cert.validTill = wireTime(c.validTill);
    return cert;
  });
  out.unitSecrets = {
    version: n.unitSecrets.version,
    nodes: n.unitSecrets.nodes.map((s) => ({ node: wireIdentity(s.node), secret: s.secret })),
  };
  return out;
}

/** `issuedUnitCertificates` body. */
export function buildIssuedUnitCertificates(i: Body<IssuedUnitCertificates>): WireData {
  const out = head("issuedUnitCertificates", i.correlationId);
  out.certificates = i.certificates.map((c) => ({
    type: c.type,
    node: wireIdentity(c.node),
    certificateChain: c.certificateChain,
  }));
  return out;
}

/** `startProvisioningRequest` body. */
export function buildStartProvisioningRequest(r: Body<StartProvisioningRequest>): WireData {
  return {
    ...head("startProvisioningRequest", r.correlationId),
    node: wireIdentity(r.node),
    password: r.password,
  };
}

/** `finishProvisioningRequest` body. */
export function buildFinishProvisioningRequest(r: Body<FinishProvisioningRequest>): WireData {
  return {
    ...head("finishProvisioningRequest", r.correlationId),
    node: wireIdentity(r.node),
    certificates: r.certificates.map((c) => ({ type: c.type, chain: c.chain })),
    password: r.password,
  };
}

/** `deprovisioningRequest` body. */
export function buildDeprovisioningRequest(r: Body<DeprovisioningRequest>): WireData {
  return {
    ...head("deprovisioningRequest", r.correlationId),
    node: wireIdentity(r.node),
    password: r.password,
  };
}

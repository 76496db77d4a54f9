/**
 * Builders for the messages the unit sends, producing exactly the AosCore C++ JSON form
 * (key names and order, omitted-when-empty fields, timestamps, `errorInfo`), and the envelope.
 * @module
 */
import { formatAosTime } from "../core/time.ts";
import { type ErrorInfo, type Identity, PROTOCOL_VERSION } from "./common.ts";
import type { Ack, Nack } from "./cloud_messages.ts";
import type {
  Alert,
  Alerts,
  DeprovisioningResponse,
  FinishProvisioningResponse,
  InstallUnitCertificatesConfirmation,
  InstancesGroup,
  InstanceStatus,
  IssueUnitCertificates,
  MonitoringData,
  MonitoringSample,
  NewState,
  NodeInfo,
  OverrideEnvVarsStatus,
  PushLog,
  RequestBlobUrls,
  StartProvisioningResponse,
  StateRequest,
  UnitStatus,
} from "./unit_messages.ts";

/** A JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** A message body ready to be put into an envelope. */
export type WireData = JsonObject & { messageType: string };

/** A complete envelope as sent. */
export interface WireEnvelope {
  /** `{version, systemId, createdAt, txn}`. */
  header: JsonObject;
  /** The message body. */
  data: WireData;
}

/** What the sender knows for a header. */
export interface HeaderInput {
  /** The unit's system id. */
  systemId: string;
  /** A fresh UUIDv4 per message; for `ack`/`nack` the txn of the message answered. */
  txn: string;
  /** When the message was first queued (retransmissions keep it, and the bytes). */
  createdAt: Date;
}

/** Model of a message body without its `messageType`: what a builder takes. */
export type Body<T> = Omit<T, "messageType">;

// ---------------------------------------------------------------------------------------------
// pieces

/** Writes a timestamp as C++ does: `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function wireTime(t: Date): string {
  return formatAosTime(t);
}

/** Writes an identity with only its present fields, in the C++ key order. */
export function wireIdentity(identity: Identity): JsonObject {
  const out: JsonObject = {};
  for (const key of ["id", "codename", "type", "title", "description", "urn"] as const) {
    const v = identity[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}

/** Writes `errorInfo` with all three fields (C++ does, whenever there is an error). */
export function wireErrorInfo(error: ErrorInfo): JsonObject {
  return { aosCode: error.aosCode, exitCode: error.exitCode, message: error.message };
}

/** True when an `errorInfo` carries an error (C++ omits it otherwise). */
function isError(error: ErrorInfo | undefined): error is ErrorInfo {
  return error !== undefined &&
    (error.aosCode !== 0 || error.exitCode !== 0 || error.message !== "");
}

function setError(out: JsonObject, error: ErrorInfo | undefined): void {
  if (isError(error)) out.errorInfo = wireErrorInfo(error);
}

function head(messageType: string, correlationId: string | undefined): WireData {
  const out: WireData = { messageType };
  if (correlationId) out.correlationId = correlationId;
  return out;
}

function instanceIdent(v: { item: Identity; subject: Identity; instance: number }): JsonObject {
  return { item: wireIdentity(v.item), subject: wireIdentity(v.subject), instance: v.instance };
}

// ---------------------------------------------------------------------------------------------
// envelope

/** Wraps a body into `{header, data}` with header `{version: 7, systemId, createdAt, txn}`. */
export function buildEnvelope(header: HeaderInput, data: WireData): WireEnvelope {
  return {
    header: {
      version: PROTOCOL_VERSION,
      systemId: header.systemId,
      createdAt: wireTime(header.createdAt),
      txn: header.txn,
    },
    data,
  };
}

/** Serialises an envelope to the UTF-8 JSON bytes sent in one binary WebSocket frame. */
export function encodeEnvelope(envelope: WireEnvelope): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(envelope));
}

// ---------------------------------------------------------------------------------------------
// ack / nack

/**
 * `ack` body. Its envelope carries the txn of the acknowledged message, not a new one.
 */
export function buildAck(ack: Body<Ack> = {}): WireData {
  return head("ack", ack.correlationId);
}

/** `nack` body: "send the message with this txn again after `retryAfter` ms". */
export function buildNack(nack: Body<Nack>): WireData {
  const out = head("nack", nack.correlationId);
  out.retryAfter = nack.retryAfter;
  return out;
}

// ---------------------------------------------------------------------------------------------
// unitStatus

function wireArch(a: { architecture: string; variant?: string | undefined }): JsonObject {
  const out: JsonObject = { architecture: a.architecture };
  if (a.variant !== undefined) out.variant = a.variant;
  return out;
}

function wireOs(o: NodeInfo["osInfo"]): JsonObject {
  const out: JsonObject = { os: o.os };
  if (o.version !== undefined) out.version = o.version;
  if (o.features.length > 0) out.features = [...o.features];
  return out;
}

function wireNode(n: NodeInfo): JsonObject {
  const out: JsonObject = {
    identity: wireIdentity(n.identity),
    nodeGroupSubject: wireIdentity(n.nodeGroupSubject),
    maxDmips: n.maxDmips,
  };
  if (n.physicalRam !== undefined) out.physicalRam = n.physicalRam;
  out.totalRam = n.totalRam;
  out.osInfo = wireOs(n.osInfo);
  if (n.cpus.length > 0) {
    out.cpus = n.cpus.map((c) => {
      const cpu: JsonObject = {
        modelName: c.modelName,
        totalNumCores: c.totalNumCores,
        totalNumThreads: c.totalNumThreads,
        archInfo: wireArch(c.archInfo),
      };
      if (c.maxDmips !== undefined) cpu.maxDmips = c.maxDmips;
      return cpu;
    });
  }
  if (Object.keys(n.attrs).length > 0) out.attrs = { ...n.attrs };
  if (n.partitions.length > 0) {
    out.partitions = n.partitions.map((p) => {
      const part: JsonObject = { name: p.name };
      if (p.path) part.path = p.path;
      part.types = [...p.types];
      part.totalSize = p.totalSize;
      return part;
    });
  }
  out.state = n.state;
  out.isConnected = n.isConnected;
  setError(out, n.errorInfo);
  if (n.runtimes.length > 0) {
    out.runtimes = n.runtimes.map((r) => {
      const rt: JsonObject = {
        identity: wireIdentity(r.identity),
        runtimeType: r.runtimeType,
        archInfo: wireArch(r.archInfo),
        osInfo: wireOs(r.osInfo),
      };
      if (r.maxDmips !== undefined) rt.maxDmips = r.maxDmips;
      if (r.allowedDmips !== undefined) rt.allowedDmips = r.allowedDmips;
      if (r.totalRam !== undefined) rt.totalRam = r.totalRam;
      if (r.allowedRam !== undefined) rt.allowedRam = r.allowedRam;
      rt.maxInstances = r.maxInstances;
      return rt;
    });
  }
  if (n.resources.length > 0) {
    out.resources = n.resources.map((r) => ({ name: r.name, sharedCount: r.sharedCount }));
  }
  return out;
}

function wireInstance(i: InstanceStatus): JsonObject {
  const out: JsonObject = {
    node: wireIdentity(i.node),
    runtime: wireIdentity(i.runtime),
    instance: i.instance,
  };
  if (i.stateChecksum) out.stateChecksum = i.stateChecksum;
  out.state = i.state;
  setError(out, i.errorInfo);
  return out;
}

/** One instance status with the identity of its group, as a flat record. */
export type FlatInstanceStatus = InstanceStatus & {
  item: Identity;
  subject: Identity;
  version: string;
};

/**
 * Groups flat instance statuses per (item, subject, version) as `unitStatus.instances` carries
 * them, keeping the order of first appearance.
 */
export function groupInstances(flat: readonly FlatInstanceStatus[]): InstancesGroup[] {
  const groups = new Map<string, InstancesGroup>();
  for (const { item, subject, version, ...status } of flat) {
    const key = JSON.stringify([wireIdentity(item), wireIdentity(subject), version]);
    let group = groups.get(key);
    if (!group) {
      group = { item, subject, version, instances: [] };
      groups.set(key, group);
    }
    group.instances.push(status);
  }
  return [...groups.values()];
}

/**
 * `unitStatus` body. A full status (`isDeltaInfo: false`, sent on every connect) should carry
 * every section, even empty; a delta only the changed ones. Absent sections are omitted.
 */
export function buildUnitStatus(status: Body<UnitStatus>): WireData {
  const out = head("unitStatus", status.correlationId);
  out.isDeltaInfo = status.isDeltaInfo;
  if (status.unitConfig) {
    out.unitConfig = status.unitConfig.map((c) => {
      const cfg: JsonObject = {};
      if (c.version) cfg.version = c.version;
      cfg.state = c.state;
      setError(cfg, c.errorInfo);
      return cfg;
    });
  }
  if (status.nodes) out.nodes = status.nodes.map(wireNode);
  if (status.items) {
    out.items = status.items.map((i) => {
      const item: JsonObject = {
        item: wireIdentity(i.item),
        version: i.version,
        state: i.state,
      };
      setError(item, i.errorInfo);
      return item;
    });
  }
  if (status.instances) {
    out.instances = status.instances.map((g) => ({
      item: wireIdentity(g.item),
      subject: wireIdentity(g.subject),
      version: g.version,
      instances: g.instances.map(wireInstance),
    }));
  }
  if (status.subjects) out.subjects = status.subjects.map(wireIdentity);
  return out;
}

// ---------------------------------------------------------------------------------------------
// monitoringData

function wireSample(s: MonitoringSample): JsonObject {
  const out: JsonObject = {
    timestamp: wireTime(s.timestamp),
    ram: s.ram,
    cpu: s.cpu,
    download: s.download,
    upload: s.upload,
  };
  if (s.partitions.length > 0) {
    out.partitions = s.partitions.map((p) => ({ name: p.name, usedSize: p.usedSize }));
  }
  return out;
}

/**
 * `monitoringData` body. Node states carry C++ `isConnected` and also the schema's `connected`
 * (spec §8 #4: which one the cloud reads is open, and an extra key harms neither reader).
 */
export function buildMonitoringData(data: Body<MonitoringData>): WireData {
  const out = head("monitoringData", data.correlationId);
  out.nodes = data.nodes.map((n) => {
    const node: JsonObject = { node: wireIdentity(n.node) };
    if (n.nodeStates.length > 0) {
      node.nodeStates = n.nodeStates.map((s) => ({
        timestamp: wireTime(s.timestamp),
        state: s.state,
        isConnected: s.isConnected,
        connected: s.isConnected,
      }));
    }
    node.items = n.items.map(wireSample);
    return node;
  });
  if (data.instances.length > 0) {
    out.instances = data.instances.map((i) => ({
      ...instanceIdent(i),
      node: wireIdentity(i.node),
      itemStates: i.itemStates.map((s) => ({ timestamp: wireTime(s.timestamp), state: s.state })),
      items: i.items.map(wireSample),
    }));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// alerts

/** AosCore sends at most this many alerts per `alerts` message. */
export const MAX_ALERTS_PER_MESSAGE = 16;

/** One alert in the C++ form (tag `resourceAllocateAlert`, key `subject`). */
export function wireAlert(alert: Alert): JsonObject {
  const out: JsonObject = { timestamp: wireTime(alert.timestamp), tag: alert.tag };
  switch (alert.tag) {
    case "systemAlert":
      return { ...out, node: wireIdentity(alert.node), message: alert.message };
    case "coreAlert":
      return {
        ...out,
        node: wireIdentity(alert.node),
        coreComponent: alert.coreComponent,
        message: alert.message,
      };
    case "systemQuotaAlert":
      return {
        ...out,
        node: wireIdentity(alert.node),
        parameter: alert.parameter,
        value: alert.value,
      };
    case "instanceQuotaAlert":
      return { ...out, ...instanceIdent(alert), parameter: alert.parameter, value: alert.value };
    case "resourceAllocateAlert":
      return {
        ...out,
        ...instanceIdent(alert),
        node: wireIdentity(alert.node),
        deviceId: alert.deviceId,
        message: alert.message,
      };
    case "updateItemInstanceAlert":
      return { ...out, ...instanceIdent(alert), version: alert.version, message: alert.message };
    case "downloadProgressAlert": {
      const dl: JsonObject = {
        ...out,
        digest: alert.digest,
        url: alert.url,
        downloadedBytes: alert.downloadedBytes,
        totalBytes: alert.totalBytes,
        state: alert.state,
      };
      if (alert.reason !== undefined) dl.reason = alert.reason;
      setError(dl, alert.errorInfo);
      return dl;
    }
  }
}

/** `alerts` body (AosCore batches at most {@link MAX_ALERTS_PER_MESSAGE} per message). */
export function buildAlerts(alerts: Body<Alerts>): WireData {
  const out = head("alerts", alerts.correlationId);
  out.items = alerts.items.map(wireAlert);
  return out;
}

// ---------------------------------------------------------------------------------------------
// blobs, state, logs, env vars

/** `requestBlobUrls` body (new `correlationId`; the answer `blobUrls` echoes it). */
export function buildRequestBlobUrls(request: Body<RequestBlobUrls>): WireData {
  const out = head("requestBlobUrls", request.correlationId);
  out.digests = [...request.digests];
  return out;
}

/** `newState` body (`stateChecksum` hex SHA3-224 of `state`). */
export function buildNewState(state: Body<NewState>): WireData {
  return {
    ...head("newState", state.correlationId),
    ...instanceIdent(state),
    stateChecksum: state.stateChecksum,
    state: state.state,
  };
}

/** `stateRequest` body. */
export function buildStateRequest(request: Body<StateRequest>): WireData {
  return {
    ...head("stateRequest", request.correlationId),
    ...instanceIdent(request),
    default: request.default,
  };
}

/** `pushLog` body; `content` is base64 and `status` uses the C++ `error` for failures. */
export function buildPushLog(log: Body<PushLog>): WireData {
  const out: WireData = {
    ...head("pushLog", log.correlationId),
    node: wireIdentity(log.node),
    part: log.part,
    partsCount: log.partsCount,
    content: log.content,
    status: log.status,
  };
  setError(out, log.errorInfo);
  return out;
}

/** `overrideEnvVarsStatus` body, one entry per variable, key `subject` (C++). */
export function buildOverrideEnvVarsStatus(status: Body<OverrideEnvVarsStatus>): WireData {
  const out = head("overrideEnvVarsStatus", status.correlationId);
  out.statuses = status.statuses.map((s) => {
    const entry: JsonObject = { ...instanceIdent(s), name: s.name };
    setError(entry, s.errorInfo);
    return entry;
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// certificates and provisioning

/** `issueUnitCertificates` body (PEM CSRs). */
export function buildIssueUnitCertificates(request: Body<IssueUnitCertificates>): WireData {
  const out = head("issueUnitCertificates", request.correlationId);
  out.requests = request.requests.map((r) => ({
    type: r.type,
    node: wireIdentity(r.node),
    csr: r.csr,
  }));
  return out;
}

/** `installUnitCertificatesConfirmation` body. */
export function buildInstallUnitCertificatesConfirmation(
  confirmation: Body<InstallUnitCertificatesConfirmation>,
): WireData {
  const out = head("installUnitCertificatesConfirmation", confirmation.correlationId);
  out.certificates = confirmation.certificates.map((c) => {
    const cert: JsonObject = { type: c.type, node: wireIdentity(c.node), serial: c.serial };
    setError(cert, c.errorInfo);
    return cert;
  });
  return out;
}

function provisioningResponse(
  messageType: string,
  r: Body<FinishProvisioningResponse>,
): WireData {
  const out: WireData = { ...head(messageType, r.correlationId), node: wireIdentity(r.node) };
  setError(out, r.errorInfo);
  return out;
}

/** `startProvisioningResponse` body (`csrs` always present, `[]` on error). */
export function buildStartProvisioningResponse(
  response: Body<StartProvisioningResponse>,
): WireData {
  const out = provisioningResponse("startProvisioningResponse", response);
  out.csrs = response.csrs.map((c) => ({ type: c.type, csr: c.csr }));
  return out;
}

/** `finishProvisioningResponse` body. */
export function buildFinishProvisioningResponse(
  response: Body<FinishProvisioningResponse>,
): WireData {
  return provisioningResponse("finishProvisioningResponse", response);
}

/** `deprovisioningResponse` body. */
export function buildDeprovisioningResponse(response: Body<DeprovisioningResponse>): WireData {
  return provisioningResponse("deprovisioningResponse", response);
}

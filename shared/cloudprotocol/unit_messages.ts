/**
 * Unit → cloud messages of protocol v7: receive schemas (for the dev cloud and tests) and the
 * types our builders take.
 *
 * The model uses the AosCore C++ names where the schema differs (spec §8): alert tag
 * `resourceAllocateAlert`, `subject` (not `subjectId`), node state `isConnected` (not
 * `connected`), log status `error` (not `failed`). The schema spellings are accepted on receive.
 * @module
 */
import * as z from "zod/mini";
import { list, optList, optStr, optUint, str, tagged, time, uint, wobj } from "./_wire.ts";
import { enums, errorInfoSchema, identitySchema, instanceIdentShape } from "./common.ts";

const correlation = { correlationId: optStr() };

/**
 * Accepts `alias` as another spelling of `key` (e.g. schema `subjectId` for C++ `subject`):
 * the alias is moved to `key` unless `key` is present too.
 */
function withAlias<S extends z.ZodMiniType>(key: string, alias: string, schema: S) {
  const lowerKey = key.toLowerCase();
  const lowerAlias = alias.toLowerCase();
  return z.pipe(
    z.transform((v) => {
      if (typeof v !== "object" || v === null || Array.isArray(v)) return v;
      const entries = Object.entries(v);
      if (entries.some(([k, x]) => k.toLowerCase() === lowerKey && x !== null)) return v;
      const found = entries.find(([k]) => k.toLowerCase() === lowerAlias);
      return found === undefined ? v : { ...v, [key]: found[1] };
    }),
    schema,
  );
}

// ---------------------------------------------------------------------------------------------
// unitStatus

const archInfoSchema = wobj({ architecture: str(), variant: optStr() });
const osInfoSchema = wobj({ os: str(), version: optStr(), features: list(z.string(), 256) });

/** One node of `unitStatus.nodes`. Empty lists and `attrs` are omitted on the wire (C++). */
export const nodeInfoSchema = wobj({
  identity: identitySchema,
  nodeGroupSubject: identitySchema,
  maxDmips: uint(),
  physicalRam: optUint(),
  totalRam: uint(),
  osInfo: osInfoSchema,
  cpus: list(
    wobj({
      modelName: str(),
      totalNumCores: uint(),
      totalNumThreads: uint(),
      archInfo: archInfoSchema,
      maxDmips: optUint(),
    }),
    1024,
  ),
  attrs: z._default(z.record(z.string(), z.string()), {}),
  partitions: list(
    wobj({ name: str(), path: optStr(), types: list(z.string(), 64), totalSize: uint() }),
    256,
  ),
  runtimes: list(
    wobj({
      identity: identitySchema,
      runtimeType: str(),
      archInfo: archInfoSchema,
      osInfo: osInfoSchema,
      maxDmips: optUint(),
      allowedDmips: optUint(),
      totalRam: optUint(),
      allowedRam: optUint(),
      maxInstances: uint(),
    }),
    256,
  ),
  resources: list(wobj({ name: str(), sharedCount: uint() }), 1024),
  state: enums.nodeState,
  isConnected: z._default(z.boolean(), false),
  errorInfo: z.optional(errorInfoSchema),
});

/** A unit config status. */
export const unitConfigStatusSchema = wobj({
  version: optStr(),
  state: enums.unitConfigState,
  errorInfo: z.optional(errorInfoSchema),
});

/** An update item status. */
export const itemStatusSchema = wobj({
  item: identitySchema,
  version: str(),
  state: enums.itemState,
  errorInfo: z.optional(errorInfoSchema),
});

/** One instance in a group of `unitStatus.instances`. `stateChecksum` is hex SHA3-224. */
export const instanceStatusSchema = wobj({
  node: identitySchema,
  runtime: identitySchema,
  instance: uint(),
  stateChecksum: optStr(),
  state: enums.instanceState,
  errorInfo: z.optional(errorInfoSchema),
});

/** Instances grouped per (item, subject, version), as the wire carries them. */
export const instancesGroupSchema = wobj({
  item: identitySchema,
  subject: identitySchema,
  version: str(),
  instances: list(instanceStatusSchema),
});

/**
 * Body of `unitStatus`. Sections stay absent when absent: in a delta (`isDeltaInfo: true`)
 * an absent section means "unchanged", an empty one "now empty".
 */
export const unitStatusSchema = wobj({
  ...correlation,
  isDeltaInfo: z._default(z.boolean(), false),
  unitConfig: optList(unitConfigStatusSchema, 16),
  nodes: optList(nodeInfoSchema, 256),
  items: optList(itemStatusSchema),
  instances: optList(instancesGroupSchema),
  subjects: optList(identitySchema),
});

// ---------------------------------------------------------------------------------------------
// monitoringData

/** One resource usage sample (bytes, cpu in percent·cores as AosCore reports). */
export const monitoringSampleSchema = wobj({
  timestamp: time(),
  ram: uint(),
  cpu: uint(),
  download: uint(),
  upload: uint(),
  partitions: list(wobj({ name: str(), usedSize: uint() }), 256),
});

/** A node state change; schema `connected` is read as C++ `isConnected`. */
export const nodeStateSampleSchema = withAlias(
  "isConnected",
  "connected",
  wobj({ timestamp: time(), isConnected: z._default(z.boolean(), false), state: enums.nodeState }),
);

/** Monitoring of one node. */
export const nodeMonitoringSchema = wobj({
  node: identitySchema,
  nodeStates: list(nodeStateSampleSchema, 1024),
  items: list(monitoringSampleSchema, 1024),
});

/** Monitoring of one instance. */
export const instanceMonitoringSchema = wobj({
  ...instanceIdentShape,
  node: identitySchema,
  itemStates: list(wobj({ timestamp: time(), state: enums.instanceState }), 1024),
  items: list(monitoringSampleSchema, 1024),
});

/** Body of `monitoringData`. */
export const monitoringDataSchema = wobj({
  ...correlation,
  nodes: list(nodeMonitoringSchema, 256),
  instances: list(instanceMonitoringSchema),
});

// ---------------------------------------------------------------------------------------------
// alerts

const alertBase = { timestamp: time() };
const message = str();

/** Alert kinds by tag (C++ tags; `deviceAllocateAlert` is read as `resourceAllocateAlert`). */
export const alertSchemas = {
  systemAlert: wobj({ ...alertBase, node: identitySchema, message }),
  coreAlert: wobj({ ...alertBase, node: identitySchema, coreComponent: str(), message }),
  systemQuotaAlert: wobj({
    ...alertBase,
    node: identitySchema,
    parameter: str(),
    value: uint(),
  }),
  instanceQuotaAlert: wobj({
    ...alertBase,
    ...instanceIdentShape,
    parameter: str(),
    value: uint(),
  }),
  resourceAllocateAlert: wobj({
    ...alertBase,
    ...instanceIdentShape,
    node: identitySchema,
    deviceId: str(),
    message,
  }),
  updateItemInstanceAlert: withAlias(
    "subject",
    "subjectId",
    wobj({ ...alertBase, ...instanceIdentShape, version: str(), message }),
  ),
  downloadProgressAlert: wobj({
    ...alertBase,
    digest: str(),
    url: str(),
    downloadedBytes: uint(),
    totalBytes: uint(),
    state: enums.downloadState,
    reason: optStr(),
    errorInfo: z.optional(errorInfoSchema),
  }),
};

/** One alert of any kind, selected by `tag`. */
export const alertSchema = tagged("tag", alertSchemas, {
  deviceAllocateAlert: "resourceAllocateAlert",
});

/** Body of `alerts`. */
export const alertsSchema = wobj({ ...correlation, items: list(alertSchema, 1024) });

// ---------------------------------------------------------------------------------------------
// blobs, state, logs, env vars

/** Body of `requestBlobUrls`: ask for the URLs of these blob digests. */
export const requestBlobUrlsSchema = wobj({ ...correlation, digests: list(z.string(), 1024) });

/** Body of `newState` (`stateChecksum` is hex SHA3-224 of `state`). */
export const newStateSchema = wobj({
  ...correlation,
  ...instanceIdentShape,
  stateChecksum: str(),
  state: str(),
});

/** Body of `stateRequest`. */
export const stateRequestSchema = wobj({
  ...correlation,
  ...instanceIdentShape,
  default: z._default(z.boolean(), false),
});

/** Body of `pushLog`; `content` is base64 of (part of) a gzip archive. */
export const pushLogSchema = wobj({
  ...correlation,
  node: identitySchema,
  part: uint(),
  partsCount: uint(),
  content: str(),
  status: enums.logStatus,
  errorInfo: z.optional(errorInfoSchema),
});

/** Body of `overrideEnvVarsStatus`: one entry per variable (schema `subjectId` accepted). */
export const overrideEnvVarsStatusSchema = wobj({
  ...correlation,
  statuses: list(withAlias(
    "subject",
    "subjectId",
    wobj({ ...instanceIdentShape, name: str(), errorInfo: z.optional(errorInfoSchema) }),
  )),
});

// ---------------------------------------------------------------------------------------------
// certificates and provisioning

/** Body of `issueUnitCertificates` (PEM CSRs). */
export const issueUnitCertificatesSchema = wobj({
  ...correlation,
  requests: list(wobj({ type: str(), node: identitySchema, csr: str() }), 256),
});

/** Body of `installUnitCertificatesConfirmation` (`serial` hex). */
export const installUnitCertificatesConfirmationSchema = wobj({
  ...correlation,
  certificates: list(
    wobj({
      type: str(),
      node: identitySchema,
      serial: str(),
      errorInfo: z.optional(errorInfoSchema),
    }),
    256,
  ),
});

const provisioningResponse = {
  ...correlation,
  node: identitySchema,
  errorInfo: z.optional(errorInfoSchema),
};

/** Body of `startProvisioningResponse` (`csrs` present even on error). */
export const startProvisioningResponseSchema = wobj({
  ...provisioningResponse,
  csrs: list(wobj({ type: str(), csr: str() }), 256),
});

/** Body of `finishProvisioningResponse`. */
export const finishProvisioningResponseSchema = wobj(provisioningResponse);

/** Body of `deprovisioningResponse`. */
export const deprovisioningResponseSchema = wobj(provisioningResponse);

// ---------------------------------------------------------------------------------------------
// types

type Msg<T extends string, S extends z.ZodMiniType> = { messageType: T } & z.output<S>;

/** `unitStatus` (unit → cloud), full or delta. */
export type UnitStatus = Msg<"unitStatus", typeof unitStatusSchema>;
/** `monitoringData` (unit → cloud). */
export type MonitoringData = Msg<"monitoringData", typeof monitoringDataSchema>;
/** `alerts` (unit → cloud). */
export type Alerts = Msg<"alerts", typeof alertsSchema>;
/** `requestBlobUrls` (unit → cloud). */
export type RequestBlobUrls = Msg<"requestBlobUrls", typeof requestBlobUrlsSchema>;
/** `newState` (unit → cloud). */
export type NewState = Msg<"newState", typeof newStateSchema>;
/** `stateRequest` (unit → cloud). */
export type StateRequest = Msg<"stateRequest", typeof stateRequestSchema>;
/** `pushLog` (unit → cloud). */
export type PushLog = Msg<"pushLog", typeof pushLogSchema>;
/** `overrideEnvVarsStatus` (unit → cloud). */
export type OverrideEnvVarsStatus = Msg<
  "overrideEnvVarsStatus",
  typeof overrideEnvVarsStatusSchema
>;
/** `issueUnitCertificates` (unit → cloud). */
export type IssueUnitCertificates = Msg<
  "issueUnitCertificates",
  typeof issueUnitCertificatesSchema
>;
/** `installUnitCertificatesConfirmation` (unit → cloud). */
export type InstallUnitCertificatesConfirmation = Msg<
  "installUnitCertificatesConfirmation",
  typeof installUnitCertificatesConfirmationSchema
>;
/** `startProvisioningResponse` (unit → cloud). */
export type StartProvisioningResponse = Msg<
  "startProvisioningResponse",
  typeof startProvisioningResponseSchema
>;
/** `finishProvisioningResponse` (unit → cloud). */
export type FinishProvisioningResponse = Msg<
  "finishProvisioningResponse",
  typeof finishProvisioningResponseSchema
>;
/** `deprovisioningResponse` (unit → cloud). */
export type DeprovisioningResponse = Msg<
  "deprovisioningResponse",
  typeof deprovisioningResponseSchema
>;

/** One node of a unit status. */
export type NodeInfo = z.output<typeof nodeInfoSchema>;
/** A unit config status. */
export type UnitConfigStatus = z.output<typeof unitConfigStatusSchema>;
/** An update item status. */
export type ItemStatus = z.output<typeof itemStatusSchema>;
/** One instance status inside a group. */
export type InstanceStatus = z.output<typeof instanceStatusSchema>;
/** Instances of one (item, subject, version). */
export type InstancesGroup = z.output<typeof instancesGroupSchema>;
/** One monitoring sample. */
export type MonitoringSample = z.output<typeof monitoringSampleSchema>;
/** Monitoring of one node. */
export type NodeMonitoring = z.output<typeof nodeMonitoringSchema>;
/** Monitoring of one instance. */
export type InstanceMonitoring = z.output<typeof instanceMonitoringSchema>;
/** One alert of any kind. */
export type Alert = z.output<typeof alertSchema>;
/** The alert tags (C++ spelling). */
export type AlertTag = Alert["tag"];
/** An alert of one kind. */
export type AlertOf<T extends AlertTag> = Extract<Alert, { tag: T }>;

/** Any message the unit sends to the cloud (besides `ack`/`nack`, typed with the cloud ones). */
export type UnitToCloudMessage =
  | UnitStatus
  | MonitoringData
  | Alerts
  | RequestBlobUrls
  | NewState
  | StateRequest
  | PushLog
  | OverrideEnvVarsStatus
  | IssueUnitCertificates
  | InstallUnitCertificatesConfirmation
  | StartProvisioningResponse
  | FinishProvisioningResponse
  | DeprovisioningResponse;

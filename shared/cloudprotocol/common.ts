/**
 * Building blocks shared by many cloud protocol v7 messages: identities, `errorInfo`, enums.
 * @module
 */
import * as z from "zod/mini";
import { ienum, int, optStr, str, uint, wobj } from "./_wire.ts";

/** Protocol version carried in every header. */
export const PROTOCOL_VERSION = 7;

/**
 * AosIdentity. AosCore identifies nodes, node groups, runtimes, pre-installed items and unit
 * subjects by `codename`, and cloud items/subjects/owners by `id` (a UUID). `type` is kept as
 * any string: AosCore knows more identity types than the schema (`fleet`, `node-subject`).
 */
export const identitySchema = wobj({
  id: optStr(),
  codename: optStr(),
  type: optStr(),
  title: optStr(),
  description: optStr(),
  urn: optStr(),
});

/** An AosIdentity (every field optional). */
export type Identity = z.output<typeof identitySchema>;

/** Cloud `errorInfo`; absent fields read as 0 / "" (C++ writes all three). */
export const errorInfoSchema = wobj({ aosCode: int(), exitCode: int(), message: str() });

/** Cloud `errorInfo`: `aosCode` is the AosCore `ErrorEnum` number, `exitCode` an errno/exit code. */
export type ErrorInfo = z.output<typeof errorInfoSchema>;

/** Fields that identify one service instance (item, subject, instance index). */
export const instanceIdentShape = {
  item: identitySchema,
  subject: identitySchema,
  instance: uint(),
};

/** Node states (unit status, monitoring). */
export const NODE_STATES = ["unprovisioned", "provisioned", "error", "paused"] as const;
/** Desired node states. */
export const DESIRED_NODE_STATES = ["provisioned", "paused"] as const;
/** Update item states. */
export const ITEM_STATES = [
  "unknown",
  "downloading",
  "pending",
  "installing",
  "installed",
  "removing",
  "removed",
  "failed",
] as const;
/** Instance states. */
export const INSTANCE_STATES = ["activating", "active", "inactive", "failed"] as const;
/** Unit config states. */
export const UNIT_CONFIG_STATES = ["absent", "installed", "failed"] as const;
/** Subject types. */
export const SUBJECT_TYPES = ["group", "user"] as const;
/** Log types of `requestLog`. */
export const LOG_TYPES = ["systemLog", "instanceLog", "crashLog"] as const;
/** `pushLog` status values in the C++ form (`error`; the schema says `failed`, read as `error`). */
export const LOG_STATUSES = ["ok", "error", "empty", "absent"] as const;
/** Log upload types (AosCore implements `https` only). */
export const UPLOAD_TYPES = ["wss", "https"] as const;
/** Download states of a `downloadProgressAlert`. */
export const DOWNLOAD_STATES = ["started", "paused", "interrupted", "finished"] as const;
/** `stateAcceptance` results. */
export const STATE_RESULTS = ["accepted", "rejected"] as const;

/** A node state. */
export type NodeState = typeof NODE_STATES[number];
/** A desired node state. */
export type DesiredNodeState = typeof DESIRED_NODE_STATES[number];
/** An update item state. */
export type ItemState = typeof ITEM_STATES[number];
/** An instance state. */
export type InstanceState = typeof INSTANCE_STATES[number];
/** A unit config state. */
export type UnitConfigState = typeof UNIT_CONFIG_STATES[number];
/** A subject type. */
export type SubjectType = typeof SUBJECT_TYPES[number];
/** A log type. */
export type LogType = typeof LOG_TYPES[number];
/** A `pushLog` status (C++ form). */
export type LogStatus = typeof LOG_STATUSES[number];
/** A download state. */
export type DownloadState = typeof DOWNLOAD_STATES[number];

/** Enum schemas (values matched case-insensitively on receive). */
export const enums = {
  nodeState: ienum(NODE_STATES),
  desiredNodeState: ienum(DESIRED_NODE_STATES),
  itemState: ienum(ITEM_STATES),
  instanceState: ienum(INSTANCE_STATES),
  unitConfigState: ienum(UNIT_CONFIG_STATES),
  subjectType: ienum(SUBJECT_TYPES),
  logType: ienum(LOG_TYPES),
  uploadType: ienum(UPLOAD_TYPES),
  downloadState: ienum(DOWNLOAD_STATES),
  stateResult: ienum(STATE_RESULTS),
  logStatus: z.pipe(
    // Schema spelling `failed` is the C++ `error` (spec §8 #5).
    z.transform((v) => (typeof v === "string" && v.toLowerCase() === "failed" ? "error" : v)),
    ienum(LOG_STATUSES),
  ),
};

/** Identity of a node as AosCore writes it: `{codename: nodeId}` (+ `title` in unit status). */
export function nodeIdentity(nodeId: string, title?: string): Identity {
  return title === undefined ? { codename: nodeId } : { codename: nodeId, title };
}

/**
 * Identity of an update item, subject or owner: cloud-provided ones by `id`, pre-installed ones
 * (not from the cloud) by `codename`, as AosCore does.
 */
export function itemIdentity(
  itemId: string,
  options: { preinstalled?: boolean; type?: string } = {},
): Identity {
  const base: Identity = options.preinstalled ? { codename: itemId } : { id: itemId };
  return options.type === undefined ? base : { ...base, type: options.type };
}

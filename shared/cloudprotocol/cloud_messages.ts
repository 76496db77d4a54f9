/**
 * Cloud → unit messages of protocol v7: lenient receive schemas and the types they produce.
 *
 * Where the schema and AosCore C++ disagree (spec §8) both forms are accepted and the result is
 * normalised to one model: `unitSecrets.nodes` becomes a list, `blobUrls` `sha256` hex,
 * `minTimeout` milliseconds, missing `numInstances`/`priority` the schema defaults 1 / 0.
 * @module
 */
import * as z from "zod/mini";
import { Buffer } from "node:buffer";
import { duration } from "../config/schema.ts";
import { bool, getKey, list, num, optStr, optUint, str, time, uint, wobj } from "./_wire.ts";
import { enums, identitySchema, instanceIdentShape } from "./common.ts";

const correlation = { correlationId: optStr() };

// ---------------------------------------------------------------------------------------------
// desiredStatus

/** Alert rule minimum duration: seconds as a number (schema) or a duration string (C++). */
const minTimeout = z._default(duration, 0);

const alertRulePercentsSchema = wobj({
  minThreshold: num(),
  maxThreshold: num(),
  /** Milliseconds. */
  minTimeout,
});
const alertRulePartitionSchema = wobj({
  name: str(),
  minThreshold: num(),
  maxThreshold: num(),
  minTimeout,
});
const alertRulePointsSchema = wobj({ minThreshold: uint(), maxThreshold: uint(), minTimeout });

/** Node alert rules; every `minTimeout` is in milliseconds. */
export const alertRulesSchema = wobj({
  cpu: z.optional(alertRulePercentsSchema),
  ram: z.optional(alertRulePercentsSchema),
  partitions: list(alertRulePartitionSchema, 64),
  download: z.optional(alertRulePointsSchema),
  upload: z.optional(alertRulePointsSchema),
});

/** Resource ratios in percent. */
export const resourceRatiosSchema = wobj({
  cpu: z.optional(z.number()),
  ram: z.optional(z.number()),
  storage: z.optional(z.number()),
  state: z.optional(z.number()),
});

/** Config of one node or of a whole node group (`node` absent). */
export const nodeConfigSchema = wobj({
  /** C++ writes a per-node config version; the schema has none. */
  version: optStr(),
  nodeGroupSubject: identitySchema,
  node: z.optional(identitySchema),
  priority: uint(),
  labels: list(z.string(), 256),
  alertRules: z.optional(alertRulesSchema),
  resourceRatios: z.optional(resourceRatiosSchema),
});

/** A new unit config. */
export const unitConfigSchema = wobj({
  version: str(),
  formatVersion: str(),
  nodes: list(nodeConfigSchema, 256),
});

/** Desired update item (service, component, layer…). */
export const desiredItemSchema = wobj({
  item: identitySchema,
  version: str(),
  owner: identitySchema,
  indexDigest: str(),
});

/** Desired service instances. Absent `priority`/`numInstances` use the schema defaults 0 / 1. */
export const desiredInstanceSchema = wobj({
  item: identitySchema,
  subject: identitySchema,
  priority: uint(),
  numInstances: z._default(z.number().check(z.int(), z.gte(0)), 1),
  labels: list(z.string(), 256),
});

/** A desired subject; `isReportedFromUnit` is a C++-only flag. */
export const desiredSubjectSchema = wobj({
  identity: identitySchema,
  type: enums.subjectType,
  isReportedFromUnit: bool(),
});

/** Body of `desiredStatus`: a complete snapshot; absent lists read as empty, as in C++. */
export const desiredStatusSchema = wobj({
  ...correlation,
  nodes: list(wobj({ item: identitySchema, state: enums.desiredNodeState }), 256),
  unitConfig: z.optional(unitConfigSchema),
  items: list(desiredItemSchema),
  instances: list(desiredInstanceSchema),
  subjects: list(desiredSubjectSchema),
  certificates: list(wobj({ certificate: str(), fingerprint: str() }), 32),
  certificateChains: list(wobj({ name: str(), fingerprints: list(z.string(), 32) }), 8),
});

// ---------------------------------------------------------------------------------------------
// blobUrls

/**
 * A SHA-256 value as hex (AosCore) or base64 (schema), normalised to lowercase hex.
 * Empty stays empty (missing scalar).
 */
export const sha256Hex = z.pipe(
  z._default(z.string(), ""),
  z.transform((s, ctx) => {
    if (s === "" || /^[0-9a-fA-F]{64}$/.test(s)) return s.toLowerCase();
    if (/^[A-Za-z0-9+/]{43}=$/.test(s)) return Buffer.from(s, "base64").toString("hex");
    ctx.issues.push({
      code: "custom",
      message: "expected 64 hex digits or the base64 of 32 bytes",
      input: s,
    });
    return z.NEVER;
  }),
);

/** Where and how to fetch one blob. */
export const blobInfoSchema = wobj({
  digest: str(),
  urls: list(z.string(), 64),
  /** Lowercase hex. */
  sha256: sha256Hex,
  size: uint(),
  decryptInfo: z.optional(wobj({
    blockAlg: z._default(z.string(), "AES256/CBC/pkcs7"),
    /** base64. */
    blockIv: str(),
    /** base64. */
    blockKey: str(),
  })),
  signInfo: z.optional(wobj({
    chainName: str(),
    alg: str(),
    /** base64. */
    value: str(),
    trustedTimestamp: time(),
    ocspValues: list(z.string(), 64),
  })),
});

/** Body of `blobUrls` (answer to `requestBlobUrls`, same `correlationId`). */
export const blobUrlsSchema = wobj({ ...correlation, items: list(blobInfoSchema) });

// ---------------------------------------------------------------------------------------------
// state

/** Body of `stateAcceptance`. */
export const stateAcceptanceSchema = wobj({
  ...correlation,
  ...instanceIdentShape,
  checksum: str(),
  result: enums.stateResult,
  reason: str(),
});

/** Body of `updateState` (`stateChecksum` is hex SHA3-224 of `state`). */
export const updateStateSchema = wobj({
  ...correlation,
  item: z.optional(identitySchema),
  subject: z.optional(identitySchema),
  instance: uint(),
  stateChecksum: str(),
  state: str(),
});

// ---------------------------------------------------------------------------------------------
// logs

/** Log filter: `from` inclusive, `till` exclusive; `nodeIds` holds node identities. */
export const logFilterSchema = wobj({
  from: z.optional(time()),
  till: z.optional(time()),
  nodeIds: list(identitySchema, 256),
  item: z.optional(identitySchema),
  subject: z.optional(identitySchema),
  instance: optUint(),
});

/** Body of `requestLog`. */
export const requestLogSchema = wobj({
  ...correlation,
  logType: enums.logType,
  filter: logFilterSchema,
  uploadOptions: z.optional(wobj({
    type: enums.uploadType,
    url: str(),
    bearerToken: str(),
    bearerTokenTtl: z.optional(time()),
  })),
});

// ---------------------------------------------------------------------------------------------
// env vars

/** Body of `overrideEnvVars`; absent item/subject/instance act as wildcards. */
export const overrideEnvVarsSchema = wobj({
  ...correlation,
  items: list(wobj({
    item: z.optional(identitySchema),
    subject: z.optional(identitySchema),
    instance: optUint(),
    variables: list(wobj({ name: str(), value: str(), ttl: z.optional(time()) }), 256),
  })),
});

// ---------------------------------------------------------------------------------------------
// certificates and provisioning

const nodeSecretSchema = wobj({ node: identitySchema, secret: str() });

/**
 * `unitSecrets.nodes` in any of its forms: a list of `{node, secret}` (C++), a single
 * `{node, secret}` object (schema) or a map `nodeId → secret` (the schema's docstring example).
 */
const nodeSecretsSchema = z.pipe(
  z.transform((v) => {
    if (v === undefined || Array.isArray(v)) return v;
    if (typeof v !== "object" || v === null) return v;
    const obj = v as Record<string, unknown>;
    if (getKey(obj, "node") !== undefined || getKey(obj, "secret") !== undefined) return [obj];
    return Object.entries(obj).map(([nodeId, secret]) => ({
      node: { codename: nodeId },
      secret: typeof secret === "object" && secret !== null
        ? getKey(secret as Record<string, unknown>, "secret")
        : secret,
    }));
  }),
  list(nodeSecretSchema, 256),
);

/** Unit secrets; `version` is an int in the schema and a string in C++, kept as a string. */
export const unitSecretsSchema = wobj({
  version: z._default(z.union([z.string(), z.pipe(z.number(), z.transform(String))]), ""),
  nodes: nodeSecretsSchema,
});

/** Body of `renewCertificatesNotification`. Certificate types are kept as any string. */
export const renewCertificatesNotificationSchema = wobj({
  ...correlation,
  certificates: list(
    wobj({
      type: str(),
      node: identitySchema,
      serial: str(),
      validTill: z.optional(time()),
    }),
    256,
  ),
  unitSecrets: unitSecretsSchema,
});

/** Body of `issuedUnitCertificates`: PEM chains to install. */
export const issuedUnitCertificatesSchema = wobj({
  ...correlation,
  certificates: list(
    wobj({ type: str(), node: identitySchema, certificateChain: str() }),
    256,
  ),
});

/** Body of `startProvisioningRequest`. */
export const startProvisioningRequestSchema = wobj({
  ...correlation,
  node: identitySchema,
  password: str(),
});

/** Body of `finishProvisioningRequest`. */
export const finishProvisioningRequestSchema = wobj({
  ...correlation,
  node: identitySchema,
  certificates: list(wobj({ type: str(), chain: str() }), 256),
  password: str(),
});

/** Body of `deprovisioningRequest`. */
export const deprovisioningRequestSchema = wobj({
  ...correlation,
  node: identitySchema,
  password: str(),
});

// ---------------------------------------------------------------------------------------------
// ack / nack (both directions)

/** Body of `ack`; the header `txn` is the txn of the acknowledged message. */
export const ackSchema = wobj({ ...correlation });

/** Body of `nack`: resend the message with the header's txn after `retryAfter` ms (default 500). */
export const nackSchema = wobj({
  ...correlation,
  retryAfter: z._default(z.number().check(z.int(), z.gte(0)), 500),
});

// ---------------------------------------------------------------------------------------------
// types

type Msg<T extends string, S extends z.ZodMiniType> = { messageType: T } & z.output<S>;

/** `desiredStatus` (cloud → unit). */
export type DesiredStatus = Msg<"desiredStatus", typeof desiredStatusSchema>;
/** `blobUrls` (cloud → unit). */
export type BlobUrls = Msg<"blobUrls", typeof blobUrlsSchema>;
/** `stateAcceptance` (cloud → unit). */
export type StateAcceptance = Msg<"stateAcceptance", typeof stateAcceptanceSchema>;
/** `updateState` (cloud → unit). */
export type UpdateState = Msg<"updateState", typeof updateStateSchema>;
/** `requestLog` (cloud → unit). */
export type RequestLog = Msg<"requestLog", typeof requestLogSchema>;
/** `overrideEnvVars` (cloud → unit). */
export type OverrideEnvVars = Msg<"overrideEnvVars", typeof overrideEnvVarsSchema>;
/** `renewCertificatesNotification` (cloud → unit). */
export type RenewCertificatesNotification = Msg<
  "renewCertificatesNotification",
  typeof renewCertificatesNotificationSchema
>;
/** `issuedUnitCertificates` (cloud → unit). */
export type IssuedUnitCertificates = Msg<
  "issuedUnitCertificates",
  typeof issuedUnitCertificatesSchema
>;
/** `startProvisioningRequest` (cloud → unit). */
export type StartProvisioningRequest = Msg<
  "startProvisioningRequest",
  typeof startProvisioningRequestSchema
>;
/** `finishProvisioningRequest` (cloud → unit). */
export type FinishProvisioningRequest = Msg<
  "finishProvisioningRequest",
  typeof finishProvisioningRequestSchema
>;
/** `deprovisioningRequest` (cloud → unit). */
export type DeprovisioningRequest = Msg<
  "deprovisioningRequest",
  typeof deprovisioningRequestSchema
>;
/** `ack` (both directions). */
export type Ack = Msg<"ack", typeof ackSchema>;
/** `nack` (both directions). */
export type Nack = Msg<"nack", typeof nackSchema>;

/** A unit config (part of `desiredStatus`). */
export type UnitConfig = z.output<typeof unitConfigSchema>;
/** One node or node-group config. */
export type NodeConfig = z.output<typeof nodeConfigSchema>;
/** Alert rules of a node config (`minTimeout` in ms). */
export type AlertRules = z.output<typeof alertRulesSchema>;
/** A desired update item. */
export type DesiredItem = z.output<typeof desiredItemSchema>;
/** A desired instance set. */
export type DesiredInstance = z.output<typeof desiredInstanceSchema>;
/** A desired subject. */
export type DesiredSubject = z.output<typeof desiredSubjectSchema>;
/** One blob of `blobUrls`. */
export type BlobInfo = z.output<typeof blobInfoSchema>;
/** The `requestLog` filter. */
export type LogFilter = z.output<typeof logFilterSchema>;
/** Unit secrets of `renewCertificatesNotification` (normalised: `nodes` is a list). */
export type UnitSecrets = z.output<typeof unitSecretsSchema>;

/** Any message the cloud sends to the unit. */
export type CloudToUnitMessage =
  | DesiredStatus
  | BlobUrls
  | StateAcceptance
  | UpdateState
  | RequestLog
  | OverrideEnvVars
  | RenewCertificatesNotification
  | IssuedUnitCertificates
  | StartProvisioningRequest
  | FinishProvisioningRequest
  | DeprovisioningRequest
  | Ack
  | Nack;

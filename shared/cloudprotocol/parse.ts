/**
 * Parsing of received cloud protocol v7 envelopes, in either direction.
 * @module
 */
import * as z from "zod/mini";
import { AosError } from "../core/errors.ts";
import { formatIssues, getKey, optStr, str, time, wobj } from "./_wire.ts";
import { PROTOCOL_VERSION } from "./common.ts";
import {
  ackSchema,
  blobUrlsSchema,
  type CloudToUnitMessage,
  deprovisioningRequestSchema,
  desiredStatusSchema,
  finishProvisioningRequestSchema,
  issuedUnitCertificatesSchema,
  nackSchema,
  overrideEnvVarsSchema,
  renewCertificatesNotificationSchema,
  requestLogSchema,
  startProvisioningRequestSchema,
  stateAcceptanceSchema,
  updateStateSchema,
} from "./cloud_messages.ts";
import {
  alertsSchema,
  deprovisioningResponseSchema,
  finishProvisioningResponseSchema,
  installUnitCertificatesConfirmationSchema,
  issueUnitCertificatesSchema,
  monitoringDataSchema,
  newStateSchema,
  overrideEnvVarsStatusSchema,
  pushLogSchema,
  requestBlobUrlsSchema,
  startProvisioningResponseSchema,
  stateRequestSchema,
  unitStatusSchema,
  type UnitToCloudMessage,
} from "./unit_messages.ts";

/** Default upper bound of one received message (UTF-8 bytes). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** Body schema of every v7 message type, by `messageType`. */
export const MESSAGE_SCHEMAS = {
  // cloud → unit
  desiredStatus: desiredStatusSchema,
  blobUrls: blobUrlsSchema,
  stateAcceptance: stateAcceptanceSchema,
  updateState: updateStateSchema,
  requestLog: requestLogSchema,
  overrideEnvVars: overrideEnvVarsSchema,
  renewCertificatesNotification: renewCertificatesNotificationSchema,
  issuedUnitCertificates: issuedUnitCertificatesSchema,
  startProvisioningRequest: startProvisioningRequestSchema,
  finishProvisioningRequest: finishProvisioningRequestSchema,
  deprovisioningRequest: deprovisioningRequestSchema,
  // both directions
  ack: ackSchema,
  nack: nackSchema,
  // unit → cloud
  unitStatus: unitStatusSchema,
  monitoringData: monitoringDataSchema,
  alerts: alertsSchema,
  requestBlobUrls: requestBlobUrlsSchema,
  newState: newStateSchema,
  stateRequest: stateRequestSchema,
  pushLog: pushLogSchema,
  overrideEnvVarsStatus: overrideEnvVarsStatusSchema,
  issueUnitCertificates: issueUnitCertificatesSchema,
  installUnitCertificatesConfirmation: installUnitCertificatesConfirmationSchema,
  startProvisioningResponse: startProvisioningResponseSchema,
  finishProvisioningResponse: finishProvisioningResponseSchema,
  deprovisioningResponse: deprovisioningResponseSchema,
} as const;

/** Every v7 `messageType`. */
export type MessageType = keyof typeof MESSAGE_SCHEMAS;

/** Every v7 `messageType` (26). */
export const MESSAGE_TYPES = Object.keys(MESSAGE_SCHEMAS) as MessageType[];

/** Any v7 message body, discriminated by `messageType`. */
export type CloudMessage = CloudToUnitMessage | UnitToCloudMessage;

/** The body of a given message type. */
export type MessageOf<T extends MessageType> = Extract<CloudMessage, { messageType: T }>;

/**
 * Received header. A missing `version` reads as 7 (schema default; AosCore insists on it but a
 * lenient reader loses nothing); any other value is rejected.
 */
export const headerSchema = wobj({
  version: z._default(z.literal(PROTOCOL_VERSION), PROTOCOL_VERSION),
  systemId: str(),
  createdAt: z.optional(time()),
  txn: str(),
  /** Pre-2025-11-28 drafts carried it in the header; read it so such peers still pair replies. */
  correlationId: optStr(),
});

/** A received header. */
export type CloudHeader = z.output<typeof headerSchema>;

/** A parsed envelope. */
export interface ParsedCloudMessage {
  /** The header. */
  header: CloudHeader;
  /** The body, normalised (see the schemas for the forms accepted). */
  message: CloudMessage;
}

/** Options of {@link parseCloudMessage}. */
export interface ParseOptions {
  /** Reject larger messages (UTF-8 bytes). Default {@link DEFAULT_MAX_MESSAGE_BYTES}. */
  maxBytes?: number;
  /** Only accept these message types (e.g. the cloud → unit ones on the unit side). */
  accept?: readonly MessageType[];
}

const typeByLower = new Map(MESSAGE_TYPES.map((t) => [t.toLowerCase(), t]));
const decoder = new TextDecoder("utf-8", { fatal: true });

function invalid(message: string, cause?: unknown): AosError {
  return new AosError("invalidArgument", message, cause === undefined ? {} : { cause });
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(`Invalid cloud message: ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Parses one received envelope `{header, data}` (UTF-8 bytes or text) leniently: keys match
 * case-insensitively, `null` is absent, unknown keys are ignored, missing scalars get their
 * defaults, and both the schema and the AosCore forms of each field are accepted.
 *
 * Throws `AosError("invalidArgument")` saying what is wrong and where, e.g.
 * `desiredStatus.items[2].version: expected string, received number`.
 * Checking `header.systemId` against the unit's own is the caller's job.
 */
export function parseCloudMessage(
  input: Uint8Array | string,
  options: ParseOptions = {},
): ParsedCloudMessage {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  // A string's UTF-8 size is at most 3 bytes per UTF-16 unit: only encode when it may be over.
  const size = typeof input === "string"
    ? (input.length * 3 <= maxBytes ? input.length : new TextEncoder().encode(input).length)
    : input.length;
  if (size > maxBytes) {
    throw invalid(`Invalid cloud message: ${size} bytes exceed the limit of ${maxBytes}`);
  }
  let text: string;
  try {
    text = typeof input === "string" ? input : decoder.decode(input);
  } catch (err) {
    throw invalid("Invalid cloud message: not valid UTF-8", err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalid(`Invalid cloud message: not JSON (${(err as Error).message})`, err);
  }
  const envelope = asObject(json, "the envelope");
  const rawHeader = getKey(envelope, "header");
  const rawData = getKey(envelope, "data");
  if (rawHeader === undefined || rawHeader === null) {
    throw invalid("Invalid cloud message: header is missing");
  }
  if (rawData === undefined || rawData === null) {
    throw invalid("Invalid cloud message: data is missing");
  }
  const header = headerSchema.safeParse(asObject(rawHeader, "header"));
  if (!header.success) {
    throw invalid(`Invalid cloud message: ${formatIssues("header", header.error.issues)}`);
  }
  const data = asObject(rawData, "data");
  const rawType = getKey(data, "messageType");
  const messageType = typeof rawType === "string"
    ? typeByLower.get(rawType.toLowerCase())
    : undefined;
  if (messageType === undefined) {
    throw invalid(
      `Invalid cloud message: unknown data.messageType ${JSON.stringify(rawType ?? null)}`,
    );
  }
  if (options.accept && !options.accept.includes(messageType)) {
    throw invalid(`Invalid cloud message: messageType "${messageType}" is not expected here`);
  }
  const body = (MESSAGE_SCHEMAS[messageType] as z.ZodMiniType<object>).safeParse(data);
  if (!body.success) {
    throw invalid(`Invalid ${messageType}: ${formatIssues(messageType, body.error.issues)}`);
  }
  const message = { ...body.data, messageType } as CloudMessage;
  return { header: header.data, message };
}

/** Narrows a parsed message to one type. */
export function isMessage<T extends MessageType>(
  message: CloudMessage,
  type: T,
): message is MessageOf<T> {
  return message.messageType === type;
}

/**
 * Bounds and shapes of every inbound iamanager.v6 message, checked before anything reaches
 * the core. Limits are upstream's where it has one (password 40, DN 128, PEM 64 KiB).
 * @module
 */
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { AosError } from "@aos/shared/errors";
import { NODE_STATES } from "../core/types.ts";

/** Size limits of inbound fields. */
export const LIMITS = {
  password: 40,
  subject: 128,
  pem: 64 * 1024,
  nodeId: 64,
  certType: 64,
  serialHex: 128,
  issuerDer: 4096,
  secret: 128,
  functionalServerId: 128,
  itemId: 256,
  listItems: 64,
  text: 1024,
} as const;

/** Largest gRPC message the IAM servers and client accept (bytes). */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

const text = (max: number = LIMITS.text) =>
  z.string().check(z.maxLength(max, { message: `longer than ${max} characters` }));

/** A node ID: empty (this node) or letters, digits and `._:-`. */
export const nodeIdField = z.string().check(
  z.maxLength(LIMITS.nodeId, { message: `longer than ${LIMITS.nodeId} characters` }),
  z.regex(/^[A-Za-z0-9._:-]*$/, { message: "may hold only letters, digits and . _ : -" }),
);

const certType = z.string().check(
  z.minLength(1, { message: "is empty" }),
  z.maxLength(LIMITS.certType, { message: `longer than ${LIMITS.certType} characters` }),
);

const password = text(LIMITS.password);

/** `CreateKeyRequest`. */
export const createKeyRequest = z.object({
  nodeId: nodeIdField,
  subject: text(LIMITS.subject),
  type: certType,
  password,
});

/** `ApplyCertRequest`. */
export const applyCertRequest = z.object({
  nodeId: nodeIdField,
  type: certType,
  cert: z.string().check(
    z.minLength(1, { message: "is empty" }),
    z.maxLength(LIMITS.pem, { message: `larger than ${LIMITS.pem} bytes` }),
  ),
});

/** Start/Finish provisioning and Deprovision requests. */
export const passwordRequest = z.object({ nodeId: nodeIdField, password });

/** Requests that carry only a node ID. */
export const nodeRequest = z.object({ nodeId: nodeIdField });

/** `GetCertRequest`. */
export const getCertRequest = z.object({
  type: certType,
  issuer: z.instanceof(Uint8Array).check(z.refine((b) => b.length <= LIMITS.issuerDer, {
    message: `larger than ${LIMITS.issuerDer} bytes`,
  })),
  serial: z.string().check(
    z.maxLength(LIMITS.serialHex, { message: "too long" }),
    z.regex(/^[0-9a-fA-F]*$/, { message: "is not hex" }),
  ),
});

/** `SubscribeCertChangedRequest`. */
export const subscribeCertRequest = z.object({ type: certType });

/** `PermissionsRequest`. */
export const permissionsRequest = z.object({
  secret: text(LIMITS.secret).check(z.minLength(1, { message: "is empty" })),
  functionalServerId: text(LIMITS.functionalServerId),
});

const instanceIdent = z.object({
  itemId: text(LIMITS.itemId).check(z.minLength(1, { message: "is empty" })),
  subjectId: text(LIMITS.itemId),
  instance: z.bigint(),
  type: z.number().check(z.int()),
  preinstalled: z.boolean(),
});

const permissionMap = z.record(text(), text()).check(
  z.refine((m) => Object.keys(m).length <= LIMITS.listItems, {
    message: `more than ${LIMITS.listItems} entries`,
  }),
);

/** `RegisterInstanceRequest`. */
export const registerInstanceRequest = z.object({
  instance: instanceIdent,
  permissions: z.record(text(LIMITS.functionalServerId), z.object({ permissions: permissionMap }))
    .check(z.refine((m) => Object.keys(m).length <= LIMITS.listItems, {
      message: `more than ${LIMITS.listItems} functional servers`,
    })),
});

/** `UnregisterInstanceRequest`. */
export const unregisterInstanceRequest = z.object({ instance: instanceIdent });

const list = <T extends z.ZodMiniType>(item: T) =>
  z.array(item).check(
    z.maxLength(LIMITS.listItems, { message: `more than ${LIMITS.listItems} entries` }),
  );

/** `NodeInfo` a secondary node sends on `RegisterNode`. */
export const nodeInfoMessage = z.object({
  nodeId: nodeIdField.check(z.minLength(1, { message: "is empty" })),
  nodeType: text(),
  title: text(),
  state: z.enum(NODE_STATES, { message: `must be one of ${NODE_STATES.join(", ")}` }),
  cpus: list(z.object({ modelName: text() })),
  partitions: list(z.object({ name: text(), path: text(), types: list(text()) })),
  attrs: list(z.object({ name: text(), value: text() })),
});

/**
 * Parses an inbound message against `schema`; throws `invalidArgument` naming the request,
 * the field and what is wrong (`Invalid CreateKey request: password: longer than 40 …`).
 */
export function parseRequest<S extends z.ZodMiniType>(
  schema: S,
  value: unknown,
  what: string,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.map(String).join(".") || "message";
  throw new AosError("invalidArgument", `Invalid ${what} request: ${field} ${issue.message}`);
}

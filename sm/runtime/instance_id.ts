/**
 * Name-based identifiers of instances and runtimes (UUID v3, as upstream computes them).
 * @module
 */
import { createHash } from "node:crypto";

/** The ISO OID namespace (RFC 4122 appendix C) upstream uses for every Aos name UUID. */
export const AOS_UUID_NAMESPACE = "6ba7b812-9dad-11d1-80b4-00c04fd430c8";

/** Identity of one instance of an update item. */
export interface InstanceIdent {
  /** Update item (service) ID. */
  itemId: string;
  /** Subject ID. */
  subjectId: string;
  /** Instance index (a uint64 on the wire). */
  instance: number | bigint;
}

function uuidBytes(uuid: string): Uint8Array {
  const hex = uuid.replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`Invalid UUID "${uuid}"`);
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function formatUuid(b: Uint8Array): string {
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

/** RFC 4122 version-3 (MD5) UUID of `name` (UTF-8) in `namespace`. */
export function uuidV3(namespace: string, name: string): string {
  const hash = createHash("md5")
    .update(uuidBytes(namespace))
    .update(new TextEncoder().encode(name))
    .digest();
  const b = new Uint8Array(hash.subarray(0, 16));
  b[6] = (b[6]! & 0x0f) | 0x30;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return formatUuid(b);
}

/**
 * The instance ID: UUID v3 of `"<itemID>:<subjectID>:<instance>"`. It names the bundle dir, the
 * runc container, the cgroup leaf and (later) the netns and firewall chains.
 */
export function instanceId(ident: InstanceIdent): string {
  return uuidV3(AOS_UUID_NAMESPACE, `${ident.itemId}:${ident.subjectId}:${ident.instance}`);
}

/** The runtime ID reported in `RuntimeInfo`: UUID v3 of `"<runtimeType>-<nodeID>"`. */
export function runtimeId(runtimeType: string, nodeId: string): string {
  return uuidV3(AOS_UUID_NAMESPACE, `${runtimeType}-${nodeId}`);
}

/** True for the canonical lowercase UUID text form (what runc accepts as a container ID here). */
export function isUuid(text: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(text);
}

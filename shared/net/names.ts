/**
 * Names of the kernel objects the network manager creates (sm.md §5), and checks of names that
 * reach `ip`/`tc`/`nft` as arguments.
 * @module
 */

import { AosError } from "../core/errors.ts";

/** Longest interface name the kernel accepts (IFNAMSIZ - 1). */
export const MAX_IFNAME = 15;

const IFNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const NETNS = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
const NFT_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,254}$/;

/**
 * Checks an interface name: 1..15 characters of `[A-Za-z0-9_.-]`, starting alphanumeric, so it
 * can never be read by `ip`/`tc` as an option or keyword position.
 */
export function checkIfName(name: string): string {
  if (!IFNAME.test(name)) {
    throw new AosError("invalidArgument", `Invalid interface name "${name.slice(0, 32)}"`);
  }
  return name;
}

/** Checks a network namespace name (a file name under `/run/netns`). */
export function checkNetnsName(name: string): string {
  if (!NETNS.test(name)) {
    throw new AosError("invalidArgument", `Invalid network namespace name "${name.slice(0, 64)}"`);
  }
  return name;
}

/** Checks an nftables table or chain name. */
export function checkNftName(name: string): string {
  if (!NFT_NAME.test(name)) {
    throw new AosError("invalidArgument", `Invalid nftables name "${name.slice(0, 64)}"`);
  }
  return name;
}

/** 32-bit FNV-1a of the UTF-8 bytes of `text`. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

const hex8 = (n: number) => n.toString(16).padStart(8, "0");

/** Host end of an instance's veth pair: `veth<fnv1a32(instanceID) hex8>`. */
export function vethName(instanceId: string): string {
  return `veth${hex8(fnv1a32(instanceId))}`;
}

/** IFB device that shapes an instance's upload: `ifb-<fnv1a32(hostVeth) hex8>`. */
export function ifbName(hostVeth: string): string {
  return `ifb-${hex8(fnv1a32(hostVeth))}`;
}

/** Per-instance firewall chain: `instance_<instanceID with non-alphanumerics as _>`. */
export function instanceChainName(instanceId: string): string {
  return `instance_${instanceId.replace(/[^A-Za-z0-9]/g, "_")}`;
}

/** Random lower-case hex of `bytes` bytes (name suffixes). */
export function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** A node network's bridge: `br-<random hex>` (11 characters). */
export function bridgeName(suffix: string = randomHex(4)): string {
  return checkIfName(`br-${suffix}`);
}

/** A node network's VLAN interface: `vlan-<random hex>` (13 characters). */
export function vlanName(suffix: string = randomHex(4)): string {
  return checkIfName(`vlan-${suffix}`);
}

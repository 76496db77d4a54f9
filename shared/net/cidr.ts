/**
 * IPv4 addresses and CIDR blocks as unsigned 32-bit numbers.
 * @module
 */

import { AosError } from "../core/errors.ts";

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parses dotted-quad IPv4 text (no leading zeros) into an unsigned 32-bit number. */
export function parseIpv4(text: string): number {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) {
    throw new AosError("invalidArgument", `Invalid IPv4 address "${text.slice(0, 64)}"`);
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

/** Formats an unsigned 32-bit number as dotted-quad text. */
export function formatIpv4(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new AosError("outOfRange", `Value ${value} is not an IPv4 address`);
  }
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

/** True when `text` is a valid dotted-quad IPv4 address. */
export function isIpv4(text: string): boolean {
  try {
    parseIpv4(text);
    return true;
  } catch {
    return false;
  }
}

/** Netmask of a prefix length as a number (`/24` → 0xffffff00). */
export function prefixMask(prefix: number): number {
  checkPrefix(prefix);
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function checkPrefix(prefix: number): void {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new AosError("invalidArgument", `Invalid IPv4 prefix length ${prefix}`);
  }
}

/** An IPv4 block `network/prefix` (the network address has no host bits). */
export class Cidr {
  /** Network address as a number. */
  readonly network: number;
  /** Prefix length, 0..32. */
  readonly prefix: number;

  /** Builds the block of `prefix` that contains `address` (host bits are cleared). */
  constructor(address: number, prefix: number) {
    checkPrefix(prefix);
    if (!Number.isInteger(address) || address < 0 || address > 0xffffffff) {
      throw new AosError("outOfRange", `Value ${address} is not an IPv4 address`);
    }
    this.network = (address & prefixMask(prefix)) >>> 0;
    this.prefix = prefix;
  }

  /**
   * Parses `a.b.c.d/n`. With `strict` (default) host bits must be zero; otherwise they are
   * cleared (use {@link parseInterfaceAddress} to keep the address too).
   */
  static parse(text: string, options: { strict?: boolean } = {}): Cidr {
    const { address, prefix } = parseInterfaceAddress(text);
    const cidr = new Cidr(address, prefix);
    if ((options.strict ?? true) && cidr.network !== address) {
      throw new AosError(
        "invalidArgument",
        `Invalid IPv4 network "${text}": host bits are set (network is ${cidr})`,
      );
    }
    return cidr;
  }

  /** Netmask as a number. */
  get mask(): number {
    return prefixMask(this.prefix);
  }

  /** Last address of the block. */
  get broadcast(): number {
    return (this.network | (~this.mask >>> 0)) >>> 0;
  }

  /** Number of addresses in the block. */
  get size(): number {
    return 2 ** (32 - this.prefix);
  }

  /**
   * First and last address a host may use: all but network and broadcast, except that a /31
   * has two usable addresses (RFC 3021) and a /32 one.
   */
  get hostRange(): { first: number; last: number } {
    if (this.prefix >= 31) return { first: this.network, last: this.broadcast };
    return { first: this.network + 1, last: this.broadcast - 1 };
  }

  /** Number of usable host addresses (see {@link hostRange}). */
  get hostCount(): number {
    const { first, last } = this.hostRange;
    return last - first + 1;
  }

  /** True when the address (number or text) or the whole block lies inside this block. */
  contains(target: number | string | Cidr): boolean {
    if (target instanceof Cidr) {
      return target.prefix >= this.prefix && this.contains(target.network);
    }
    const value = typeof target === "string" ? parseIpv4(target) : target;
    return ((value & this.mask) >>> 0) === this.network;
  }

  /** True when the two blocks share at least one address. */
  overlaps(other: Cidr): boolean {
    return this.contains(other.network) || other.contains(this.network);
  }

  /** The `n`-th usable host (1-based: `nthHost(1)` is the first usable address). */
  nthHost(n: number): number {
    const { first } = this.hostRange;
    if (!Number.isInteger(n) || n < 1 || n > this.hostCount) {
      throw new AosError(
        "outOfRange",
        `Host #${n} is outside ${this} (${this.hostCount} usable addresses)`,
      );
    }
    return first + n - 1;
  }

  /** Splits into consecutive blocks of `prefix` (which must not be shorter than this one's). */
  *split(prefix: number): Generator<Cidr> {
    checkPrefix(prefix);
    if (prefix < this.prefix) {
      throw new AosError("invalidArgument", `Cannot split ${this} into larger /${prefix} blocks`);
    }
    const step = 2 ** (32 - prefix);
    for (let at = this.network; at <= this.broadcast; at += step) yield new Cidr(at, prefix);
  }

  /** Same block? */
  equals(other: Cidr): boolean {
    return this.network === other.network && this.prefix === other.prefix;
  }

  /** `a.b.c.d/n`. */
  toString(): string {
    return `${formatIpv4(this.network)}/${this.prefix}`;
  }

  /** JSON form is the text form. */
  toJSON(): string {
    return this.toString();
  }
}

/** Parses `a.b.c.d/n` keeping the host part (an interface address like `172.17.0.5/16`). */
export function parseInterfaceAddress(text: string): { address: number; prefix: number } {
  const slash = text.indexOf("/");
  const prefixText = slash < 0 ? "" : text.slice(slash + 1);
  if (slash < 0 || !/^(3[0-2]|[12]?\d)$/.test(prefixText)) {
    throw new AosError("invalidArgument", `Invalid IPv4 CIDR "${text.slice(0, 64)}"`);
  }
  return { address: parseIpv4(text.slice(0, slash)), prefix: Number(prefixText) };
}

/** Dotted netmask text for a prefix (`/16` → `255.255.0.0`). */
export function netmaskText(prefix: number): string {
  return formatIpv4(prefixMask(prefix));
}

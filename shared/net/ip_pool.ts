/**
 * Subnet and host-address allocators with JSON state, so callers can persist them.
 *
 * Allocations are keyed by an owner (a network ID, an instance ident): allocating again for the
 * same owner returns the same block or address, which makes replays after a crash harmless.
 * @module
 */

import * as z from "zod/mini";
import "../core/zod_en.ts";
import { AosError } from "../core/errors.ts";
import { Cidr, formatIpv4, parseIpv4 } from "./cidr.ts";

/**
 * Address pools the upstream CM splits into provider networks (`172.17/16`, `172.18/16`,
 * `172.19/16`, `172.20/14`, `172.24/14`, `172.28/14`; 15 /16 subnets in all).
 */
export const DEFAULT_NETWORK_POOLS: readonly string[] = [
  "172.17.0.0/16",
  "172.18.0.0/16",
  "172.19.0.0/16",
  "172.20.0.0/14",
  "172.24.0.0/14",
  "172.28.0.0/14",
];

/** Prefix length of one provider network upstream. */
export const DEFAULT_SUBNET_PREFIX = 16;

const MAX_OWNER = 512;
const owner = z.string().check(z.minLength(1), z.maxLength(MAX_OWNER));

function checkOwner(who: string): void {
  if (!owner.safeParse(who).success) {
    throw new AosError("invalidArgument", `Invalid allocation owner (1..${MAX_OWNER} chars)`);
  }
}

/** Options of {@link SubnetAllocator}. */
export interface SubnetAllocatorOptions {
  /** Pools to cut subnets from, in preference order (default {@link DEFAULT_NETWORK_POOLS}). */
  pools?: readonly string[];
  /** Prefix length of each subnet (default {@link DEFAULT_SUBNET_PREFIX}). */
  prefix?: number;
  /** Blocks never handed out, in whole or in part (e.g. networks the host already uses). */
  exclude?: readonly string[];
}

/** Persistable state of a {@link SubnetAllocator}. */
export interface SubnetAllocatorState {
  pools: string[];
  prefix: number;
  exclude: string[];
  /** owner → subnet (`a.b.c.d/n`). */
  allocations: Record<string, string>;
}

const subnetStateSchema = z.object({
  pools: z.array(z.string().check(z.maxLength(32))).check(z.minLength(1), z.maxLength(1024)),
  prefix: z.number().check(z.int(), z.gte(0), z.lte(32)),
  exclude: z._default(z.array(z.string().check(z.maxLength(32))).check(z.maxLength(1024)), []),
  allocations: z.record(owner, z.string().check(z.maxLength(32))),
});

/** Hands out fixed-size subnets from a list of pools. */
export class SubnetAllocator {
  readonly #pools: Cidr[];
  readonly #prefix: number;
  readonly #exclude: Cidr[];
  readonly #byOwner = new Map<string, Cidr>();
  readonly #taken = new Map<string, string>(); // subnet text → owner

  constructor(options: SubnetAllocatorOptions = {}) {
    this.#prefix = options.prefix ?? DEFAULT_SUBNET_PREFIX;
    this.#pools = (options.pools ?? DEFAULT_NETWORK_POOLS).map((p) => Cidr.parse(p));
    this.#exclude = (options.exclude ?? []).map((p) => Cidr.parse(p, { strict: false }));
    if (this.#pools.length === 0) {
      throw new AosError("invalidArgument", "Subnet allocator needs at least one pool");
    }
    this.#pools.forEach((pool, i) => {
      if (pool.prefix > this.#prefix) {
        throw new AosError(
          "invalidArgument",
          `Pool ${pool} is smaller than one /${this.#prefix} subnet`,
        );
      }
      const clash = this.#pools.slice(0, i).find((p) => p.overlaps(pool));
      if (clash) throw new AosError("invalidArgument", `Pools ${clash} and ${pool} overlap`);
    });
  }

  /** Restores an allocator from {@link toJSON} output (validated). */
  static fromJSON(json: unknown): SubnetAllocator {
    const parsed = subnetStateSchema.safeParse(json);
    if (!parsed.success) {
      throw new AosError(
        "invalidArgument",
        `Invalid subnet allocator state: ${parsed.error.message}`,
      );
    }
    const s = parsed.data;
    const alloc = new SubnetAllocator({ pools: s.pools, prefix: s.prefix, exclude: s.exclude });
    for (const [who, subnet] of Object.entries(s.allocations)) alloc.reserve(who, subnet);
    return alloc;
  }

  /** Subnet prefix length. */
  get prefix(): number {
    return this.#prefix;
  }

  /** Number of subnets the pools hold, excluded ones included. */
  get capacity(): number {
    return this.#pools.reduce((n, p) => n + 2 ** (this.#prefix - p.prefix), 0);
  }

  /** owner → subnet. */
  get allocations(): Record<string, string> {
    return Object.fromEntries([...this.#byOwner].map(([k, v]) => [k, v.toString()]));
  }

  /** The owner's subnet, if any. */
  lookup(who: string): string | undefined {
    return this.#byOwner.get(who)?.toString();
  }

  /** The owner's subnet, allocating the first free one when it has none. */
  allocate(who: string): string {
    checkOwner(who);
    const have = this.#byOwner.get(who);
    if (have) return have.toString();
    for (const pool of this.#pools) {
      for (const candidate of pool.split(this.#prefix)) {
        const key = candidate.toString();
        if (this.#taken.has(key) || this.#exclude.some((x) => x.overlaps(candidate))) continue;
        this.#byOwner.set(who, candidate);
        this.#taken.set(key, who);
        return key;
      }
    }
    throw new AosError(
      "noMemory",
      `Cannot allocate a /${this.#prefix} subnet for "${who}": all ${this.#taken.size} ` +
        `allocatable subnets of [${this.#pools.join(", ")}] are taken`,
    );
  }

  /** Gives `who` exactly `subnet` (restoring or migrating an allocation). */
  reserve(who: string, subnet: string): string {
    checkOwner(who);
    const cidr = Cidr.parse(subnet);
    const key = cidr.toString();
    if (cidr.prefix !== this.#prefix || !this.#pools.some((p) => p.contains(cidr))) {
      throw new AosError(
        "outOfRange",
        `Cannot reserve ${subnet} for "${who}": not a /${this.#prefix} of [${
          this.#pools.join(", ")
        }]`,
      );
    }
    const holder = this.#taken.get(key);
    if (holder !== undefined && holder !== who) {
      throw new AosError("alreadyExist", `Cannot reserve ${key} for "${who}": "${holder}" has it`);
    }
    const have = this.#byOwner.get(who);
    if (have && !have.equals(cidr)) {
      throw new AosError("alreadyExist", `Cannot reserve ${key} for "${who}": it holds ${have}`);
    }
    this.#byOwner.set(who, cidr);
    this.#taken.set(key, who);
    return key;
  }

  /** Frees the owner's subnet; false when it had none. */
  release(who: string): boolean {
    const have = this.#byOwner.get(who);
    if (!have) return false;
    this.#byOwner.delete(who);
    this.#taken.delete(have.toString());
    return true;
  }

  /** State for persistence. */
  toJSON(): SubnetAllocatorState {
    return {
      pools: this.#pools.map(String),
      prefix: this.#prefix,
      exclude: this.#exclude.map(String),
      allocations: this.allocations,
    };
  }
}

/** Options of {@link HostAllocator}. */
export interface HostAllocatorOptions {
  /** Keep the first usable address (the bridge/gateway, `.1`) out of allocation (default true). */
  reserveGateway?: boolean;
  /** Further addresses never handed out. */
  reserved?: readonly string[];
}

/** Persistable state of a {@link HostAllocator}. */
export interface HostAllocatorState {
  subnet: string;
  reserveGateway: boolean;
  reserved: string[];
  /** owner → address. */
  allocations: Record<string, string>;
}

const hostStateSchema = z.object({
  subnet: z.string().check(z.maxLength(32)),
  reserveGateway: z._default(z.boolean(), true),
  reserved: z._default(z.array(z.string().check(z.maxLength(16))).check(z.maxLength(65536)), []),
  allocations: z.record(owner, z.string().check(z.maxLength(16))),
});

/**
 * Hands out host addresses of one subnet, lowest free first, never the network or broadcast
 * address and (by default) never the gateway.
 */
export class HostAllocator {
  readonly #subnet: Cidr;
  readonly #reserveGateway: boolean;
  readonly #reserved: Set<number>;
  readonly #byOwner = new Map<string, number>();
  readonly #taken = new Map<number, string>();

  constructor(subnet: string, options: HostAllocatorOptions = {}) {
    this.#subnet = Cidr.parse(subnet);
    this.#reserveGateway = options.reserveGateway ?? true;
    this.#reserved = new Set((options.reserved ?? []).map(parseIpv4));
  }

  /** Restores an allocator from {@link toJSON} output (validated). */
  static fromJSON(json: unknown): HostAllocator {
    const parsed = hostStateSchema.safeParse(json);
    if (!parsed.success) {
      throw new AosError(
        "invalidArgument",
        `Invalid host allocator state: ${parsed.error.message}`,
      );
    }
    const s = parsed.data;
    const alloc = new HostAllocator(s.subnet, {
      reserveGateway: s.reserveGateway,
      reserved: s.reserved,
    });
    for (const [who, ip] of Object.entries(s.allocations)) alloc.reserve(who, ip);
    return alloc;
  }

  /** The subnet, `a.b.c.d/n`. */
  get subnet(): string {
    return this.#subnet.toString();
  }

  /** The gateway address (first usable host) when it is reserved. */
  get gateway(): string | undefined {
    return this.#reserveGateway ? formatIpv4(this.#subnet.hostRange.first) : undefined;
  }

  /** owner → address. */
  get allocations(): Record<string, string> {
    return Object.fromEntries([...this.#byOwner].map(([k, v]) => [k, formatIpv4(v)]));
  }

  /** Number of addresses still free. */
  get free(): number {
    const { first, last } = this.#subnet.hostRange;
    const blocked = new Set([...this.#reserved].filter((r) => r >= first && r <= last));
    if (this.#reserveGateway) blocked.add(first);
    return this.#subnet.hostCount - blocked.size - this.#taken.size;
  }

  /** The owner's address, if any. */
  lookup(who: string): string | undefined {
    const a = this.#byOwner.get(who);
    return a === undefined ? undefined : formatIpv4(a);
  }

  /** Who holds `ip`, if anyone. */
  ownerOf(ip: string): string | undefined {
    return this.#taken.get(parseIpv4(ip));
  }

  #usable(a: number): boolean {
    if (this.#reserveGateway && a === this.#subnet.hostRange.first) return false;
    return !this.#reserved.has(a);
  }

  /** The owner's address, allocating the lowest free one when it has none. */
  allocate(who: string): string {
    checkOwner(who);
    const have = this.#byOwner.get(who);
    if (have !== undefined) return formatIpv4(have);
    const { first, last } = this.#subnet.hostRange;
    for (let a = first; a <= last; a++) {
      if (!this.#usable(a) || this.#taken.has(a)) continue;
      this.#byOwner.set(who, a);
      this.#taken.set(a, who);
      return formatIpv4(a);
    }
    throw new AosError(
      "noMemory",
      `Cannot allocate an address in ${this.#subnet} for "${who}": all ${this.#taken.size} ` +
        `allocatable addresses are taken`,
    );
  }

  /** Gives `who` exactly `ip` (restoring or migrating an allocation). */
  reserve(who: string, ip: string): string {
    checkOwner(who);
    const a = parseIpv4(ip);
    const { first, last } = this.#subnet.hostRange;
    if (a < first || a > last || !this.#usable(a)) {
      throw new AosError(
        "outOfRange",
        `Cannot reserve ${ip} for "${who}": not an allocatable host of ${this.#subnet}`,
      );
    }
    const holder = this.#taken.get(a);
    if (holder !== undefined && holder !== who) {
      throw new AosError("alreadyExist", `Cannot reserve ${ip} for "${who}": "${holder}" has it`);
    }
    const have = this.#byOwner.get(who);
    if (have !== undefined && have !== a) {
      throw new AosError(
        "alreadyExist",
        `Cannot reserve ${ip} for "${who}": it holds ${formatIpv4(have)}`,
      );
    }
    this.#byOwner.set(who, a);
    this.#taken.set(a, who);
    return ip;
  }

  /** Frees the owner's address; false when it had none. */
  release(who: string): boolean {
    const a = this.#byOwner.get(who);
    if (a === undefined) return false;
    this.#byOwner.delete(who);
    this.#taken.delete(a);
    return true;
  }

  /** State for persistence. */
  toJSON(): HostAllocatorState {
    return {
      subnet: this.subnet,
      reserveGateway: this.#reserveGateway,
      reserved: [...this.#reserved].map(formatIpv4),
      allocations: this.allocations,
    };
  }
}

/**
 * Typed wrapper of `ip` (iproute2): namespaces, links, addresses, routes.
 * @module
 */

import * as z from "zod/mini";
import "../core/zod_en.ts";
import { AosError } from "../core/errors.ts";
import type { CommandRunner } from "../exec/runner.ts";
import { Cidr, parseInterfaceAddress, parseIpv4 } from "./cidr.ts";
import { checkIfName, checkNetnsName } from "./names.ts";

/** One link of `ip -d -j link show` (only the fields we use; others are kept). */
export const ipLinkSchema = z.looseObject({
  ifindex: z.number().check(z.int()),
  ifname: z.string(),
  flags: z._default(z.array(z.string()), []),
  mtu: z.optional(z.number().check(z.int())),
  operstate: z.optional(z.string()),
  link_type: z.optional(z.string()),
  address: z.optional(z.string()),
  /** Bridge (or bond) this link is enslaved to. */
  master: z.optional(z.string()),
  /** Peer or parent link name, when in the same namespace. */
  link: z.optional(z.nullable(z.string())),
  linkinfo: z.optional(z.looseObject({
    info_kind: z.optional(z.string()),
    info_slave_kind: z.optional(z.string()),
    info_data: z.optional(z.record(z.string(), z.unknown())),
    info_slave_data: z.optional(z.record(z.string(), z.unknown())),
  })),
});

/** A link as reported by `ip -d -j link show`. */
export type IpLink = z.infer<typeof ipLinkSchema> & {
  /** `info_kind` (bridge, veth, vlan, ifb…), when the link has one. */
  kind?: string;
  /** True when the `UP` flag is set (administratively up). */
  up: boolean;
};

const addrInfoSchema = z.looseObject({
  family: z.string(),
  local: z.string(),
  prefixlen: z.number().check(z.int()),
});

const addrLinkSchema = z.looseObject({
  ifname: z.string(),
  addr_info: z._default(z.array(addrInfoSchema), []),
});

/** An IPv4 address on an interface. */
export interface IpAddress {
  dev: string;
  /** Address with prefix, e.g. `172.17.0.1/16`. */
  cidr: string;
}

const routeSchema = z.looseObject({
  dst: z.string(),
  gateway: z.optional(z.string()),
  dev: z.optional(z.string()),
  prefsrc: z.optional(z.string()),
});

/** A route of the main table. */
export interface IpRoute {
  /** `default` or a CIDR (`10.0.0.0/24`; host routes are written without `/32` by `ip`). */
  dst: string;
  via?: string;
  dev?: string;
  /** Preferred source address. */
  src?: string;
}

/** Options of {@link IpTool}. */
export interface IpToolOptions {
  /** Runs the program. */
  runner: CommandRunner;
  /** The `ip` program as named in the runner's allow-list (default `ip`). */
  program?: string;
  /** Namespace every link/addr/route call applies to (`ip -n`); host namespace when absent. */
  netns?: string;
  /** Timeout of each call in milliseconds (default 10 s). */
  timeoutMs?: number;
}

function parseJson<T>(schema: z.ZodMiniType<T>, text: string, what: string): T {
  let raw: unknown;
  try {
    // Some `ip` versions print nothing (not `[]`) for an empty list.
    raw = text.trim() === "" ? [] : JSON.parse(text);
  } catch (err) {
    throw new AosError("failed", `Cannot parse ${what}: invalid JSON`, { cause: err });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new AosError("failed", `Cannot parse ${what}: ${parsed.error.message.slice(0, 300)}`);
  }
  return parsed.data;
}

function checkIpv4Cidr(text: string): string {
  parseInterfaceAddress(text);
  return text;
}

function checkIpv4(text: string): string {
  parseIpv4(text);
  return text;
}

function routeArgs(route: IpRoute): string[] {
  const dst = route.dst === "default" ? "default" : Cidr.parse(route.dst).toString();
  const args = [dst];
  if (route.via !== undefined) args.push("via", checkIpv4(route.via));
  if (route.dev !== undefined) args.push("dev", checkIfName(route.dev));
  if (route.src !== undefined) args.push("src", checkIpv4(route.src));
  return args;
}

/**
 * `ip` through a {@link CommandRunner}. Names are validated before they become arguments and
 * every keyword position is explicit (`name`, `dev`), so no value is read as an option.
 */
export class IpTool {
  readonly #runner: CommandRunner;
  readonly #program: string;
  readonly #netns: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: IpToolOptions) {
    this.#runner = options.runner;
    this.#program = options.program ?? "ip";
    this.#netns = options.netns === undefined ? undefined : checkNetnsName(options.netns);
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Namespace this tool works in (`undefined` = host). */
  get netns(): string | undefined {
    return this.#netns;
  }

  /** The program name used with the runner. */
  get program(): string {
    return this.#program;
  }

  /** The same tool working inside `netns` (links, addresses, routes). */
  inNetns(netns: string): IpTool {
    return new IpTool({
      runner: this.#runner,
      program: this.#program,
      netns,
      timeoutMs: this.#timeoutMs,
    });
  }

  async #run(args: string[], opts: { allowFailure?: boolean; global?: boolean } = {}) {
    const full = this.#netns !== undefined && !opts.global ? ["-n", this.#netns, ...args] : args;
    return await this.#runner.run(this.#program, full, {
      timeoutMs: this.#timeoutMs,
      allowFailure: opts.allowFailure ?? false,
    });
  }

  // --- namespaces (always global) ---

  /** Creates `/run/netns/<name>` and brings its loopback up. */
  async netnsAdd(name: string): Promise<void> {
    checkNetnsName(name);
    await this.#run(["netns", "add", name], { global: true });
    await this.#run(["-n", name, "link", "set", "dev", "lo", "up"], { global: true });
  }

  /** Deletes a namespace; absent is fine. */
  async netnsDelete(name: string): Promise<void> {
    checkNetnsName(name);
    const r = await this.#run(["netns", "delete", name], { global: true, allowFailure: true });
    if (r.code !== 0 && await this.netnsExists(name)) {
      throw new AosError(
        "failed",
        `Cannot delete network namespace "${name}": ${r.stderr.trim() || `exit ${r.code}`}`,
        { exitCode: r.code },
      );
    }
  }

  /** Names under `/run/netns`. */
  async netnsList(): Promise<string[]> {
    const r = await this.#run(["-j", "netns", "list"], { global: true });
    const list = parseJson(z.array(z.looseObject({ name: z.string() })), r.stdout, "ip netns list");
    return list.map((n) => n.name);
  }

  /** True when the namespace exists. */
  async netnsExists(name: string): Promise<boolean> {
    return (await this.netnsList()).includes(name);
  }

  /** Arguments for `ip` that run `program args…` inside `netns` (`ip netns exec …`). */
  netnsExecArgs(netns: string, program: string, args: readonly string[]): string[] {
    return ["netns", "exec", checkNetnsName(netns), program, ...args];
  }

  // --- links ---

  /** Creates a bridge. */
  async linkAddBridge(name: string): Promise<void> {
    await this.#run(["link", "add", "name", checkIfName(name), "type", "bridge"]);
  }

  /** Creates a veth pair; the peer may be created directly in another namespace. */
  async linkAddVeth(name: string, peer: string, options: { peerNetns?: string } = {}) {
    const peerArgs = ["name", checkIfName(peer)];
    if (options.peerNetns !== undefined) peerArgs.push("netns", checkNetnsName(options.peerNetns));
    await this.#run([
      "link",
      "add",
      "name",
      checkIfName(name),
      "type",
      "veth",
      "peer",
      ...peerArgs,
    ]);
  }

  /** Creates an 802.1Q VLAN interface on `parent`. */
  async linkAddVlan(name: string, parent: string, vlanId: number): Promise<void> {
    if (!Number.isInteger(vlanId) || vlanId < 0 || vlanId > 4094) {
      throw new AosError("invalidArgument", `Invalid VLAN ID ${vlanId} for "${name}"`);
    }
    await this.#run([
      "link",
      "add",
      "link",
      checkIfName(parent),
      "name",
      checkIfName(name),
      "type",
      "vlan",
      "id",
      String(vlanId),
    ]);
  }

  /** Creates an IFB device (target of redirected ingress traffic for shaping). */
  async linkAddIfb(name: string): Promise<void> {
    await this.#run(["link", "add", "name", checkIfName(name), "type", "ifb"]);
  }

  /** Sets a link administratively up. */
  async linkSetUp(name: string): Promise<void> {
    await this.#run(["link", "set", "dev", checkIfName(name), "up"]);
  }

  /** Sets a link administratively down. */
  async linkSetDown(name: string): Promise<void> {
    await this.#run(["link", "set", "dev", checkIfName(name), "down"]);
  }

  /** Enslaves a link to a bridge. */
  async linkSetMaster(name: string, master: string): Promise<void> {
    await this.#run(["link", "set", "dev", checkIfName(name), "master", checkIfName(master)]);
  }

  /** Releases a link from its bridge. */
  async linkSetNoMaster(name: string): Promise<void> {
    await this.#run(["link", "set", "dev", checkIfName(name), "nomaster"]);
  }

  /** Sets hairpin mode of a bridge port. */
  async linkSetHairpin(name: string, on: boolean): Promise<void> {
    await this.#run([
      "link",
      "set",
      "dev",
      checkIfName(name),
      "type",
      "bridge_slave",
      "hairpin",
      on ? "on" : "off",
    ]);
  }

  /** Moves a link into another namespace, optionally renaming it there in the same step. */
  async linkSetNetns(name: string, netns: string, options: { newName?: string } = {}) {
    const args = ["link", "set", "dev", checkIfName(name), "netns", checkNetnsName(netns)];
    if (options.newName !== undefined) args.push("name", checkIfName(options.newName));
    await this.#run(args);
  }

  /** Renames a (down) link. */
  async linkRename(name: string, newName: string): Promise<void> {
    await this.#run(["link", "set", "dev", checkIfName(name), "name", checkIfName(newName)]);
  }

  /** Deletes a link (a veth takes its peer with it); absent is fine. */
  async linkDelete(name: string): Promise<void> {
    checkIfName(name);
    const r = await this.#run(["link", "delete", "dev", name], { allowFailure: true });
    if (r.code !== 0 && await this.linkExists(name)) {
      throw new AosError(
        "failed",
        `Cannot delete link "${name}"${this.#where()}: ${r.stderr.trim() || `exit ${r.code}`}`,
        { exitCode: r.code },
      );
    }
  }

  /** All links with details. */
  async linkShow(): Promise<IpLink[]> {
    const r = await this.#run(["-d", "-j", "link", "show"]);
    return parseJson(z.array(ipLinkSchema), r.stdout, `ip link show${this.#where()}`).map((l) => {
      const link: IpLink = { ...l, up: l.flags.includes("UP") };
      const kind = l.linkinfo?.info_kind;
      if (kind !== undefined) link.kind = kind;
      return link;
    });
  }

  /** One link by name, or `undefined`. */
  async linkGet(name: string): Promise<IpLink | undefined> {
    checkIfName(name);
    return (await this.linkShow()).find((l) => l.ifname === name);
  }

  /** True when the link exists. */
  async linkExists(name: string): Promise<boolean> {
    return (await this.linkGet(name)) !== undefined;
  }

  // --- addresses ---

  /** Adds an address with prefix (`172.17.0.1/16`). */
  async addrAdd(dev: string, cidr: string): Promise<void> {
    await this.#run(["addr", "add", checkIpv4Cidr(cidr), "dev", checkIfName(dev)]);
  }

  /** Removes every address of a device. */
  async addrFlush(dev: string): Promise<void> {
    await this.#run(["addr", "flush", "dev", checkIfName(dev)]);
  }

  /** IPv4 addresses, of one device or all. */
  async addrShow(dev?: string): Promise<IpAddress[]> {
    const args = ["-j", "-4", "addr", "show"];
    if (dev !== undefined) args.push("dev", checkIfName(dev));
    const r = await this.#run(args);
    const links = parseJson(z.array(addrLinkSchema), r.stdout, `ip addr show${this.#where()}`);
    return links.flatMap((l) =>
      l.addr_info.filter((a) => a.family === "inet").map((a) => ({
        dev: l.ifname,
        cidr: `${a.local}/${a.prefixlen}`,
      }))
    );
  }

  // --- routes ---

  /** Adds a route. */
  async routeAdd(route: IpRoute): Promise<void> {
    await this.#run(["route", "add", ...routeArgs(route)]);
  }

  /** Adds or replaces a route. */
  async routeReplace(route: IpRoute): Promise<void> {
    await this.#run(["route", "replace", ...routeArgs(route)]);
  }

  /** Deletes a route; absent is fine. */
  async routeDelete(route: IpRoute): Promise<void> {
    const args = routeArgs(route);
    const r = await this.#run(["route", "delete", ...args], { allowFailure: true });
    if (r.code === 0) return;
    const dst = args[0];
    const still = (await this.routeShow()).some((x) =>
      x.dst === dst || (dst !== "default" && `${x.dst}/32` === dst)
    );
    if (still) {
      throw new AosError(
        "failed",
        `Cannot delete route ${args.join(" ")}${this.#where()}: ${r.stderr.trim()}`,
        { exitCode: r.code },
      );
    }
  }

  /** IPv4 routes of the main table. */
  async routeShow(): Promise<IpRoute[]> {
    const r = await this.#run(["-j", "-4", "route", "show"]);
    return parseJson(z.array(routeSchema), r.stdout, `ip route show${this.#where()}`).map((x) => {
      const route: IpRoute = { dst: x.dst };
      if (x.gateway !== undefined) route.via = x.gateway;
      if (x.dev !== undefined) route.dev = x.dev;
      if (x.prefsrc !== undefined) route.src = x.prefsrc;
      return route;
    });
  }

  /** Device holding the default route (parent of node-network VLANs), if any. */
  async defaultRouteDevice(): Promise<string | undefined> {
    return (await this.routeShow()).find((r) => r.dst === "default")?.dev;
  }

  #where(): string {
    return this.#netns === undefined ? "" : ` in netns "${this.#netns}"`;
  }
}

/**
 * Typed wrapper of `nft` speaking its JSON syntax: `nft -j list …` to read, `nft -j -f -` to
 * apply a batch atomically, with echo + handles so rules can later be deleted precisely.
 * @module
 */

import * as z from "zod/mini";
import "../core/zod_en.ts";
import { AosError } from "../core/errors.ts";
import type { CommandRunner } from "../exec/runner.ts";
import { parseInterfaceAddress, parseIpv4 } from "./cidr.ts";
import { checkIfName, checkNetnsName, checkNftName } from "./names.ts";

/** Address families of nftables tables. */
export type NftFamily = "ip" | "ip6" | "inet" | "arp" | "bridge" | "netdev";

/** A table reference. */
export interface NftTableRef {
  family: NftFamily;
  name: string;
}

/** The firewall table of sm.md §5.3 (shared with `aos-nftables.conf`). */
export const AOS_TABLE: Readonly<NftTableRef> = { family: "inet", name: "aos" };
/** The traffic-accounting table of sm.md §5.5. */
export const AOS_TRAFFIC_TABLE: Readonly<NftTableRef> = { family: "inet", name: "aos-traffic" };

/** A chain; base chains carry type, hook, priority and policy. */
export interface NftChain {
  family: NftFamily;
  table: string;
  name: string;
  type?: "filter" | "nat" | "route";
  hook?: "prerouting" | "input" | "forward" | "output" | "postrouting" | "ingress";
  prio?: number;
  policy?: "accept" | "drop";
}

/** One statement of a rule in nft JSON form (see {@link nftExpr} for builders). */
export type NftExpr = Record<string, unknown>;

/** A rule to add. */
export interface NftRuleSpec {
  family: NftFamily;
  table: string;
  chain: string;
  expr: NftExpr[];
  comment?: string;
}

/** A rule in the ruleset, with its handle. */
export interface NftRule extends NftRuleSpec {
  handle: number;
}

/** The parts of a ruleset we create and read. */
export interface NftRuleset {
  tables: (NftTableRef & { handle: number })[];
  chains: (NftChain & { handle: number })[];
  rules: NftRule[];
}

/** One command of a JSON batch (`{"add": {"rule": …}}`, `{"delete": {"table": …}}`…). */
export type NftCommand = {
  [verb in "add" | "create" | "insert" | "replace" | "delete" | "flush"]?: {
    table?: NftTableRef;
    chain?: Partial<NftChain> & { family: NftFamily; table: string; name: string };
    rule?: Partial<NftRule> & { family: NftFamily; table: string; chain: string };
  };
};

const family = z.enum(["ip", "ip6", "inet", "arp", "bridge", "netdev"]);
const tableSchema = z.looseObject({ family, name: z.string(), handle: z.number().check(z.int()) });
const chainSchema = z.looseObject({
  family,
  table: z.string(),
  name: z.string(),
  handle: z.number().check(z.int()),
  type: z.optional(z.enum(["filter", "nat", "route"])),
  hook: z.optional(z.enum(["prerouting", "input", "forward", "output", "postrouting", "ingress"])),
  prio: z.optional(z.number().check(z.int())),
  policy: z.optional(z.enum(["accept", "drop"])),
});
const ruleSchema = z.looseObject({
  family,
  table: z.string(),
  chain: z.string(),
  handle: z.number().check(z.int()),
  expr: z._default(z.array(z.record(z.string(), z.unknown())), []),
  comment: z.optional(z.string()),
});
const outputSchema = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });

function parseOutput(text: string, what: string): Record<string, unknown>[] {
  if (text.trim() === "") return [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new AosError("failed", `Cannot parse ${what}: invalid JSON`, { cause: err });
  }
  const parsed = outputSchema.safeParse(raw);
  if (!parsed.success) {
    throw new AosError("failed", `Cannot parse ${what}: ${parsed.error.message.slice(0, 300)}`);
  }
  return parsed.data.nftables;
}

function pick<T>(schema: z.ZodMiniType<T>, item: unknown, what: string): T {
  const parsed = schema.safeParse(item);
  if (!parsed.success) {
    throw new AosError("failed", `Cannot parse ${what}: ${parsed.error.message.slice(0, 300)}`);
  }
  return parsed.data;
}

/** Reads tables, chains and rules out of `nft -j list …` items (sets, maps… are ignored). */
export function parseRuleset(items: readonly Record<string, unknown>[]): NftRuleset {
  const out: NftRuleset = { tables: [], chains: [], rules: [] };
  for (const item of items) {
    if ("table" in item) out.tables.push(pick(tableSchema, item.table, "nft table"));
    if ("chain" in item) {
      const c = pick(chainSchema, item.chain, "nft chain");
      out.chains.push(withoutUndefined(c) as NftChain & { handle: number });
    }
    if ("rule" in item) {
      const r = pick(ruleSchema, item.rule, "nft rule");
      out.rules.push(withoutUndefined(r) as NftRule);
    }
  }
  return out;
}

function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function checkTable(t: NftTableRef): void {
  family.parse(t.family);
  checkNftName(t.name);
}

/** Payload address match: a plain address or a prefix. */
function addressRight(address: string): unknown {
  if (!address.includes("/")) {
    parseIpv4(address);
    return address;
  }
  const { prefix } = parseInterfaceAddress(address);
  return { prefix: { addr: address.slice(0, address.indexOf("/")), len: prefix } };
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new AosError("invalidArgument", `Invalid port ${port}`);
  }
  return port;
}

const match = (op: string, left: unknown, right: unknown): NftExpr => ({
  match: { op, left, right },
});

/** Builders of the statements our firewall uses, in nft JSON form. */
export const nftExpr = {
  /** `ip saddr <addr or cidr>` */
  ipSaddr: (a: string): NftExpr =>
    match("==", { payload: { protocol: "ip", field: "saddr" } }, addressRight(a)),
  /** `ip daddr <addr or cidr>` */
  ipDaddr: (a: string): NftExpr =>
    match("==", { payload: { protocol: "ip", field: "daddr" } }, addressRight(a)),
  /** `<tcp|udp> dport <port>` */
  dport: (proto: "tcp" | "udp", port: number): NftExpr =>
    match("==", { payload: { protocol: proto, field: "dport" } }, checkPort(port)),
  /** `oifname != "<name>"` */
  oifnameNot: (name: string): NftExpr =>
    match("!=", { meta: { key: "oifname" } }, checkIfName(name)),
  /** `iifname "<name>"` */
  iifname: (name: string): NftExpr => match("==", { meta: { key: "iifname" } }, checkIfName(name)),
  /** `ct state <s1,s2…>` */
  ctState: (states: ("invalid" | "established" | "related" | "new" | "untracked")[]): NftExpr =>
    match("in", { ct: { key: "state" } }, states.length === 1 ? states[0] : states),
  /** `counter` */
  counter: (): NftExpr => ({ counter: null }),
  /** `accept` */
  accept: (): NftExpr => ({ accept: null }),
  /** `drop` */
  drop: (): NftExpr => ({ drop: null }),
  /** `return` */
  return: (): NftExpr => ({ return: null }),
  /** `jump <chain>` */
  jump: (chain: string): NftExpr => ({ jump: { target: checkNftName(chain) } }),
  /** `masquerade` */
  masquerade: (): NftExpr => ({ masquerade: null }),
};

/** Options of {@link NftTool}. */
export interface NftToolOptions {
  /** Runs the program. */
  runner: CommandRunner;
  /** The `nft` program as named in the runner's allow-list (default `nft`). */
  program?: string;
  /**
   * Work inside this network namespace through `<ipProgram> netns exec <ns> nft …` (`nft` has
   * no namespace option). The runner must then allow `ipProgram`.
   */
  netns?: string;
  /** The `ip` program for {@link netns} (default `ip`). */
  ipProgram?: string;
  /** Timeout of each call in milliseconds (default 10 s). */
  timeoutMs?: number;
}

/** `nft` through a {@link CommandRunner}, JSON in and out. */
export class NftTool {
  readonly #runner: CommandRunner;
  readonly #program: string;
  readonly #netns: string | undefined;
  readonly #ipProgram: string;
  readonly #timeoutMs: number;

  constructor(options: NftToolOptions) {
    this.#runner = options.runner;
    this.#program = options.program ?? "nft";
    this.#netns = options.netns === undefined ? undefined : checkNetnsName(options.netns);
    this.#ipProgram = options.ipProgram ?? "ip";
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async #run(args: string[], opts: { stdin?: string; allowFailure?: boolean } = {}) {
    const [program, full] = this.#netns === undefined
      ? [this.#program, args]
      : [this.#ipProgram, ["netns", "exec", this.#netns, this.#program, ...args]];
    return await this.#runner.run(program, full, {
      timeoutMs: this.#timeoutMs,
      allowFailure: opts.allowFailure ?? false,
      ...(opts.stdin === undefined ? {} : { stdin: opts.stdin }),
    });
  }

  /** The whole ruleset (tables, chains, rules). */
  async listRuleset(): Promise<NftRuleset> {
    const r = await this.#run(["-j", "list", "ruleset"]);
    return parseRuleset(parseOutput(r.stdout, "nft list ruleset"));
  }

  /** Tables only. */
  async listTables(): Promise<(NftTableRef & { handle: number })[]> {
    const r = await this.#run(["-j", "list", "tables"]);
    return parseRuleset(parseOutput(r.stdout, "nft list tables")).tables;
  }

  /** True when the table exists. */
  async tableExists(table: NftTableRef): Promise<boolean> {
    checkTable(table);
    return (await this.listTables()).some((t) =>
      t.family === table.family && t.name === table.name
    );
  }

  /** One table's chains and rules, or `undefined` when it does not exist. */
  async listTable(table: NftTableRef): Promise<NftRuleset | undefined> {
    checkTable(table);
    const r = await this.#run(["-j", "list", "table", table.family, table.name], {
      allowFailure: true,
    });
    if (r.code === 0) return parseRuleset(parseOutput(r.stdout, `nft list table ${table.name}`));
    if (!(await this.tableExists(table))) return undefined;
    throw new AosError(
      "failed",
      `Cannot list nft table ${table.family} ${table.name}: ${r.stderr.trim()}`,
      { exitCode: r.code },
    );
  }

  /**
   * Applies a batch atomically (all or nothing). With `echo`, returns the applied objects as
   * the kernel reports them, handles included.
   */
  async apply(commands: readonly NftCommand[], options: { echo?: boolean } = {}) {
    if (commands.length === 0) return [];
    const args = options.echo ? ["-e", "-a", "-j", "-f", "-"] : ["-j", "-f", "-"];
    const r = await this.#run(args, { stdin: JSON.stringify({ nftables: commands }) });
    return options.echo ? parseOutput(r.stdout, "nft echo") : [];
  }

  /** Adds a table (no-op when it exists). */
  async addTable(table: NftTableRef): Promise<void> {
    checkTable(table);
    await this.apply([{ add: { table: { family: table.family, name: table.name } } }]);
  }

  /** Adds a chain (no-op when it exists with the same definition). */
  async addChain(chain: NftChain): Promise<void> {
    checkTable({ family: chain.family, name: chain.table });
    checkNftName(chain.name);
    await this.apply([{ add: { chain: withoutUndefined({ ...chain }) } }]);
  }

  /** Appends a rule and returns its handle. */
  async addRule(rule: NftRuleSpec): Promise<number> {
    checkTable({ family: rule.family, name: rule.table });
    checkNftName(rule.chain);
    const echoed = await this.apply([{ add: { rule: withoutUndefined({ ...rule }) } }], {
      echo: true,
    });
    const added = echoed.map((i) => i.add as Record<string, unknown> | undefined)
      .find((a) => a?.rule !== undefined);
    const handle = (added?.rule as { handle?: unknown } | undefined)?.handle;
    if (typeof handle !== "number") {
      throw new AosError("failed", `nft did not report the handle of a rule in ${rule.chain}`);
    }
    return handle;
  }

  /** Deletes one rule by handle. */
  async deleteRule(ref: { family: NftFamily; table: string; chain: string; handle: number }) {
    await this.apply([{ delete: { rule: { ...ref } } }]);
  }

  /** Removes every rule of a chain. */
  async flushChain(ref: { family: NftFamily; table: string; name: string }): Promise<void> {
    await this.apply([{ flush: { chain: { ...ref } } }]);
  }

  /** Deletes an (empty, unreferenced) chain. */
  async deleteChain(ref: { family: NftFamily; table: string; name: string }): Promise<void> {
    await this.apply([{ delete: { chain: { ...ref } } }]);
  }

  /** Deletes a table with everything in it; absent is fine. */
  async deleteTable(table: NftTableRef): Promise<void> {
    checkTable(table);
    if (!(await this.tableExists(table))) return;
    await this.apply([{ delete: { table: { family: table.family, name: table.name } } }]);
  }
}

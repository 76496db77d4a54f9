/**
 * The `devcloud` client commands: `deploy`, `remove`, `status` and `alerts` talk to a running
 * `devcloud serve` through its admin API and print readable tables; `deploy` shows progress
 * until the service is running on every connected unit, fails, or times out.
 * @module
 */
import { AosError } from "@aos/shared/core";
import { loadConfigFile, parseDuration } from "@aos/shared/config";
import { devcloudConfigSchema, devcloudPaths } from "./config.ts";
import type { DevcloudStatus, ServiceRecord } from "./cloud.ts";
import { identKey, type UnitRecord } from "./unit_state.ts";

/** Client commands. */
export const CLIENT_COMMANDS = ["deploy", "remove", "status", "alerts"] as const;
/** A client command. */
export type ClientCommand = typeof CLIENT_COMMANDS[number];

/** Whether `s` names a client command. */
export function isClientCommand(s: string | undefined): s is ClientCommand {
  return (CLIENT_COMMANDS as readonly string[]).includes(s ?? "");
}

/** Usage of the whole `devcloud` command. */
export const USAGE = `Usage: devcloud <command> [options]

Commands:
  serve                    run the dev cloud (discovery, WSS, blobs, admin API)
  deploy <service>         pack <servicesDir>/<service> and deploy it
      --instances <n>      desired instances (default: as before, else 1)
      --timeout <d>        how long to follow the deployment (default 5m)
      --no-wait            return once the desired status is sent
  remove <service>         remove a service from the desired status
  status                   services, their progress per unit, units and instances
  alerts [--limit <n>]     the last alerts received (default 20)

Options:
  -c, --config <file>      devcloud.cfg (default ./devcloud.cfg)
      --json               print JSON instead of tables (status, alerts)
  -h, --help               this help`;

/** Parsed client command line. */
export interface ClientArgs {
  /** The command. */
  command: ClientCommand;
  /** `devcloud.cfg` path. */
  config: string;
  /** Service name of `deploy`/`remove`. */
  service?: string;
  /** `--instances`. */
  instances?: number;
  /** `--timeout` of `deploy` in ms. */
  timeoutMs: number;
  /** Follow a deployment (false with `--no-wait`). */
  wait: boolean;
  /** `--json`. */
  json: boolean;
  /** `--limit` of `alerts`. */
  limit: number;
}

/** Parses `<command> [args]`; throws `invalidArgument` with a one-line message. */
export function parseClientArgs(argv: readonly string[]): ClientArgs {
  const [command, ...rest] = argv;
  if (!isClientCommand(command)) {
    throw new AosError("invalidArgument", `unknown command "${command ?? ""}" (see --help)`);
  }
  const out: ClientArgs = {
    command,
    config: "devcloud.cfg",
    timeoutMs: 5 * 60_000,
    wait: true,
    json: false,
    limit: 20,
  };
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const raw = rest[i]!;
    const eq = raw.startsWith("--") ? raw.indexOf("=") : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const value = (): string => {
      if (eq > 0) return raw.slice(eq + 1);
      const next = rest[++i];
      if (next === undefined) throw new AosError("invalidArgument", `option ${flag} needs a value`);
      return next;
    };
    const count = (what: string, min: number): number => {
      const text = value();
      const n = Number(text);
      if (!/^\d+$/.test(text) || n < min) {
        throw new AosError(
          "invalidArgument",
          `${what} must be an integer >= ${min}, not "${text}"`,
        );
      }
      return n;
    };
    switch (flag) {
      case "-c":
      case "--config":
        out.config = value();
        break;
      case "--instances":
        out.instances = count("--instances", 0);
        break;
      case "--timeout":
        try {
          out.timeoutMs = parseDuration(value());
        } catch (err) {
          throw new AosError("invalidArgument", `--timeout: ${(err as Error).message}`);
        }
        break;
      case "--no-wait":
        out.wait = false;
        break;
      case "--json":
        out.json = true;
        break;
      case "--limit":
        out.limit = count("--limit", 1);
        break;
      default:
        if (raw.startsWith("-")) {
          throw new AosError("invalidArgument", `unknown option "${raw}" (see --help)`);
        }
        positional.push(raw);
    }
  }
  if (command === "deploy" || command === "remove") {
    if (positional.length !== 1) {
      throw new AosError("invalidArgument", `${command} needs exactly one service name`);
    }
    out.service = positional[0]!;
  } else if (positional.length > 0) {
    throw new AosError("invalidArgument", `${command} takes no argument "${positional[0]}"`);
  }
  return out;
}

/** Talks to the admin API. */
export class AdminClient {
  readonly #base: string;
  readonly #token: string;

  /** `baseUrl` like `http://localhost:9081`. */
  constructor(baseUrl: string, token: string) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#token = token;
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new AosError(
        "failed",
        `Cannot reach devcloud at ${this.#base} (is "devcloud serve" running?): ${
          (err as Error).message
        }`,
        { cause: err },
      );
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = { error: text.slice(0, 200) };
    }
    if (!res.ok) {
      const msg = (json as { error?: string }).error ?? `HTTP ${res.status}`;
      throw new AosError(res.status === 404 ? "notFound" : "failed", msg);
    }
    return json as T;
  }

  /** Services, progress and units. */
  status(): Promise<DevcloudStatus> {
    return this.#call("GET", "/api/status");
  }

  /** The last `limit` alerts. */
  alerts(limit: number): Promise<(Record<string, unknown> & { systemId: string })[]> {
    return this.#call("GET", `/api/alerts?limit=${limit}`);
  }

  /** Packs and deploys a service. */
  deploy(service: string, instances?: number): Promise<ServiceRecord> {
    return this.#call("POST", "/api/deploy", {
      service,
      ...(instances === undefined ? {} : { instances }),
    });
  }

  /** Removes a service. */
  async remove(service: string): Promise<void> {
    await this.#call("POST", "/api/remove", { service });
  }
}

// ---------------------------------------------------------------------------------------------
// formatting

/** Renders rows as an aligned table with a header line. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function short(digest: string): string {
  return digest.length > 19 ? `${digest.slice(0, 19)}…` : digest;
}

function instanceSummary(counts: Record<string, number>, wanted: number): string {
  const active = counts.active ?? 0;
  const others = Object.entries(counts).filter(([k]) => k !== "active").map(([k, n]) =>
    `${n} ${k}`
  );
  return [`${active}/${wanted} active`, ...others].join(", ");
}

/** The `status` tables. */
export function formatStatus(s: DevcloudStatus): string {
  const out: string[] = [];
  const names = new Map(s.services.map((x) => [x.id, x.name]));
  out.push("SERVICES");
  out.push(
    s.services.length === 0 ? "(none deployed)" : table(
      ["NAME", "VERSION", "WANTED", "INDEX", "UNIT", "ITEM", "INSTANCES"],
      s.services.flatMap((x) => {
        const units = x.units.length ? x.units : [undefined];
        return units.map((u, i) => [
          i === 0 ? x.name : "",
          i === 0 ? x.version : "",
          i === 0 ? String(x.instances) : "",
          i === 0 ? short(x.indexDigest) : "",
          u?.systemId ?? "-",
          u ? u.itemState + (u.itemError ? ` (${u.itemError})` : "") : "-",
          u ? instanceSummary(u.instances, x.instances) : "-",
        ]);
      }),
    ),
  );
  out.push("", "UNITS");
  out.push(
    s.units.length === 0 ? "(no unit has connected yet)" : table(
      ["SYSTEM ID", "CONNECTED", "LAST SEEN", "NODES", "ITEMS", "INSTANCES", "ALERTS"],
      s.units.map((u: UnitRecord) => [
        u.systemId,
        u.connected ? "yes" : "no",
        u.lastSeen,
        u.status.nodes.map((n) => `${identKey(n.identity)}(${n.state})`).join(" ") || "-",
        String(u.status.items.length),
        String(u.status.instances.length),
        String(u.alerts.length),
      ]),
    ),
  );
  for (const u of s.units) {
    if (u.status.instances.length === 0) continue;
    out.push("", `INSTANCES of ${u.systemId}`);
    out.push(table(
      ["SERVICE", "VERSION", "#", "NODE", "RUNTIME", "STATE", "ERROR"],
      u.status.instances.map((i) => [
        names.get(identKey(i.item)) ?? identKey(i.item),
        i.version,
        String(i.instance),
        identKey(i.node),
        identKey(i.runtime),
        i.state,
        i.errorInfo?.message ?? "",
      ]),
    ));
  }
  return out.join("\n");
}

function alertText(a: Record<string, unknown>): { source: string; text: string } {
  const id = (v: unknown) => identKey(v as { id?: string; codename?: string } | undefined);
  switch (a.tag) {
    case "systemAlert":
      return { source: id(a.node), text: String(a.message ?? "") };
    case "coreAlert":
      return { source: `${id(a.node)}/${a.coreComponent}`, text: String(a.message ?? "") };
    case "systemQuotaAlert":
      return { source: id(a.node), text: `${a.parameter} = ${a.value}` };
    case "instanceQuotaAlert":
      return { source: `${id(a.item)}#${a.instance}`, text: `${a.parameter} = ${a.value}` };
    case "resourceAllocateAlert":
      return { source: `${id(a.item)}#${a.instance}`, text: `${a.deviceId}: ${a.message}` };
    case "updateItemInstanceAlert":
      return { source: `${id(a.item)}#${a.instance}`, text: String(a.message ?? "") };
    case "downloadProgressAlert":
      return {
        source: short(String(a.digest ?? "")),
        text: `${a.state} ${a.downloadedBytes}/${a.totalBytes} bytes${
          a.reason ? ` (${a.reason})` : ""
        }`,
      };
    default:
      return { source: "", text: JSON.stringify(a) };
  }
}

/** The `alerts` table. */
export function formatAlerts(alerts: (Record<string, unknown> & { systemId: string })[]): string {
  if (alerts.length === 0) return "(no alerts)";
  return table(
    ["TIME", "UNIT", "TAG", "SOURCE", "MESSAGE"],
    alerts.map((a) => {
      const { source, text } = alertText(a);
      return [String(a.timestamp ?? ""), a.systemId, String(a.tag ?? ""), source, text];
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// deploy progress

/** Outcome of {@link followDeployment}. */
export type DeploymentOutcome = "done" | "failed" | "timeout" | "noUnit";

/** Options of {@link followDeployment}. */
export interface FollowOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Poll period (default 1 s). */
  intervalMs?: number;
  /** Receives a line whenever a unit's progress changes. */
  progress: (line: string) => void;
  /** Sleep port. */
  sleep?: (ms: number) => Promise<void>;
  /** Clock port. */
  now?: () => number;
}

/**
 * Polls the status until the service is done on every connected unit, failed on one, or the
 * time is up. Without a connected unit there is nothing to follow (`noUnit`).
 */
export async function followDeployment(
  client: AdminClient,
  service: ServiceRecord,
  options: FollowOptions,
): Promise<DeploymentOutcome> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  const end = now() + options.timeoutMs;
  const last = new Map<string, string>();
  for (;;) {
    const status = await client.status();
    const connected = new Set(status.units.filter((u) => u.connected).map((u) => u.systemId));
    if (connected.size === 0) return "noUnit";
    const s = status.services.find((x) => x.name === service.name);
    if (!s) throw new AosError("notFound", `Service "${service.name}" is no longer deployed`);
    const units = s.units.filter((u) => connected.has(u.systemId));
    for (const u of units) {
      const line = `  ${u.systemId}: item ${u.itemState}${
        u.itemError ? ` (${u.itemError})` : ""
      }, instances ${instanceSummary(u.instances, s.instances)}${
        u.instanceErrors.length ? ` [${u.instanceErrors.join("; ")}]` : ""
      }`;
      if (last.get(u.systemId) !== line) {
        last.set(u.systemId, line);
        options.progress(line);
      }
    }
    if (units.some((u) => u.failed)) return "failed";
    if (units.every((u) => u.done)) return "done";
    if (now() >= end) return "timeout";
    await sleep(Math.min(options.intervalMs ?? 1000, Math.max(0, end - now())));
  }
}

// ---------------------------------------------------------------------------------------------
// entry

/** Where the CLI writes. */
export interface CliIo {
  /** Normal output. */
  out: (text: string) => void;
  /** Errors. */
  err: (text: string) => void;
}

const consoleIo: CliIo = { out: (t) => console.log(t), err: (t) => console.error(t) };

/** Loads the config and the admin token and returns a client. */
export async function clientFromConfig(configPath: string): Promise<AdminClient> {
  const config = await loadConfigFile(configPath, devcloudConfigSchema);
  const tokenPath = devcloudPaths(config).adminToken;
  let token: string;
  try {
    token = (await Deno.readTextFile(tokenPath)).trim();
  } catch (err) {
    throw new AosError(
      "failed",
      `Cannot read the admin token ${tokenPath} (has "devcloud serve" run with ${configPath}?): ${
        (err as Error).message
      }`,
      { cause: err },
    );
  }
  return new AdminClient(`http://${config.adminUrl}`, token);
}

/** Runs a client command; resolves to the exit code. */
export async function runClient(
  argv: readonly string[],
  io: CliIo = consoleIo,
  makeClient: (configPath: string) => Promise<AdminClient> = clientFromConfig,
): Promise<number> {
  let args: ClientArgs;
  try {
    args = parseClientArgs(argv);
  } catch (err) {
    io.err(`devcloud: ${(err as Error).message}`);
    return 2;
  }
  try {
    const client = await makeClient(args.config);
    switch (args.command) {
      case "status": {
        const s = await client.status();
        io.out(args.json ? JSON.stringify(s, null, 2) : formatStatus(s));
        return 0;
      }
      case "alerts": {
        const a = await client.alerts(args.limit);
        io.out(args.json ? JSON.stringify(a, null, 2) : formatAlerts(a));
        return 0;
      }
      case "remove":
        await client.remove(args.service!);
        io.out(`Removed ${args.service}; units stop its instances and remove it.`);
        return 0;
      case "deploy": {
        const rec = await client.deploy(args.service!, args.instances);
        io.out(
          `Deployed ${rec.name} ${rec.version} (${rec.instances} instance${
            rec.instances === 1 ? "" : "s"
          }, index ${short(rec.indexDigest)})`,
        );
        if (!args.wait) return 0;
        const outcome = await followDeployment(client, rec, {
          timeoutMs: args.timeoutMs,
          progress: io.out,
        });
        switch (outcome) {
          case "done":
            io.out(`${rec.name} ${rec.version} is running on every connected unit.`);
            return 0;
          case "noUnit":
            io.out("No unit is connected: the desired status goes out when one connects.");
            return 0;
          case "failed":
            io.err(`devcloud: deployment of ${rec.name} ${rec.version} failed`);
            return 1;
          case "timeout":
            io.err(`devcloud: deployment of ${rec.name} ${rec.version} did not finish in time`);
            return 1;
        }
      }
    }
  } catch (err) {
    io.err(`devcloud: ${(err as Error).message}`);
    return 1;
  }
  return 1;
}

/**
 * What the dashboard shows, as plain JSON: per unit its nodes (with their latest CPU/RAM and a
 * bounded history of monitoring samples), items, instances grouped as the unit status groups
 * them, and the recent alerts of all units, newest first. Pure, except for the bounded
 * monitoring history it keeps from the `monitoringData` messages devcloud receives.
 * @module
 */
import type {
  Alert,
  ErrorInfo,
  Identity,
  MonitoringData,
  NodeInfo,
} from "@aos/shared/cloudprotocol";
import type { DevcloudStatus } from "./cloud.ts";
import { identKey, type InstanceRecord, type UnitRecord } from "./unit_state.ts";

/** One monitoring point of a node. */
export interface MonitoringPoint {
  /** Sample time (ms since the epoch). */
  t: number;
  /** CPU as the unit reports it (percent of one core, summed over cores). */
  cpu: number;
  /** RAM in use (bytes). */
  ram: number;
}

/** Options of {@link MonitoringHistory}. */
export interface MonitoringHistoryOptions {
  /** Points kept per node (default 120). */
  maxPoints?: number;
  /** Nodes kept over all units; the least recently updated go first (default 256). */
  maxSeries?: number;
}

/**
 * The last samples of every node, fed with each `monitoringData` body. devcloud itself keeps
 * only the latest body per unit; a chart needs a short series, bounded here.
 */
export class MonitoringHistory {
  readonly #maxPoints: number;
  readonly #maxSeries: number;
  /** Insertion order = least recently updated first. */
  readonly #series = new Map<string, MonitoringPoint[]>();

  /** An empty history. */
  constructor(options: MonitoringHistoryOptions = {}) {
    this.#maxPoints = Math.max(1, options.maxPoints ?? 120);
    this.#maxSeries = Math.max(1, options.maxSeries ?? 256);
  }

  /** Adds the node samples of a `monitoringData` body of unit `systemId`. */
  add(systemId: string, data: Pick<MonitoringData, "nodes">): void {
    for (const n of data.nodes) {
      const key = seriesKey(systemId, identKey(n.node));
      const points = this.#series.get(key) ?? [];
      this.#series.delete(key);
      this.#series.set(key, points);
      const fresh = n.items
        // Monitoring reloaded from devcloud's units file carries ISO strings, not dates.
        .map((s) => ({
          t: new Date(s.timestamp as Date | string).getTime(),
          cpu: s.cpu,
          ram: s.ram,
        }))
        .filter((p) => Number.isFinite(p.t))
        .sort((a, b) => a.t - b.t);
      for (const p of fresh) {
        // A resent message or an overlapping cache flush repeats samples: keep time increasing.
        const last = points.at(-1);
        if (last && p.t <= last.t) continue;
        points.push(p);
      }
      if (points.length > this.#maxPoints) points.splice(0, points.length - this.#maxPoints);
    }
    while (this.#series.size > this.#maxSeries) {
      this.#series.delete(this.#series.keys().next().value!);
    }
  }

  /** The points of one node, oldest first (a copy). */
  points(systemId: string, nodeId: string): MonitoringPoint[] {
    return [...(this.#series.get(seriesKey(systemId, nodeId)) ?? [])];
  }

  /** Number of nodes with a series. */
  get size(): number {
    return this.#series.size;
  }
}

function seriesKey(systemId: string, nodeId: string): string {
  return `${systemId}\n${nodeId}`;
}

/** A runtime of a node. */
export interface DashboardRuntime {
  /** Runtime id (codename). */
  id: string;
  /** Runtime type, e.g. `runc`. */
  type: string;
  /** Instance limit (0 = unlimited). */
  maxInstances: number;
}

/** A node of a unit. */
export interface DashboardNode {
  /** Node id (`id`, else codename). */
  id: string;
  /** Title (the id when the unit sends none). */
  title: string;
  /** `unprovisioned`, `provisioned`, `error` or `paused`. */
  state: string;
  /** Connected to the main node. */
  connected: boolean;
  /** Total RAM (bytes). */
  totalRam: number;
  /** Performance of the node (DMIPS). */
  maxDmips: number;
  /** Latest CPU sample, when monitoring arrived. */
  cpu?: number;
  /** Latest RAM sample (bytes), when monitoring arrived. */
  ram?: number;
  /** Runtimes. */
  runtimes: DashboardRuntime[];
  /** Node error. */
  error?: string;
  /** Monitoring points, oldest first (bounded). */
  history: MonitoringPoint[];
}

/** An update item of a unit. */
export interface DashboardItem {
  /** Item id (`id`, else codename). */
  id: string;
  /** Item type (`service`, …), when sent. */
  type?: string;
  /** Version. */
  version: string;
  /** Item state. */
  state: string;
  /** Error message. */
  error?: string;
}

/** One instance. */
export interface DashboardInstance {
  /** Instance index. */
  instance: number;
  /** Node id. */
  node: string;
  /** Runtime id. */
  runtime: string;
  /** `activating`, `active`, `inactive` or `failed`. */
  state: string;
  /** Error message. */
  error?: string;
}

/** Instances of one (item, subject, version), as the unit status groups them. */
export interface DashboardInstanceGroup {
  /** Item id. */
  item: string;
  /** Name of the deployed service with this item id, when devcloud deployed it. */
  service?: string;
  /** Subject id. */
  subject: string;
  /** Item version. */
  version: string;
  /** Instances by index. */
  instances: DashboardInstance[];
}

/** A unit. */
export interface DashboardUnit {
  /** System id. */
  systemId: string;
  /** A session is open. */
  connected: boolean;
  /** Last message (ISO). */
  lastSeen: string;
  /** Unit config states. */
  unitConfig: { version: string; state: string; error?: string }[];
  /** Nodes. */
  nodes: DashboardNode[];
  /** Update items. */
  items: DashboardItem[];
  /** Instances, grouped. */
  instanceGroups: DashboardInstanceGroup[];
}

/** An alert line. */
export interface DashboardAlert {
  /** Unit. */
  systemId: string;
  /** Alert kind (`tag`). */
  kind: string;
  /** Alert time (ISO). */
  time: string;
  /** Node, item or blob the alert is about. */
  source: string;
  /** Readable message. */
  message: string;
}

/** A deployed service with its progress per unit. */
export interface DashboardService {
  /** Service name. */
  name: string;
  /** Item id. */
  id: string;
  /** Version. */
  version: string;
  /** Desired instances. */
  instances: number;
  /** Progress per unit. */
  units: { systemId: string; itemState: string; active: number; done: boolean; failed: boolean }[];
}

/** `GET /api/state`. */
export interface DashboardState {
  /** When this state was built (ISO). */
  generatedAt: string;
  /** Deployed services. */
  services: DashboardService[];
  /** Known units, connected ones first. */
  units: DashboardUnit[];
  /** Recent alerts of all units, newest first (bounded). */
  alerts: DashboardAlert[];
}

/** Bounds of {@link buildDashboardState}. */
export interface DashboardStateLimits {
  /** Alerts listed (default 100). */
  maxAlerts?: number;
  /** Instances listed per unit (default 1000). */
  maxInstances?: number;
  /** Longest string passed on; longer ones are cut (default 2000 characters). */
  maxText?: number;
}

/** Builds the dashboard state from devcloud's status and alerts and the monitoring history. */
export function buildDashboardState(
  input: {
    status: DevcloudStatus;
    alerts: (Alert & { systemId: string })[];
    history: MonitoringHistory;
    now: Date;
  },
  limits: DashboardStateLimits = {},
): DashboardState {
  const maxText = limits.maxText ?? 2000;
  const text = (s: string | undefined): string =>
    s === undefined ? "" : s.length > maxText ? `${s.slice(0, maxText)}…` : s;
  const err = (e: ErrorInfo | undefined): { error?: string } =>
    e ? { error: text(e.message || `aosCode ${e.aosCode}, exitCode ${e.exitCode}`) } : {};
  const ident = (i: Identity | undefined): string => text(identKey(i));
  const serviceById = new Map(input.status.services.map((s) => [s.id, s.name]));

  const unit = (u: UnitRecord): DashboardUnit => {
    const latest = new Map(
      (u.monitoring?.nodes ?? []).map((n) => [identKey(n.node), n.items.at(-1)]),
    );
    const node = (n: NodeInfo): DashboardNode => {
      const id = identKey(n.identity);
      const sample = latest.get(id);
      return {
        id: text(id),
        title: text(n.identity.title || id),
        state: text(n.state),
        connected: n.isConnected,
        totalRam: n.totalRam,
        maxDmips: n.maxDmips,
        ...(sample ? { cpu: sample.cpu, ram: sample.ram } : {}),
        runtimes: n.runtimes.map((r) => ({
          id: ident(r.identity),
          type: text(r.runtimeType),
          maxInstances: r.maxInstances,
        })),
        ...err(n.errorInfo),
        history: input.history.points(u.systemId, id),
      };
    };
    const groups = new Map<string, DashboardInstanceGroup>();
    const instances = [...u.status.instances].sort(compareInstances)
      .slice(0, limits.maxInstances ?? 1000);
    for (const i of instances) {
      const key = `${identKey(i.item)}\n${identKey(i.subject)}\n${i.version}`;
      let g = groups.get(key);
      if (!g) {
        const service = serviceById.get(identKey(i.item));
        g = {
          item: ident(i.item),
          ...(service ? { service } : {}),
          subject: ident(i.subject),
          version: text(i.version),
          instances: [],
        };
        groups.set(key, g);
      }
      g.instances.push({
        instance: i.instance,
        node: ident(i.node),
        runtime: ident(i.runtime),
        state: text(i.state),
        ...err(i.errorInfo),
      });
    }
    return {
      systemId: text(u.systemId),
      connected: u.connected,
      lastSeen: u.lastSeen,
      unitConfig: u.status.unitConfig.map((c) => ({
        version: text(c.version),
        state: text(c.state),
        ...err(c.errorInfo),
      })),
      nodes: u.status.nodes.map(node),
      items: u.status.items.map((i) => ({
        id: ident(i.item),
        ...(i.item.type ? { type: text(i.item.type) } : {}),
        version: text(i.version),
        state: text(i.state),
        ...err(i.errorInfo),
      })),
      instanceGroups: [...groups.values()],
    };
  };

  const maxAlerts = limits.maxAlerts ?? 100;
  const alerts = input.alerts.slice(-maxAlerts).reverse().map((a): DashboardAlert => {
    const { source, message } = describeAlert(a);
    return {
      systemId: text(a.systemId),
      kind: a.tag,
      time: a.timestamp.toISOString(),
      source: text(source),
      message: text(message),
    };
  });

  return {
    generatedAt: input.now.toISOString(),
    services: input.status.services.map((s) => ({
      name: s.name,
      id: s.id,
      version: s.version,
      instances: s.instances,
      units: s.units.map((p) => ({
        systemId: text(p.systemId),
        itemState: p.itemState,
        active: p.instances.active ?? 0,
        done: p.done,
        failed: p.failed,
      })),
    })),
    units: [...input.status.units]
      .sort((a, b) => Number(b.connected) - Number(a.connected))
      .map(unit),
    alerts,
  };
}

function compareInstances(a: InstanceRecord, b: InstanceRecord): number {
  return identKey(a.item).localeCompare(identKey(b.item)) ||
    identKey(a.subject).localeCompare(identKey(b.subject)) ||
    a.version.localeCompare(b.version) || a.instance - b.instance;
}

/** The source and a one-line message of an alert of any kind. */
export function describeAlert(a: Alert): { source: string; message: string } {
  const inst = (i: { item: Identity; subject: Identity; instance: number }) =>
    `${identKey(i.item)}/${identKey(i.subject)}#${i.instance}`;
  switch (a.tag) {
    case "systemAlert":
      return { source: identKey(a.node), message: a.message };
    case "coreAlert":
      return { source: `${identKey(a.node)} ${a.coreComponent}`, message: a.message };
    case "systemQuotaAlert":
      return { source: identKey(a.node), message: `quota ${a.parameter} = ${a.value}` };
    case "instanceQuotaAlert":
      return { source: inst(a), message: `quota ${a.parameter} = ${a.value}` };
    case "resourceAllocateAlert":
      return { source: inst(a), message: `device ${a.deviceId}: ${a.message}` };
    case "updateItemInstanceAlert":
      return { source: inst(a), message: `version ${a.version}: ${a.message}` };
    case "downloadProgressAlert":
      return {
        source: a.digest,
        message: `download ${a.state} ${a.downloadedBytes}/${a.totalBytes} bytes` +
          (a.reason ? `: ${a.reason}` : "") +
          (a.errorInfo?.message ? `: ${a.errorInfo.message}` : ""),
      };
    default:
      return { source: "", message: "" };
  }
}

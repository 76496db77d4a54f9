/**
 * What devcloud knows about a unit: its latest status (full statuses replace, deltas merge),
 * its recent alerts and its latest monitoring. Pure.
 * @module
 */
import type {
  Alert,
  ErrorInfo,
  Identity,
  ItemStatus,
  MonitoringData,
  NodeInfo,
  UnitConfigStatus,
  UnitStatus,
} from "@aos/shared/cloudprotocol";

/** One instance as reported, flattened out of its (item, subject, version) group. */
export interface InstanceRecord {
  /** Update item. */
  item: Identity;
  /** Subject. */
  subject: Identity;
  /** Item version. */
  version: string;
  /** Node it runs on. */
  node: Identity;
  /** Runtime it runs in. */
  runtime: Identity;
  /** Instance index. */
  instance: number;
  /** `activating`, `active`, `inactive` or `failed`. */
  state: string;
  /** Hex SHA3-224 of its state file. */
  stateChecksum?: string | undefined;
  /** Why it failed. */
  errorInfo?: ErrorInfo | undefined;
}

/** A unit's status after merging every `unitStatus` received. */
export interface MergedUnitStatus {
  /** Unit config states. */
  unitConfig: UnitConfigStatus[];
  /** Nodes. */
  nodes: NodeInfo[];
  /** Update items (never `removed` ones). */
  items: ItemStatus[];
  /** Instances, flattened. */
  instances: InstanceRecord[];
  /** Unit-local subjects. */
  subjects: Identity[];
}

/** What devcloud keeps per unit. */
export interface UnitRecord {
  /** The unit's system id. */
  systemId: string;
  /** A WebSocket session is open. */
  connected: boolean;
  /** Last message time (ISO). */
  lastSeen: string;
  /** Merged status; empty until the first `unitStatus`. */
  status: MergedUnitStatus;
  /** Most recent alerts, oldest first (bounded). */
  alerts: Alert[];
  /** The latest `monitoringData` body. */
  monitoring?: Omit<MonitoringData, "messageType"> | undefined;
}

/** An empty status. */
export function emptyUnitStatus(): MergedUnitStatus {
  return { unitConfig: [], nodes: [], items: [], instances: [], subjects: [] };
}

/** The key of an identity: `id`, else `codename`. */
export function identKey(i: Identity | undefined): string {
  return i?.id ?? i?.codename ?? "";
}

function flatten(groups: NonNullable<UnitStatus["instances"]>): InstanceRecord[] {
  return groups.flatMap((g) =>
    g.instances.map((i) => ({
      item: g.item,
      subject: g.subject,
      version: g.version,
      node: i.node,
      runtime: i.runtime,
      instance: i.instance,
      state: i.state,
      ...(i.stateChecksum ? { stateChecksum: i.stateChecksum } : {}),
      ...(i.errorInfo ? { errorInfo: i.errorInfo } : {}),
    }))
  );
}

function instanceKey(i: InstanceRecord): string {
  return `${identKey(i.item)}\n${identKey(i.subject)}\n${i.instance}`;
}

function mergeBy<T>(current: T[], changed: T[], key: (x: T) => string): T[] {
  const out = new Map(current.map((x) => [key(x), x]));
  for (const x of changed) out.set(key(x), x);
  return [...out.values()];
}

/**
 * Applies a received `unitStatus`. A full status replaces everything (an absent section is
 * empty); a delta replaces the sections it carries (`unitConfig`, `subjects`) or merges their
 * elements by key (nodes by node id, items by id and version, instances by item, subject and
 * index). A delta item in state `removed` drops the entry, as a full status would not list it.
 */
export function mergeUnitStatus(
  current: MergedUnitStatus,
  msg: Omit<UnitStatus, "messageType">,
): MergedUnitStatus {
  if (!msg.isDeltaInfo) {
    return {
      unitConfig: msg.unitConfig ?? [],
      nodes: msg.nodes ?? [],
      items: (msg.items ?? []).filter((i) => i.state !== "removed"),
      instances: flatten(msg.instances ?? []),
      subjects: msg.subjects ?? [],
    };
  }
  const itemKey = (i: ItemStatus) => `${identKey(i.item)}\n${i.version}`;
  const out = { ...current };
  if (msg.unitConfig) out.unitConfig = msg.unitConfig;
  if (msg.subjects) out.subjects = msg.subjects;
  if (msg.nodes) out.nodes = mergeBy(current.nodes, msg.nodes, (n) => identKey(n.identity));
  if (msg.items) {
    const removed = new Set(msg.items.filter((i) => i.state === "removed").map(itemKey));
    out.items = mergeBy(current.items, msg.items, itemKey).filter((i) => !removed.has(itemKey(i)));
  }
  if (msg.instances) {
    out.instances = mergeBy(current.instances, flatten(msg.instances), instanceKey);
  }
  return out;
}

/** How a deployed service is doing on a unit. */
export interface ServiceProgress {
  /** State of the item at the desired version (`absent` when not reported). */
  itemState: string;
  /** Error of the item, if any. */
  itemError?: string | undefined;
  /** Instances of the desired version by state. */
  instances: Record<string, number>;
  /** Errors of failed instances. */
  instanceErrors: string[];
  /** True when the item is installed and `wanted` instances are active. */
  done: boolean;
  /** True when the item or an instance failed. */
  failed: boolean;
}

/** Summarises a service (item id, version) on a unit against `wanted` instances. */
export function serviceProgress(
  status: MergedUnitStatus,
  itemId: string,
  version: string,
  wanted: number,
): ServiceProgress {
  const item = status.items.find((i) => identKey(i.item) === itemId && i.version === version);
  const instances: Record<string, number> = {};
  const instanceErrors: string[] = [];
  for (const i of status.instances) {
    if (identKey(i.item) !== itemId || i.version !== version) continue;
    instances[i.state] = (instances[i.state] ?? 0) + 1;
    if (i.state === "failed" && i.errorInfo?.message) instanceErrors.push(i.errorInfo.message);
  }
  const itemState = item?.state ?? "absent";
  const failed = itemState === "failed" || (instances.failed ?? 0) > 0;
  const done = itemState === "installed" && (instances.active ?? 0) >= wanted;
  return {
    itemState,
    ...(item?.errorInfo?.message ? { itemError: item.errorInfo.message } : {}),
    instances,
    instanceErrors,
    done,
    failed,
  };
}

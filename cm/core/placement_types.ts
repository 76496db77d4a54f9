/**
 * Input and output types of CM's instance placement ({@link placeInstances} in
 * `placement.ts`), plus converters from the OCI/Aos documents of `@aos/shared/oci`.
 *
 * The types are plain data with numbers (DMIPS, bytes, percents) so the planner stays pure: the
 * node info provider (IAM `NodeInfo` + SM `SMInfo` + unit config + connectivity), the image
 * manager (manifests) and the launcher's storage (current placement) fill them in.
 * @module
 */
import type { AosError } from "@aos/shared/errors";
import type { ImageConfig, ItemConfig } from "@aos/shared/oci";

/** Runtime types an item may use when its item config names none (cm.md §7.3). */
export const DEFAULT_RUNTIME_TYPES: readonly string[] = ["crun", "runc"];
/** Percent of a quota requested when the item config has no `requestedResources` (cm.md §17). */
export const DEFAULT_RESOURCE_RATIO = 50;
/** Instances per runtime when SM reports `max_instances` 0 (cm.md §7.3). */
export const DEFAULT_MAX_INSTANCES = 256;
/** Most instances one request may ask for (the upstream unit-wide instance limit). */
export const MAX_REQUEST_INSTANCES = 256;

/** Kind of an update item (`common.v2.ItemType`). */
export type ItemType = "service" | "component";

/** Identity of one instance (`common.v2.InstanceIdent` without `preinstalled`). */
export interface InstanceIdent {
  /** Update item id. */
  itemId: string;
  /** Subject id. */
  subjectId: string;
  /** Index within the item/subject pair. */
  instance: number;
  /** Service or component. */
  type: ItemType;
}

/** Architecture of a runtime (`common.v2.ArchInfo`). */
export interface ArchInfo {
  /** OCI architecture, e.g. `amd64`, `arm64`. */
  architecture: string;
  /** OCI variant, e.g. `v8`. */
  variant?: string;
}

/** Operating system of a runtime (`common.v2.OSInfo`). */
export interface OsInfo {
  /** OCI os, e.g. `linux`. */
  os: string;
  /** OS version. */
  version?: string;
  /** OS features. */
  features?: readonly string[];
}

/** A runtime of a node (`servicemanager.v5.RuntimeInfo`). */
export interface RuntimeInfo {
  /** Runtime id, unique on its node. */
  runtimeId: string;
  /** Runtime type, e.g. `runc`, `crun`, `rootfs`. */
  type: string;
  /** CPU of the runtime in DMIPS (informational; budgets use the node's or `allowedDmips`). */
  maxDmips?: number;
  /** A separate CPU budget for this runtime; absent or 0 = shares the node budget. */
  allowedDmips?: number;
  /** RAM of the runtime in bytes (informational). */
  totalRam?: number;
  /** A separate RAM budget for this runtime; absent or 0 = shares the node budget. */
  allowedRam?: number;
  /** Most instances the runtime runs; absent or 0 = {@link DEFAULT_MAX_INSTANCES}. */
  maxInstances?: number;
  /** OS of the runtime. */
  osInfo?: OsInfo;
  /** Architecture of the runtime. */
  archInfo?: ArchInfo;
}

/** A shared resource of a node (`servicemanager.v5.ResourceInfo`). */
export interface SharedResourceInfo {
  /** Resource name (matches item config `resources[].name`). */
  name: string;
  /** How many instances may use it at once; 0 = unlimited. */
  sharedCount: number;
}

/** A partition of a node (`iamanager.v6.PartitionInfo`), for the storage/state check. */
export interface PartitionInfo {
  /** Partition name. */
  name: string;
  /** Types such as `storage`, `state`. */
  types: readonly string[];
  /** Total size in bytes. */
  totalSize: number;
  /** Mount path; partitions with the same path share one capacity. */
  path?: string;
}

/** A CPU or RAM alert rule of a node config (thresholds in percent). */
export interface AlertRulePercents {
  /** Usage the node is brought back under when it needs balancing. */
  minThreshold: number;
  /** Usage above which the node needs balancing. */
  maxThreshold: number;
}

/** The parts of a unit config node entry (cm.md §9) that placement reads. */
export interface NodeConfig {
  /** Node priority; higher wins (default 0). */
  priority?: number;
  /** Node labels; an instance's labels must all be here. */
  labels?: readonly string[];
  /** Percent of item quotas requested when the item config has no `requestedResources`. */
  resourceRatios?: { cpu?: number; ram?: number; storage?: number; state?: number };
  /** CPU/RAM alert rules, used only when rebalancing. */
  alertRules?: { cpu?: AlertRulePercents; ram?: AlertRulePercents };
}

/** CPU (DMIPS) and RAM (bytes) usage, as in SM average monitoring. */
export interface ResourceUsage {
  /** CPU in DMIPS. */
  cpu: number;
  /** RAM in bytes. */
  ram: number;
}

/** Average monitoring of a node (SM `AverageMonitoring`). */
export interface NodeMonitoring {
  /** Whole-node usage. */
  node: ResourceUsage;
  /** Per-instance usage. */
  instances: readonly { ident: Omit<InstanceIdent, "type">; usage: ResourceUsage }[];
}

/** One node as the placement sees it: IAM `NodeInfo` + SM `SMInfo` + node config + connectivity. */
export interface PlacementNode {
  /** Node id. */
  nodeId: string;
  /** Node type (informational). */
  nodeType?: string;
  /** IAM node state: `provisioned`, `unprovisioned`, `paused`, `error`… */
  state: string;
  /** Whether the node info provider sees its SM connected (cm.md §10). */
  connected: boolean;
  /** CPU of the node in DMIPS. */
  maxDmips: number;
  /** RAM of the node in bytes. */
  totalRam: number;
  /** IAM node attributes (informational: connectivity already folds `AosComponents` in). */
  attrs?: Readonly<Record<string, string>>;
  /** Runtimes from SM info. */
  runtimes: readonly RuntimeInfo[];
  /** Shared resources from SM info. */
  resources: readonly SharedResourceInfo[];
  /** Partitions from IAM node info; without them storage/state is not checked. */
  partitions?: readonly PartitionInfo[];
  /** Node config from the unit config (empty when none applies). */
  config?: NodeConfig;
  /** Latest average monitoring; absent = no system usage subtracted. */
  monitoring?: NodeMonitoring;
}

/** Platform an image needs (from its image config). Empty fields are not checked. */
export interface PlatformRequirements {
  /** Must equal the runtime's architecture. */
  architecture?: string;
  /** Must equal the runtime's variant. */
  variant?: string;
  /** Must equal the runtime's OS. */
  os?: string;
  /** Must equal the runtime's OS version. */
  osVersion?: string;
  /** Must all be among the runtime's OS features. */
  osFeatures?: readonly string[];
}

/** The parts of an Aos item config that placement reads. */
export interface ItemRunConfig {
  /** Allowed runtime types; absent or empty = {@link DEFAULT_RUNTIME_TYPES}. */
  runtimes?: readonly string[];
  /** Quotas: limits the requests are derived from and clamped to. */
  quotas?: {
    cpuDmipsLimit?: number;
    ramLimit?: number;
    storageLimit?: number;
    stateLimit?: number;
  };
  /** Explicit requests (clamped to the quotas). */
  requestedResources?: { cpu?: number; ram?: number; storage?: number; state?: number };
  /** Shared resources (by name) the instance needs one share of. */
  resources?: readonly string[];
  /** `disabled` = never moved for load reasons once placed. */
  balancingPolicy?: "enabled" | "disabled";
  /** Request no CPU/RAM/storage at all. */
  skipResourceLimits?: boolean;
}

/** One manifest of an item's image index: its platform and item config. */
export interface ManifestCandidate {
  /** Manifest digest (sent to SM as `manifest_digest`). */
  digest: string;
  /** Platform from the manifest's image config. */
  platform: PlatformRequirements;
  /** Item config of the manifest. */
  itemConfig: ItemRunConfig;
}

/** A desired instance group (cm.md §4, §5.3). */
export interface InstanceRequest {
  /** Update item id. */
  itemId: string;
  /** Subject id. */
  subjectId: string;
  /** Service (default) or component. */
  type?: ItemType;
  /** Request priority; higher is placed first. */
  priority: number;
  /** Instances wanted. A component with 0 gets one per matching node runtime. */
  numInstances: number;
  /** Node labels required. */
  labels?: readonly string[];
  /** Manifests of the item's image index, tried in order. */
  manifests: readonly ManifestCandidate[];
}

/** Where an instance runs now (from the launcher's storage / SM statuses). */
export interface CurrentPlacement {
  /** The instance. */
  ident: InstanceIdent;
  /** Its node. */
  nodeId: string;
  /** Its runtime on that node. */
  runtimeId: string;
  /** The manifest it runs, tried first when it stays. */
  manifestDigest?: string;
}

/**
 * How much may move:
 * - `stable` (default): running instances stay unless their node dropped or they no longer fit.
 * - `rebalance`: as `stable`, but overloaded nodes (usage above `alertRules.*.maxThreshold`)
 *   offer only `minThreshold` and instances there count at least their measured usage, so the
 *   lowest-priority instances move off them until they fit.
 * - `repack`: every instance is placed afresh (upstream's full rebalance); only pinned instances
 *   (`balancingPolicy: disabled`, components) stay. Overload accounting as in `rebalance`.
 */
export type PlacementMode = "stable" | "rebalance" | "repack";

/** Input of {@link placeInstances}. */
export interface PlacementInput {
  /** All known nodes. */
  nodes: readonly PlacementNode[];
  /** Desired instance groups. */
  requests: readonly InstanceRequest[];
  /** Where instances run now. */
  current?: readonly CurrentPlacement[];
  /** How much may move; default `stable`. */
  mode?: PlacementMode;
}

/** How a placement relates to the current one. */
export type PlacementChange = "new" | "kept" | "moved";

/** A placed instance. */
export interface Placement {
  /** The instance. */
  ident: InstanceIdent;
  /** Target node. */
  nodeId: string;
  /** Target runtime. */
  runtimeId: string;
  /** Manifest chosen. */
  manifestDigest: string;
  /** Priority of its request (sent to SM). */
  priority: number;
  /** `new` (was nowhere), `kept` (same node and runtime) or `moved`. */
  change: PlacementChange;
  /** Node it ran on before, when `moved`. */
  previousNodeId?: string;
  /** CPU (DMIPS) reserved for it on the target node. */
  requestedCpu: number;
  /** RAM (bytes) reserved for it on the target node. */
  requestedRam: number;
}

/** An instance that could not be placed. */
export interface PlacementFailure {
  /** The instance. */
  ident: InstanceIdent;
  /** Why (code `notFound` when no node fits, `invalidArgument` for a bad request). */
  error: AosError;
}

/** Output of {@link placeInstances}. */
export interface PlacementResult {
  /** Placed instances, in placement order (request priority desc, item id, subject, index). */
  placements: Placement[];
  /** Instances that could not be placed, same order. */
  failures: PlacementFailure[];
}

/** Reads the placement-relevant fields of an Aos item config. */
export function itemRunConfigFrom(config: ItemConfig): ItemRunConfig {
  const out: ItemRunConfig = {};
  if (config.runtimes !== undefined) out.runtimes = config.runtimes.map((r) => r.codename);
  const q = config.quotas;
  if (q !== undefined) {
    const quotas: NonNullable<ItemRunConfig["quotas"]> = {};
    if (q.cpuDMIPSLimit !== undefined) quotas.cpuDmipsLimit = q.cpuDMIPSLimit;
    if (q.ramLimit !== undefined) quotas.ramLimit = q.ramLimit;
    if (q.storageLimit !== undefined) quotas.storageLimit = q.storageLimit;
    if (q.stateLimit !== undefined) quotas.stateLimit = q.stateLimit;
    out.quotas = quotas;
  }
  const r = config.requestedResources;
  if (r !== undefined) {
    const req: NonNullable<ItemRunConfig["requestedResources"]> = {};
    if (r.cpu !== undefined) req.cpu = r.cpu;
    if (r.ram !== undefined) req.ram = r.ram;
    if (r.storage !== undefined) req.storage = r.storage;
    if (r.state !== undefined) req.state = r.state;
    out.requestedResources = req;
  }
  if (config.resources !== undefined) out.resources = config.resources.map((r) => r.name);
  if (config.balancingPolicy !== undefined) out.balancingPolicy = config.balancingPolicy;
  if (config.skipResourceLimits !== undefined) out.skipResourceLimits = config.skipResourceLimits;
  return out;
}

/** Reads the platform fields of an OCI image config. */
export function platformFrom(config: ImageConfig): PlatformRequirements {
  const out: PlatformRequirements = {};
  if (config.architecture) out.architecture = config.architecture;
  if (config.variant) out.variant = config.variant;
  if (config.os) out.os = config.os;
  if (config["os.version"]) out.osVersion = config["os.version"];
  if (config["os.features"]?.length) out.osFeatures = config["os.features"];
  return out;
}

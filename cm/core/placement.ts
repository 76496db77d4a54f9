/**
 * CM's instance placement (the launcher's Balancer, cm.md §7.3–§7.4) as one pure function,
 * {@link placeInstances}: nodes + desired instance groups + where instances run now → where
 * each instance runs next, or why it cannot run.
 *
 * Stages, in order, for each instance and each manifest of its image index until one fits:
 * candidate nodes (connected and `provisioned`, by node priority desc then id) → pinning →
 * labels (all) → shared resources → runtime type → platform → CPU → RAM → storage/state →
 * instance count → top node priority → best fit (most available node CPU, then RAM, then the
 * smallest node id; on that node the runtime with the smallest type, then id).
 *
 * Unlike upstream, which re-places every instance on every pass, the plan is stable. An
 * instance that runs now stays on its node and runtime unless:
 * 1. its node is no longer a candidate (gone, disconnected, `paused`, `error`, unprovisioned)
 *    or its runtime is gone;
 * 2. it no longer fits there: labels, runtime type, platform, shared resources, CPU, RAM,
 *    storage/state or the runtime's instance count, checked against what higher-or-equal
 *    priority instances hold (so a higher-priority instance that fits nowhere else may displace
 *    it; it then moves like a new instance);
 * 3. mode `rebalance` finds its node overloaded and it is among the lowest-priority instances
 *    there (see {@link PlacementMode});
 * 4. mode `repack` re-places everything.
 * Pinned instances (`balancingPolicy: disabled`, components) skip the label and load checks
 * while their node stays a candidate, and are not moved by `repack`.
 *
 * A node that returns gets no instance back automatically: the instances that left it keep
 * running where they went (moving them back would restart them a second time for no rule's
 * sake). It receives new instances, instances displaced from elsewhere and instances that could
 * not be placed while it was away, through the normal stages (it may well win best fit, being
 * empty); `repack` spreads everything again.
 *
 * New instances avoid the capacity that lower-priority running instances hold: they are first
 * placed as if those were already kept, and only when that fails against higher-or-equal
 * priority reservations alone.
 * @module
 */
import { AosError } from "@aos/shared/errors";
import {
  type CurrentPlacement,
  DEFAULT_MAX_INSTANCES,
  DEFAULT_RESOURCE_RATIO,
  DEFAULT_RUNTIME_TYPES,
  type InstanceIdent,
  type InstanceRequest,
  type ItemRunConfig,
  type ManifestCandidate,
  MAX_REQUEST_INSTANCES,
  type PlacementChange,
  type PlacementFailure,
  type PlacementInput,
  type PlacementNode,
  type PlacementResult,
  type PlatformRequirements,
  type ResourceUsage,
  type RuntimeInfo,
} from "./placement_types.ts";

export * from "./placement_types.ts";

/** Map key of an instance. */
function identKey(i: { itemId: string; subjectId: string; instance: number }): string {
  return JSON.stringify([i.itemId, i.subjectId, i.instance]);
}

/** Readable name of an instance for messages. */
export function identLabel(i: InstanceIdent): string {
  return `${i.itemId}/${i.subjectId}/${i.instance}`;
}

function list(values: readonly string[]): string {
  return `[${values.join(", ")}]`;
}

function shortDigest(d: string): string {
  const colon = d.indexOf(":");
  return colon >= 0 && d.length > colon + 13 ? `${d.slice(0, colon + 13)}…` : d;
}

/** Amounts an instance reserves on a node. */
interface Amounts {
  cpu: number;
  ram: number;
  storage: number;
  state: number;
}

const ZERO: Amounts = { cpu: 0, ram: 0, storage: 0, state: 0 };

/** A candidate node with its budgets' capacity inputs. */
interface NodeState {
  node: PlacementNode;
  id: string;
  priority: number;
  labels: readonly string[];
  needsBalancing: boolean;
  storageKey?: string;
  stateKey?: string;
}

/** One instance to place. */
interface Work {
  ident: InstanceIdent;
  key: string;
  request: InstanceRequest;
  current?: CurrentPlacement;
  /** Generated component instance: only this node/runtime. */
  pin?: { nodeId: string; runtimeId: string };
}

type Reservation = ReadonlyArray<readonly [string, number]>;

const SEP = "\u0000";

/** Capacities plus two ledgers: committed (decided) and pending (running, not yet decided). */
class Budget {
  readonly caps = new Map<string, number>();
  readonly #committed = new Map<string, number>();
  readonly #pending = new Map<string, number>();

  available(key: string, soft: boolean): number {
    const cap = this.caps.get(key) ?? 0;
    const used = (this.#committed.get(key) ?? 0) + (soft ? this.#pending.get(key) ?? 0 : 0);
    return Math.max(0, cap - used);
  }

  used(key: string): number {
    return this.#committed.get(key) ?? 0;
  }

  commit(r: Reservation): void {
    Budget.#add(this.#committed, r, 1);
  }

  addPending(r: Reservation): void {
    Budget.#add(this.#pending, r, 1);
  }

  dropPending(r: Reservation): void {
    Budget.#add(this.#pending, r, -1);
  }

  static #add(ledger: Map<string, number>, r: Reservation, sign: number): void {
    for (const [key, amount] of r) ledger.set(key, (ledger.get(key) ?? 0) + sign * amount);
  }
}

function cpuKey(ns: NodeState, rt: RuntimeInfo): string {
  return rt.allowedDmips ? ["cpu", ns.id, rt.runtimeId].join(SEP) : ["cpu", ns.id].join(SEP);
}

function ramKey(ns: NodeState, rt: RuntimeInfo): string {
  return rt.allowedRam ? ["ram", ns.id, rt.runtimeId].join(SEP) : ["ram", ns.id].join(SEP);
}

function countKey(ns: NodeState, rt: RuntimeInfo): string {
  return ["count", ns.id, rt.runtimeId].join(SEP);
}

function resourceKey(ns: NodeState, name: string): string {
  return ["res", ns.id, name].join(SEP);
}

function percentOf(value: number, percent: number): number {
  return Math.floor(value * percent / 100);
}

function buildNodeState(node: PlacementNode, overload: boolean, budget: Budget): NodeState {
  const cfg = node.config ?? {};
  const mon = node.monitoring;
  const rules = cfg.alertRules;
  // Upstream compares RAM usage with maxDMIPS and truncates the percent to an integer factor
  // (0 or 1); we compare each quantity with its own total and keep the fraction.
  const needsBalancing = overload && mon !== undefined && rules !== undefined &&
    ((rules.cpu !== undefined && mon.node.cpu > node.maxDmips * rules.cpu.maxThreshold / 100) ||
      (rules.ram !== undefined && mon.node.ram > node.totalRam * rules.ram.maxThreshold / 100));
  const totalCpu = needsBalancing && rules?.cpu
    ? percentOf(node.maxDmips, rules.cpu.minThreshold)
    : node.maxDmips;
  const totalRam = needsBalancing && rules?.ram
    ? percentOf(node.totalRam, rules.ram.minThreshold)
    : node.totalRam;
  // System usage = what the node uses beyond its instances.
  let systemCpu = 0;
  let systemRam = 0;
  if (mon !== undefined) {
    const inst = mon.instances.reduce(
      (a, i) => ({ cpu: a.cpu + i.usage.cpu, ram: a.ram + i.usage.ram }),
      { cpu: 0, ram: 0 },
    );
    systemCpu = Math.max(0, mon.node.cpu - inst.cpu);
    systemRam = Math.max(0, mon.node.ram - inst.ram);
  }
  const ns: NodeState = {
    node,
    id: node.nodeId,
    priority: cfg.priority ?? 0,
    labels: cfg.labels ?? [],
    needsBalancing,
  };
  budget.caps.set(["cpu", ns.id].join(SEP), Math.max(0, totalCpu - systemCpu));
  budget.caps.set(["ram", ns.id].join(SEP), Math.max(0, totalRam - systemRam));
  for (const rt of node.runtimes) {
    if (rt.allowedDmips) budget.caps.set(cpuKey(ns, rt), rt.allowedDmips);
    if (rt.allowedRam) budget.caps.set(ramKey(ns, rt), rt.allowedRam);
    budget.caps.set(countKey(ns, rt), rt.maxInstances || DEFAULT_MAX_INSTANCES);
  }
  for (const res of node.resources) {
    budget.caps.set(
      resourceKey(ns, res.name),
      res.sharedCount === 0 ? Number.POSITIVE_INFINITY : res.sharedCount,
    );
  }
  // Storage and state share one capacity when they live on the same mount (cm.md §7.3).
  const storage = node.partitions?.find((p) => p.types.includes("storage"));
  const state = node.partitions?.find((p) => p.types.includes("state"));
  if (storage !== undefined) {
    ns.storageKey = ["disk", ns.id, storage.path ?? storage.name].join(SEP);
    budget.caps.set(ns.storageKey, storage.totalSize);
  }
  if (state !== undefined) {
    ns.stateKey = ["disk", ns.id, state.path ?? state.name].join(SEP);
    budget.caps.set(ns.stateKey, state.totalSize);
  }
  return ns;
}

function resolveRequest(
  requested: number | undefined,
  quota: number | undefined,
  ratio: number | undefined,
): number {
  if (requested !== undefined) return quota !== undefined ? Math.min(requested, quota) : requested;
  if (quota === undefined) return 0;
  return percentOf(quota, Math.max(0, Math.min(ratio ?? DEFAULT_RESOURCE_RATIO, 100)));
}

/** What an instance of `cfg` reserves on `ns` (cm.md §7.3 "Requested CPU/RAM"). */
function requestedOn(
  work: Work,
  cfg: ItemRunConfig,
  ns: NodeState,
  measured: ResourceUsage | undefined,
): Amounts {
  if (work.ident.type === "component" || cfg.skipResourceLimits) return ZERO;
  const ratios = ns.node.config?.resourceRatios;
  const q = cfg.quotas;
  const r = cfg.requestedResources;
  const out: Amounts = {
    cpu: resolveRequest(r?.cpu, q?.cpuDmipsLimit, ratios?.cpu),
    ram: resolveRequest(r?.ram, q?.ramLimit, ratios?.ram),
    storage: resolveRequest(r?.storage, q?.storageLimit, ratios?.storage),
    state: resolveRequest(r?.state, q?.stateLimit, ratios?.state),
  };
  if (ns.needsBalancing && measured !== undefined) {
    out.cpu = Math.max(out.cpu, measured.cpu);
    out.ram = Math.max(out.ram, measured.ram);
  }
  return out;
}

function reservation(
  work: Work,
  cfg: ItemRunConfig,
  ns: NodeState,
  rt: RuntimeInfo,
  amounts: Amounts,
): Reservation {
  const out: [string, number][] = [
    [cpuKey(ns, rt), amounts.cpu],
    [ramKey(ns, rt), amounts.ram],
    [countKey(ns, rt), 1],
  ];
  if (work.ident.type !== "component") {
    for (const name of new Set(cfg.resources ?? [])) out.push([resourceKey(ns, name), 1]);
  }
  if (amounts.storage > 0 && ns.storageKey !== undefined) {
    out.push([ns.storageKey, amounts.storage]);
  }
  if (amounts.state > 0 && ns.stateKey !== undefined) out.push([ns.stateKey, amounts.state]);
  return out;
}

function runtimeTypes(cfg: ItemRunConfig): readonly string[] {
  return cfg.runtimes?.length ? cfg.runtimes : DEFAULT_RUNTIME_TYPES;
}

function describePlatform(p: PlatformRequirements): string {
  const parts = [
    p.architecture ? `arch ${p.architecture}${p.variant ? `/${p.variant}` : ""}` : undefined,
    !p.architecture && p.variant ? `variant ${p.variant}` : undefined,
    p.os ? `os ${p.os}` : undefined,
    p.osVersion ? `os version ${p.osVersion}` : undefined,
    p.osFeatures?.length ? `os features ${list(p.osFeatures)}` : undefined,
  ].filter((x) => x !== undefined);
  return parts.length ? parts.join(", ") : "any";
}

function describeRuntimePlatform(rt: RuntimeInfo): string {
  const arch = rt.archInfo
    ? `${rt.archInfo.architecture || "?"}${rt.archInfo.variant ? `/${rt.archInfo.variant}` : ""}`
    : "?";
  const os = rt.osInfo
    ? `${rt.osInfo.os || "?"}${rt.osInfo.version ? ` ${rt.osInfo.version}` : ""}${
      rt.osInfo.features?.length ? ` ${list(rt.osInfo.features)}` : ""
    }`
    : "?";
  return `${arch} ${os}`;
}

/** Kernel / `uname -m` names of architectures and their OCI names. */
const OCI_ARCH: Readonly<Record<string, string>> = {
  x86_64: "amd64",
  "x86-64": "amd64",
  x64: "amd64",
  aarch64: "arm64",
  armv7l: "arm",
  armv6l: "arm",
  i386: "386",
  i686: "386",
  ppc64le: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
};

/**
 * The OCI name of an architecture: IAM and SM report the kernel's (`x86_64`, `aarch64`), while
 * image configs use OCI's (`amd64`, `arm64`), so both sides are compared in OCI terms.
 */
export function ociArchitecture(arch: string): string {
  const a = arch.toLowerCase();
  return OCI_ARCH[a] ?? a;
}

function platformMatches(p: PlatformRequirements, rt: RuntimeInfo): boolean {
  if (
    p.architecture &&
    ociArchitecture(rt.archInfo?.architecture ?? "") !== ociArchitecture(p.architecture)
  ) return false;
  if (p.variant && rt.archInfo?.variant !== p.variant) return false;
  if (p.os && rt.osInfo?.os !== p.os) return false;
  if (p.osVersion && rt.osInfo?.version !== p.osVersion) return false;
  const features = rt.osInfo?.features ?? [];
  return (p.osFeatures ?? []).every((f) => features.includes(f));
}

/** A node still in the running with the runtimes that passed so far. */
interface Cand {
  ns: NodeState;
  rts: RuntimeInfo[];
}

/** Keeps the nodes `reject` returns nothing for; when none is left, says why for each. */
function byNode(
  cands: Cand[],
  what: string,
  reject: (c: Cand) => string | undefined,
): Cand[] | string {
  const reasons: string[] = [];
  const kept = cands.filter((c) => {
    const why = reject(c);
    if (why !== undefined) reasons.push(`${c.ns.id} ${why}`);
    return why === undefined;
  });
  return kept.length ? kept : `${what} (${reasons.join("; ")})`;
}

/** Keeps the runtimes `reject` returns nothing for; nodes without one drop out. */
function byRuntime(
  cands: Cand[],
  what: string,
  reject: (c: Cand, rt: RuntimeInfo) => string | undefined,
): Cand[] | string {
  const reasons: string[] = [];
  const kept: Cand[] = [];
  for (const c of cands) {
    const rts = c.rts.filter((rt) => {
      const why = reject(c, rt);
      if (why !== undefined) reasons.push(`${c.ns.id}/${rt.runtimeId} ${why}`);
      return why === undefined;
    });
    if (rts.length) kept.push({ ns: c.ns, rts });
  }
  return kept.length ? kept : `${what} (${reasons.join("; ")})`;
}

interface Attempt {
  /** Also respect pending (lower-priority running) reservations. */
  soft: boolean;
  /** Only this node and runtime. */
  restrict?: { nodeId: string; runtimeId: string };
  /** Skip labels and load checks (pinned instance staying put). */
  pinned: boolean;
}

type Outcome =
  | { ok: true; ns: NodeState; rt: RuntimeInfo; amounts: Amounts; reservation: Reservation }
  | { ok: false; reason: string };

class Planner {
  readonly #budget: Budget;
  readonly #candidates: NodeState[];
  readonly #measured: Map<string, ResourceUsage>;

  constructor(budget: Budget, candidates: NodeState[], measured: Map<string, ResourceUsage>) {
    this.#budget = budget;
    this.#candidates = candidates;
    this.#measured = measured;
  }

  get budget(): Budget {
    return this.#budget;
  }

  candidate(nodeId: string): NodeState | undefined {
    return this.#candidates.find((n) => n.id === nodeId);
  }

  amounts(work: Work, cfg: ItemRunConfig, ns: NodeState): Amounts {
    return requestedOn(work, cfg, ns, this.#measured.get(work.key));
  }

  /** Runs the stages for one manifest. */
  evaluate(work: Work, manifest: ManifestCandidate, attempt: Attempt, noNodes: string): Outcome {
    const fail = (reason: string): Outcome => ({ ok: false, reason });
    if (this.#candidates.length === 0) return fail(noNodes);
    const cfg = manifest.itemConfig;
    const budget = this.#budget;
    const soft = attempt.soft;
    const checkLoad = !attempt.pinned && work.ident.type !== "component";
    const amountsOf = new Map<NodeState, Amounts>();
    const amounts = (ns: NodeState) => {
      let a = amountsOf.get(ns);
      if (a === undefined) amountsOf.set(ns, a = this.amounts(work, cfg, ns));
      return a;
    };
    let cands: Cand[] | string = this.#candidates.map((ns) => ({ ns, rts: [...ns.node.runtimes] }));

    const restrict = attempt.restrict;
    if (restrict !== undefined) {
      const target = `${restrict.nodeId}/${restrict.runtimeId}`;
      const pinned = cands.flatMap((c) =>
        c.ns.id === restrict.nodeId
          ? [{ ns: c.ns, rts: c.rts.filter((rt) => rt.runtimeId === restrict.runtimeId) }]
          : []
      ).filter((c) => c.rts.length > 0);
      if (pinned.length === 0) {
        return fail(`pinning to ${target} (it is not a connected, provisioned node runtime)`);
      }
      cands = pinned;
    }

    const labels = work.request.labels ?? [];
    if (!attempt.pinned && labels.length > 0) {
      cands = byNode(
        cands,
        `labels ${list(labels)}`,
        (c) =>
          labels.every((l) => c.ns.labels.includes(l)) ? undefined : `has ${list(c.ns.labels)}`,
      );
      if (typeof cands === "string") return fail(cands);
    }

    const resources = [...new Set(cfg.resources ?? [])];
    if (checkLoad && resources.length > 0) {
      cands = byNode(cands, `shared resources ${list(resources)}`, (c) => {
        const why: string[] = [];
        for (const name of resources) {
          const key = resourceKey(c.ns, name);
          if (!budget.caps.has(key)) why.push(`lacks ${name}`);
          else if (budget.available(key, soft) < 1) {
            why.push(`has all ${budget.caps.get(key)} shares of ${name} in use`);
          }
        }
        return why.length ? why.join(", ") : undefined;
      });
      if (typeof cands === "string") return fail(cands);
    }

    const types = runtimeTypes(cfg);
    cands = byRuntime(
      cands,
      `runtime type ${list(types)}`,
      (_c, rt) => types.includes(rt.type) ? undefined : `is ${rt.type}`,
    );
    if (typeof cands === "string") return fail(cands);

    cands = byRuntime(
      cands,
      `platform ${describePlatform(manifest.platform)}`,
      (_c, rt) =>
        platformMatches(manifest.platform, rt) ? undefined : `is ${describeRuntimePlatform(rt)}`,
    );
    if (typeof cands === "string") return fail(cands);

    if (checkLoad) {
      cands = byRuntime(cands, "CPU", (c, rt) => {
        const need = amounts(c.ns).cpu;
        const have = budget.available(cpuKey(c.ns, rt), soft);
        return need <= have ? undefined : `needs ${need} DMIPS, ${have} available`;
      });
      if (typeof cands === "string") return fail(cands);
      cands = byRuntime(cands, "RAM", (c, rt) => {
        const need = amounts(c.ns).ram;
        const have = budget.available(ramKey(c.ns, rt), soft);
        return need <= have ? undefined : `needs ${need} bytes, ${have} available`;
      });
      if (typeof cands === "string") return fail(cands);
      cands = byNode(cands, "storage/state", (c) => {
        const a = amounts(c.ns);
        const need = new Map<string, number>();
        if (a.storage > 0 && c.ns.storageKey) need.set(c.ns.storageKey, a.storage);
        if (a.state > 0 && c.ns.stateKey) {
          need.set(c.ns.stateKey, (need.get(c.ns.stateKey) ?? 0) + a.state);
        }
        for (const [key, bytes] of need) {
          const have = budget.available(key, soft);
          if (bytes > have) return `needs ${bytes} bytes of storage/state, ${have} available`;
        }
        return undefined;
      });
      if (typeof cands === "string") return fail(cands);
    }

    cands = byRuntime(cands, "instance count", (c, rt) => {
      const key = countKey(c.ns, rt);
      return budget.available(key, soft) >= 1
        ? undefined
        : `runs ${budget.used(key)} of ${budget.caps.get(key)}`;
    });
    if (typeof cands === "string") return fail(cands);

    const top = Math.max(...cands.map((c) => c.ns.priority));
    const best = cands.filter((c) => c.ns.priority === top).sort((a, b) => {
      const cpu = budget.available(["cpu", b.ns.id].join(SEP), soft) -
        budget.available(["cpu", a.ns.id].join(SEP), soft);
      if (cpu !== 0) return cpu;
      const ram = budget.available(["ram", b.ns.id].join(SEP), soft) -
        budget.available(["ram", a.ns.id].join(SEP), soft);
      if (ram !== 0) return ram;
      return a.ns.id < b.ns.id ? -1 : a.ns.id > b.ns.id ? 1 : 0;
    })[0];
    if (best === undefined) return fail("best fit (no node left)");
    const rt =
      [...best.rts].sort((a, b) =>
        a.type < b.type ? -1 : a.type > b.type ? 1 : a.runtimeId < b.runtimeId ? -1 : 1
      )[0];
    if (rt === undefined) return fail("best fit (no runtime left)");
    const a = amounts(best.ns);
    return {
      ok: true,
      ns: best.ns,
      rt,
      amounts: a,
      reservation: reservation(work, cfg, best.ns, rt, a),
    };
  }
}

function sortRequestOrder(a: Work, b: Work): number {
  const pa = a.request.priority;
  const pb = b.request.priority;
  if (pa !== pb) return pb - pa;
  for (const [x, y] of [[a.ident.itemId, b.ident.itemId], [a.ident.subjectId, b.ident.subjectId]]) {
    if (x! < y!) return -1;
    if (x! > y!) return 1;
  }
  return a.ident.instance - b.ident.instance;
}

function validate(input: PlacementInput): void {
  const nodeIds = new Set<string>();
  for (const n of input.nodes) {
    if (nodeIds.has(n.nodeId)) {
      throw new AosError(
        "invalidArgument",
        `Cannot place instances: node "${n.nodeId}" is listed twice`,
      );
    }
    nodeIds.add(n.nodeId);
  }
  const groups = new Set<string>();
  for (const r of input.requests) {
    const key = JSON.stringify([r.itemId, r.subjectId]);
    if (groups.has(key)) {
      throw new AosError(
        "invalidArgument",
        `Cannot place instances: item "${r.itemId}" subject "${r.subjectId}" is requested twice`,
      );
    }
    groups.add(key);
    if (
      !Number.isInteger(r.numInstances) || r.numInstances < 0 ||
      r.numInstances > MAX_REQUEST_INSTANCES
    ) {
      throw new AosError(
        "invalidArgument",
        `Cannot place instances of "${r.itemId}": numInstances ${r.numInstances} is not 0…${MAX_REQUEST_INSTANCES}`,
      );
    }
  }
}

/** Expands requests into instances; generated component instances get stable indices. */
function expand(
  requests: readonly InstanceRequest[],
  candidates: readonly NodeState[],
  current: Map<string, CurrentPlacement>,
  currentList: readonly CurrentPlacement[],
): Work[] {
  const works: Work[] = [];
  for (const request of requests) {
    const type = request.type ?? "service";
    const base = { itemId: request.itemId, subjectId: request.subjectId, type };
    if (request.numInstances > 0 || type === "service") {
      for (let i = 0; i < request.numInstances; i++) {
        const ident = { ...base, instance: i };
        const key = identKey(ident);
        const cur = current.get(key);
        works.push({ ident, key, request, ...(cur ? { current: cur } : {}) });
      }
      continue;
    }
    // Component with numInstances 0: one per (node, runtime) whose type any manifest allows.
    const types = new Set(request.manifests.flatMap((m) => runtimeTypes(m.itemConfig)));
    const pairs = [...candidates].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .flatMap((ns) =>
        ns.node.runtimes.filter((rt) => types.has(rt.type))
          .sort((a, b) => (a.runtimeId < b.runtimeId ? -1 : 1))
          .map((rt) => ({ nodeId: ns.id, runtimeId: rt.runtimeId }))
      );
    // An instance keeps its index while its node runtime stays; new ones take the lowest free.
    const byPair = new Map<string, CurrentPlacement>();
    for (const c of currentList) {
      if (
        c.ident.itemId === request.itemId && c.ident.subjectId === request.subjectId &&
        c.ident.type === "component"
      ) byPair.set(JSON.stringify([c.nodeId, c.runtimeId]), c);
    }
    const indexOf = new Map<string, number>();
    const used = new Set<number>();
    for (const p of pairs) {
      const cur = byPair.get(JSON.stringify([p.nodeId, p.runtimeId]));
      if (cur !== undefined && !used.has(cur.ident.instance)) {
        indexOf.set(JSON.stringify([p.nodeId, p.runtimeId]), cur.ident.instance);
        used.add(cur.ident.instance);
      }
    }
    let next = 0;
    for (const p of pairs) {
      const pk = JSON.stringify([p.nodeId, p.runtimeId]);
      let index = indexOf.get(pk);
      if (index === undefined) {
        while (used.has(next)) next++;
        index = next;
        used.add(index);
      }
      const ident = { ...base, instance: index };
      const key = identKey(ident);
      const cur = byPair.get(pk);
      works.push({
        ident,
        key,
        request,
        pin: p,
        ...(cur !== undefined && cur.ident.instance === index ? { current: cur } : {}),
      });
    }
  }
  return works.sort(sortRequestOrder);
}

/** Manifests in the order to try when the instance stays: the one it runs first. */
function keepOrder(work: Work): ManifestCandidate[] {
  const all = [...work.request.manifests];
  const digest = work.current?.manifestDigest;
  const i = digest === undefined ? -1 : all.findIndex((m) => m.digest === digest);
  if (i > 0) all.unshift(...all.splice(i, 1));
  return all;
}

function isPinned(work: Work, manifest: ManifestCandidate | undefined): boolean {
  return work.pin !== undefined || work.ident.type === "component" ||
    manifest?.itemConfig.balancingPolicy === "disabled";
}

function describeNoNodes(nodes: readonly PlacementNode[]): string {
  if (nodes.length === 0) return "connected and provisioned (no node is known)";
  const why = nodes.map((n) =>
    `${n.nodeId} ${
      !n.connected
        ? n.state === "provisioned" ? "is not connected" : `is not connected, state ${n.state}`
        : `has state ${n.state}`
    }`
  );
  return `connected and provisioned (${why.join("; ")})`;
}

/**
 * Decides where each requested instance runs (cm.md §7.3–§7.4; the rules on what moves are in
 * this module's description). Pure and deterministic: the same input gives the same result,
 * and feeding the result back as `current` with the same nodes and requests changes nothing.
 *
 * Instances are handled in request order: priority desc, then item id, subject id, index.
 * Instances of a current placement that no request asks for any more are not in the result
 * (the caller stops them). A component request with `numInstances` 0 yields one instance per
 * candidate node runtime whose type a manifest allows, pinned there; none when there is none.
 * @throws AosError `invalidArgument` for malformed input: a node listed twice, an item/subject
 *   requested twice, `numInstances` not an integer in 0…256.
 */
export function placeInstances(input: PlacementInput): PlacementResult {
  validate(input);
  const mode = input.mode ?? "stable";
  const overload = mode !== "stable";
  const budget = new Budget();
  const candidates = input.nodes
    .filter((n) => n.connected && n.state === "provisioned")
    .map((n) => buildNodeState(n, overload, budget))
    .sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const measured = new Map<string, ResourceUsage>();
  for (const n of input.nodes) {
    for (const i of n.monitoring?.instances ?? []) measured.set(identKey(i.ident), i.usage);
  }
  const planner = new Planner(budget, candidates, measured);
  const noNodes = describeNoNodes(input.nodes);

  const currentList = input.current ?? [];
  const current = new Map<string, CurrentPlacement>();
  for (const c of currentList) current.set(identKey(c.ident), c);
  const works = expand(input.requests, candidates, current, currentList);

  // Running instances that may stay reserve their place as "pending" until their turn.
  const pending = new Map<Work, Reservation>();
  for (const work of works) {
    const cur = work.current;
    if (cur === undefined || work.pin !== undefined) continue;
    const ns = planner.candidate(cur.nodeId);
    const rt = ns?.node.runtimes.find((r) => r.runtimeId === cur.runtimeId);
    if (ns === undefined || rt === undefined) continue;
    const manifest = keepOrder(work)[0];
    if (manifest === undefined) continue;
    if (mode === "repack" && !isPinned(work, manifest)) continue;
    const r = reservation(
      work,
      manifest.itemConfig,
      ns,
      rt,
      planner.amounts(work, manifest.itemConfig, ns),
    );
    pending.set(work, r);
    budget.addPending(r);
  }

  const results = new Map<Work, PlacementResult["placements"][number] | PlacementFailure>();
  const place = (work: Work, o: Extract<Outcome, { ok: true }>, manifest: ManifestCandidate) => {
    budget.commit(o.reservation);
    const cur = work.current;
    const change: PlacementChange = cur === undefined
      ? "new"
      : cur.nodeId === o.ns.id && cur.runtimeId === o.rt.runtimeId
      ? "kept"
      : "moved";
    results.set(work, {
      ident: work.ident,
      nodeId: o.ns.id,
      runtimeId: o.rt.runtimeId,
      manifestDigest: manifest.digest,
      priority: work.request.priority,
      change,
      ...(change === "moved" && cur !== undefined ? { previousNodeId: cur.nodeId } : {}),
      requestedCpu: o.amounts.cpu,
      requestedRam: o.amounts.ram,
    });
  };

  let start = 0;
  while (start < works.length) {
    const priority = works[start]!.request.priority;
    let end = start;
    while (end < works.length && works[end]!.request.priority === priority) end++;
    const tier = works.slice(start, end);
    start = end;

    // 1. Running instances of this priority try to stay where they are.
    const toPlace: Work[] = [];
    for (const work of tier) {
      const r = pending.get(work);
      if (r === undefined) {
        toPlace.push(work);
        continue;
      }
      budget.dropPending(r);
      pending.delete(work);
      const cur = work.current!;
      let kept = false;
      for (const manifest of keepOrder(work)) {
        const o = planner.evaluate(work, manifest, {
          soft: false,
          restrict: { nodeId: cur.nodeId, runtimeId: cur.runtimeId },
          pinned: isPinned(work, manifest),
        }, noNodes);
        if (o.ok) {
          place(work, o, manifest);
          kept = true;
          break;
        }
      }
      if (!kept) toPlace.push(work);
    }

    // 2. New and displaced instances of this priority.
    for (const work of toPlace) {
      const manifests = work.request.manifests;
      if (manifests.length === 0) {
        results.set(work, {
          ident: work.ident,
          error: new AosError(
            "invalidArgument",
            `Cannot place instance ${identLabel(work.ident)}: item has no manifest`,
          ),
        });
        continue;
      }
      const passes = pending.size > 0 ? [true, false] : [false];
      const reasons = new Map<ManifestCandidate, string>();
      let done = false;
      for (const soft of passes) {
        for (const manifest of manifests) {
          const o = planner.evaluate(work, manifest, {
            soft,
            pinned: work.pin !== undefined,
            ...(work.pin !== undefined ? { restrict: work.pin } : {}),
          }, noNodes);
          if (o.ok) {
            place(work, o, manifest);
            done = true;
            break;
          }
          reasons.set(manifest, o.reason);
        }
        if (done) break;
      }
      if (done) continue;
      const text = manifests.length === 1
        ? `no node satisfies ${reasons.get(manifests[0]!)}`
        : manifests.map((m) =>
          `manifest ${shortDigest(m.digest)}: no node satisfies ${reasons.get(m)}`
        )
          .join("; ");
      results.set(work, {
        ident: work.ident,
        error: new AosError("notFound", `Cannot place instance ${identLabel(work.ident)}: ${text}`),
      });
    }
  }

  const out: PlacementResult = { placements: [], failures: [] };
  for (const work of works) {
    const r = results.get(work);
    if (r === undefined) continue;
    if ("error" in r) out.failures.push(r);
    else out.placements.push(r);
  }
  return out;
}

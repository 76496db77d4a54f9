/**
 * CM's node info provider (cm.md §10): IAM's node registry (`GetAllNodeIDs`, `GetNodeInfo`,
 * `SubscribeNodeChanged`) merged with what each node's SM announced on its current stream
 * (`sm_info`: runtimes and shared resources), with the connectivity rules of upstream:
 *
 * - a node is connected when its `AosComponents` attribute names no `sm` (nothing to wait
 *   for), when it is `unprovisioned`, or when its SM sent `sm_info` on the open stream;
 * - a node that should have an SM and has none for longer than `smConnectionTimeout` since the
 *   last SM event (or since CM start) is reported in state `error` ("SM connection timeout").
 *
 * It feeds the launcher's placement ({@link NodeInfoProvider.placementNodes}), the unit
 * config manager ({@link NodeInfoProvider.configTargets}) and the unit status' `nodes`
 * section ({@link NodeInfoProvider.cloudNodes}); listeners hear which nodes changed.
 * @module
 */
import type { NodeInfo as IamNodeInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import type { SMInfo } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import type { NodeInfo as CloudNodeInfo, NodeState } from "@aos/shared/cloudprotocol";
import { NODE_STATES } from "@aos/shared/cloudprotocol";
import { AosError, fromErrorInfo, toCloudErrorInfo } from "@aos/shared/core";
import { type Logger, nullLogger } from "@aos/shared/logger";
import type { ConfigTarget, PlacementNode, RuntimeInfo } from "../core/mod.ts";
import { systemTimers, type TimerHandle, type Timers } from "../core/timers.ts";

/** `nodeInfoProvider.smConnectionTimeout` default (cm.md §17). */
export const SM_CONNECTION_TIMEOUT_MS = 60_000;
/** Most nodes tracked (IAM could report any number; a unit has a handful). */
export const MAX_NODES = 256;

/** The IAM calls the provider needs (implemented by `IamClient`). */
export interface NodeRegistryPort {
  getAllNodeIds(): Promise<string[]>;
  getNodeInfo(nodeId: string): Promise<IamNodeInfo>;
  subscribeNodeChanged(listener: (node: IamNodeInfo) => void): () => void;
}

/** Options of {@link NodeInfoProvider}. */
export interface NodeInfoProviderOptions {
  iam: NodeRegistryPort;
  /** `nodeInfoProvider.smConnectionTimeout` in ms (default {@link SM_CONNECTION_TIMEOUT_MS}). */
  smConnectionTimeoutMs?: number;
  timers?: Timers;
  logger?: Logger;
}

interface NodeEntry {
  info: IamNodeInfo;
  sm: SMInfo | undefined;
  /** No SM event within the timeout. */
  timedOut: boolean;
  timer: TimerHandle | undefined;
}

function attrsOf(info: IamNodeInfo): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of info.attrs) out[a.name] = a.value;
  return out;
}

/** Whether a node runs an SM, by its `AosComponents` attribute (absent: assume it does). */
export function nodeHasSm(info: IamNodeInfo): boolean {
  const attr = info.attrs.find((a) => a.name.toLowerCase() === "aoscomponents");
  if (attr === undefined) return true;
  return attr.value.split(/[,\s]+/).some((c) => c.trim().toLowerCase() === "sm");
}

function num(v: bigint | number | undefined): number {
  return v === undefined ? 0 : Number(v);
}

function nodeState(s: string): NodeState {
  return (NODE_STATES as readonly string[]).includes(s) ? s as NodeState : "error";
}

/** Merges IAM node info, SM info and connectivity. */
export class NodeInfoProvider implements Disposable {
  readonly #o: NodeInfoProviderOptions;
  readonly #log: Logger;
  readonly #timers: Timers;
  readonly #nodes = new Map<string, NodeEntry>();
  /** SM info that arrived before IAM reported the node. */
  readonly #earlySm = new Map<string, SMInfo>();
  readonly #listeners = new Set<(nodeIds: string[]) => void>();
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  /** Creates the provider; call {@link init}. */
  constructor(options: NodeInfoProviderOptions) {
    this.#o = options;
    this.#log = options.logger ?? nullLogger;
    this.#timers = options.timers ?? systemTimers;
  }

  /** Reads every node from IAM and subscribes to changes. */
  async init(): Promise<void> {
    this.#unsubscribe = this.#o.iam.subscribeNodeChanged((info) => this.#iamChanged(info));
    const ids = await this.#o.iam.getAllNodeIds();
    for (const id of ids.slice(0, MAX_NODES)) {
      try {
        this.#iamChanged(await this.#o.iam.getNodeInfo(id));
      } catch (err) {
        this.#log.error("cannot read node info", { nodeId: id, error: err });
      }
    }
  }

  /** Calls `listener` with the ids of nodes whose info changed; returns unsubscribe. */
  onChange(listener: (nodeIds: string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** An SM connected (`sm_info`) or its stream ended (`undefined`). */
  smChanged(nodeId: string, info: SMInfo | undefined): void {
    if (this.#closed) return;
    const e = this.#nodes.get(nodeId);
    if (!e) {
      if (info) this.#earlySm.set(nodeId, info);
      else this.#earlySm.delete(nodeId);
      return;
    }
    e.sm = info;
    e.timedOut = false;
    this.#armTimer(nodeId, e);
    this.#emit([nodeId]);
  }

  /** Whether a node counts as connected (cm.md §10). */
  isConnected(nodeId: string): boolean {
    const e = this.#nodes.get(nodeId);
    return e !== undefined && this.#connected(e);
  }

  /** Whether the node's SM is connected now. */
  hasSm(nodeId: string): boolean {
    return this.#nodes.get(nodeId)?.sm !== undefined;
  }

  /** Nodes as the placement sees them (without `config`: the caller adds the unit config's). */
  placementNodes(): PlacementNode[] {
    return [...this.#nodes.values()].map((e) => this.#placement(e));
  }

  /** Nodes whose SM is connected, for node-config pushes. */
  configTargets(): ConfigTarget[] {
    return [...this.#nodes.values()].filter((e) => e.sm !== undefined).map((e) => ({
      nodeId: e.info.nodeId,
      nodeType: e.info.nodeType,
    }));
  }

  /** The node type IAM reports for a node (`""` when unknown). */
  nodeType(nodeId: string): string {
    return this.#nodes.get(nodeId)?.info.nodeType ?? "";
  }

  /** Nodes in the cloud's `unitStatus.nodes` form, optionally only `nodeIds`. */
  cloudNodes(nodeIds?: readonly string[]): CloudNodeInfo[] {
    const pick = nodeIds === undefined
      ? [...this.#nodes.values()]
      : nodeIds.map((id) => this.#nodes.get(id)).filter((e): e is NodeEntry => e !== undefined);
    return pick.map((e) => this.#cloud(e));
  }

  /** Stops the timers and the IAM subscription. */
  [Symbol.dispose](): void {
    this.#closed = true;
    this.#unsubscribe?.();
    for (const e of this.#nodes.values()) {
      if (e.timer !== undefined) this.#timers.clearTimeout(e.timer);
      e.timer = undefined;
    }
  }

  // -------------------------------------------------------------------------------------------

  #iamChanged(info: IamNodeInfo): void {
    if (this.#closed || !info.nodeId || info.nodeId.length > 256) return;
    let e = this.#nodes.get(info.nodeId);
    if (!e) {
      if (this.#nodes.size >= MAX_NODES) {
        this.#log.error("too many nodes; node ignored", { nodeId: info.nodeId.slice(0, 64) });
        return;
      }
      const sm = this.#earlySm.get(info.nodeId);
      this.#earlySm.delete(info.nodeId);
      e = { info, sm, timedOut: false, timer: undefined };
      this.#nodes.set(info.nodeId, e);
    } else {
      e.info = info;
    }
    this.#armTimer(info.nodeId, e);
    this.#emit([info.nodeId]);
  }

  /** Waits for the SM of a node that needs one and has none. */
  #armTimer(nodeId: string, e: NodeEntry): void {
    if (e.timer !== undefined) this.#timers.clearTimeout(e.timer);
    e.timer = undefined;
    if (this.#closed || this.#connected(e)) return;
    e.timer = this.#timers.setTimeout(() => {
      e.timer = undefined;
      if (this.#connected(e) || e.timedOut) return;
      e.timedOut = true;
      this.#log.warn("SM connection timeout", { nodeId });
      this.#emit([nodeId]);
    }, this.#o.smConnectionTimeoutMs ?? SM_CONNECTION_TIMEOUT_MS);
  }

  #connected(e: NodeEntry): boolean {
    return e.sm !== undefined || !nodeHasSm(e.info) || e.info.state === "unprovisioned";
  }

  #state(e: NodeEntry): NodeState {
    return e.timedOut && !this.#connected(e) ? "error" : nodeState(e.info.state);
  }

  #error(e: NodeEntry): AosError | undefined {
    if (e.timedOut && !this.#connected(e)) {
      return new AosError("timeout", `SM connection timeout on node ${e.info.nodeId}`);
    }
    return fromErrorInfo(e.info.error);
  }

  #runtimes(e: NodeEntry): RuntimeInfo[] {
    return (e.sm?.runtimes ?? []).map((r) => {
      const rt: RuntimeInfo = {
        runtimeId: r.runtimeId,
        type: r.type,
        maxDmips: num(r.maxDmips),
        allowedDmips: num(r.allowedDmips),
        totalRam: num(r.totalRam),
        allowedRam: num(r.allowedRam),
        maxInstances: num(r.maxInstances),
      };
      if (r.osInfo) {
        rt.osInfo = { os: r.osInfo.os, version: r.osInfo.version, features: r.osInfo.features };
      }
      if (r.archInfo) {
        rt.archInfo = r.archInfo.variant
          ? { architecture: r.archInfo.architecture, variant: r.archInfo.variant }
          : { architecture: r.archInfo.architecture };
      }
      return rt;
    });
  }

  #placement(e: NodeEntry): PlacementNode {
    const i = e.info;
    return {
      nodeId: i.nodeId,
      nodeType: i.nodeType,
      state: this.#state(e),
      connected: this.#connected(e),
      maxDmips: num(i.maxDmips),
      totalRam: num(i.totalRam),
      attrs: attrsOf(i),
      runtimes: this.#runtimes(e),
      resources: (e.sm?.resources ?? []).map((r) => ({
        name: r.name,
        sharedCount: num(r.sharedCount),
      })),
      partitions: i.partitions.map((p) => ({
        name: p.name,
        types: p.types,
        totalSize: num(p.totalSize),
        path: p.path,
      })),
    };
  }

  #cloud(e: NodeEntry): CloudNodeInfo {
    const i = e.info;
    const out: CloudNodeInfo = {
      identity: { codename: i.nodeId, ...(i.title ? { title: i.title } : {}) },
      nodeGroupSubject: { codename: i.nodeType },
      maxDmips: num(i.maxDmips),
      totalRam: num(i.totalRam),
      osInfo: {
        os: i.osInfo?.os ?? "",
        ...(i.osInfo?.version ? { version: i.osInfo.version } : {}),
        features: i.osInfo?.features ?? [],
      },
      cpus: i.cpus.map((c) => ({
        modelName: c.modelName,
        totalNumCores: num(c.numCores),
        totalNumThreads: num(c.numThreads),
        archInfo: {
          architecture: c.archInfo?.architecture ?? "",
          ...(c.archInfo?.variant ? { variant: c.archInfo.variant } : {}),
        },
        ...(c.maxDmips ? { maxDmips: num(c.maxDmips) } : {}),
      })),
      attrs: attrsOf(i),
      partitions: i.partitions.map((p) => ({
        name: p.name,
        ...(p.path ? { path: p.path } : {}),
        types: p.types,
        totalSize: num(p.totalSize),
      })),
      runtimes: (e.sm?.runtimes ?? []).map((r) => ({
        identity: { codename: r.runtimeId },
        runtimeType: r.type,
        archInfo: {
          architecture: r.archInfo?.architecture ?? "",
          ...(r.archInfo?.variant ? { variant: r.archInfo.variant } : {}),
        },
        osInfo: {
          os: r.osInfo?.os ?? "",
          ...(r.osInfo?.version ? { version: r.osInfo.version } : {}),
          features: r.osInfo?.features ?? [],
        },
        ...(r.maxDmips ? { maxDmips: num(r.maxDmips) } : {}),
        ...(r.allowedDmips ? { allowedDmips: num(r.allowedDmips) } : {}),
        ...(r.totalRam ? { totalRam: num(r.totalRam) } : {}),
        ...(r.allowedRam ? { allowedRam: num(r.allowedRam) } : {}),
        maxInstances: num(r.maxInstances),
      })),
      resources: (e.sm?.resources ?? []).map((r) => ({
        name: r.name,
        sharedCount: num(r.sharedCount),
      })),
      state: this.#state(e),
      isConnected: this.#connected(e),
    };
    if (i.physicalRam) out.physicalRam = num(i.physicalRam);
    const err = this.#error(e);
    if (err) out.errorInfo = toCloudErrorInfo(err);
    return out;
  }

  #emit(nodeIds: string[]): void {
    for (const l of this.#listeners) {
      try {
        l(nodeIds);
      } catch (err) {
        this.#log.error("node info listener failed", { error: err });
      }
    }
  }
}

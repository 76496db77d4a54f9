/**
 * The main node's registry of all nodes: a cache of every node's `NodeInfo` backed by the
 * `nodeinfo` table (JSON in the cloud-protocol shape, as upstream stores it), a connected flag
 * kept in memory only, and change listeners.
 * @module
 */
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { AosError } from "@aos/shared/errors";
import type { Logger } from "@aos/shared/logger";
import type { NodeInfo, NodeState, Unsubscribe } from "./types.ts";

/** Where node infos persist (the `nodeinfo` table of `iamanager.db`). */
export interface NodeStore {
  /** Node ID → stored JSON text. */
  loadNodes(): Map<string, string>;
  saveNode(id: string, info: string): void;
  removeNode(id: string): void;
}

/** A node as the registry knows it. */
export interface NodeEntry {
  /** The node's info as last reported (wire form). */
  info: NodeInfo;
  /** Whether the node is connected right now (never persisted). */
  connected: boolean;
}

/** Called with the node that changed. */
export type NodeListener = (entry: NodeEntry) => void;

const u64 = z.number().check(z.int(), z.nonnegative(), z.lte(Number.MAX_SAFE_INTEGER));
const storedNode = z.object({
  identity: z.object({ codename: z.string().check(z.minLength(1)), title: z.optional(z.string()) }),
  nodeGroupSubject: z.optional(z.object({ codename: z.string() })),
  maxDmips: z.optional(u64),
  physicalRam: z.optional(u64),
  totalRam: z.optional(u64),
  osInfo: z.optional(z.object({
    os: z.string(),
    version: z.optional(z.string()),
    features: z.optional(z.array(z.string())),
  })),
  cpus: z.optional(z.array(z.object({
    modelName: z.optional(z.string()),
    totalNumCores: z.optional(u64),
    totalNumThreads: z.optional(u64),
    archInfo: z.optional(z.object({ architecture: z.string(), variant: z.optional(z.string()) })),
    maxDmips: z.optional(u64),
  }))),
  attrs: z.optional(z.record(z.string(), z.string())),
  partitions: z.optional(z.array(z.object({
    name: z.string(),
    types: z.optional(z.array(z.string())),
    totalSize: z.optional(u64),
    path: z.optional(z.string()),
  }))),
  state: z.string(),
  isConnected: z.optional(z.boolean()),
  errorInfo: z.optional(z.object({
    aosCode: z.optional(z.number().check(z.int())),
    exitCode: z.optional(z.number().check(z.int())),
    message: z.optional(z.string()),
  })),
});

const num = (v: bigint) => Number(v);

/**
 * Encodes a node info as the JSON upstream keeps in `nodeinfo.info` (cloud-protocol
 * `NodeInfo`); `isConnected` is always stored as false.
 */
export function nodeInfoToJson(info: NodeInfo): string {
  const out: Record<string, unknown> = {
    identity: { codename: info.nodeId, title: info.title },
    nodeGroupSubject: { codename: info.nodeType },
    maxDmips: num(info.maxDmips),
    totalRam: num(info.totalRam),
    ...(info.physicalRam ? { physicalRam: num(info.physicalRam) } : {}),
    osInfo: {
      os: info.osInfo?.os ?? "",
      ...(info.osInfo?.version ? { version: info.osInfo.version } : {}),
      ...(info.osInfo?.features.length ? { features: info.osInfo.features } : {}),
    },
  };
  if (info.cpus.length) {
    out.cpus = info.cpus.map((c) => ({
      modelName: c.modelName,
      totalNumCores: num(c.numCores),
      totalNumThreads: num(c.numThreads),
      archInfo: {
        architecture: c.archInfo?.architecture ?? "",
        ...(c.archInfo?.variant ? { variant: c.archInfo.variant } : {}),
      },
      ...(c.maxDmips ? { maxDmips: num(c.maxDmips) } : {}),
    }));
  }
  if (info.attrs.length) out.attrs = Object.fromEntries(info.attrs.map((a) => [a.name, a.value]));
  if (info.partitions.length) {
    out.partitions = info.partitions.map((p) => ({
      name: p.name,
      types: p.types,
      totalSize: num(p.totalSize),
      path: p.path,
    }));
  }
  out.state = info.state;
  out.isConnected = false;
  if (info.error && (info.error.aosCode || info.error.exitCode || info.error.message)) {
    out.errorInfo = info.error;
  }
  return JSON.stringify(out);
}

/** Decodes {@link nodeInfoToJson}; throws `invalidArgument` on anything else. */
export function nodeInfoFromJson(text: string): NodeInfo {
  let parsed: z.output<typeof storedNode>;
  try {
    parsed = storedNode.parse(JSON.parse(text));
  } catch (err) {
    throw new AosError("invalidArgument", `Bad stored node info: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const big = (v: number | undefined) => BigInt(v ?? 0);
  return {
    nodeId: parsed.identity.codename,
    nodeType: parsed.nodeGroupSubject?.codename ?? "",
    title: parsed.identity.title ?? "",
    maxDmips: big(parsed.maxDmips),
    totalRam: big(parsed.totalRam),
    physicalRam: big(parsed.physicalRam),
    osInfo: {
      os: parsed.osInfo?.os ?? "",
      version: parsed.osInfo?.version ?? "",
      features: parsed.osInfo?.features ?? [],
    },
    cpus: (parsed.cpus ?? []).map((c) => ({
      modelName: c.modelName ?? "",
      numCores: big(c.totalNumCores),
      numThreads: big(c.totalNumThreads),
      archInfo: {
        architecture: c.archInfo?.architecture ?? "",
        variant: c.archInfo?.variant ?? "",
      },
      maxDmips: big(c.maxDmips),
    })),
    partitions: (parsed.partitions ?? []).map((p) => ({
      name: p.name,
      types: p.types ?? [],
      totalSize: big(p.totalSize),
      path: p.path ?? "",
    })),
    attrs: Object.entries(parsed.attrs ?? {}).map(([name, value]) => ({ name, value })),
    state: parsed.state,
    error: parsed.errorInfo
      ? {
        aosCode: parsed.errorInfo.aosCode ?? 0,
        exitCode: parsed.errorInfo.exitCode ?? 0,
        message: parsed.errorInfo.message ?? "",
      }
      : undefined,
  };
}

/**
 * Registry of all nodes of the unit (meaningful on the main node). Every change is persisted
 * before the cache is updated and listeners are told, so a crash never leaves the cache ahead
 * of the database.
 */
export class NodeManager {
  readonly #store: NodeStore;
  readonly #logger: Logger;
  readonly #nodes = new Map<string, NodeEntry>();
  readonly #listeners = new Set<NodeListener>();

  /** Call {@link init} before use. */
  constructor(store: NodeStore, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
  }

  /** Loads every stored node (as disconnected); unreadable rows are skipped with a warning. */
  init(): void {
    this.#nodes.clear();
    for (const [id, text] of this.#store.loadNodes()) {
      try {
        const info = nodeInfoFromJson(text);
        if (info.nodeId !== id) {
          throw new AosError("invalidArgument", `row key ${id} holds node ${info.nodeId}`);
        }
        this.#nodes.set(id, { info, connected: false });
      } catch (err) {
        this.#logger.warn("skipping unreadable stored node", { nodeId: id, error: err });
      }
    }
    this.#logger.info("node registry loaded", { nodes: this.#nodes.size });
  }

  /**
   * Stores a node's info. An `unprovisioned` node is kept in the cache but its row is removed
   * (upstream: only provisioned nodes survive a restart).
   */
  setNodeInfo(info: NodeInfo, connected: boolean): void {
    const next: NodeEntry = { info: structuredClone(info), connected };
    const prev = this.#nodes.get(info.nodeId);
    const json = nodeInfoToJson(next.info);
    if (!prev || nodeInfoToJson(prev.info) !== json) {
      if (info.state === "unprovisioned") this.#store.removeNode(info.nodeId);
      else this.#store.saveNode(info.nodeId, json);
    } else if (prev.connected === connected) {
      return;
    }
    this.#nodes.set(info.nodeId, next);
    this.#notify(next);
  }

  /** Changes a known node's state; `notFound` for an unknown node. */
  setNodeState(nodeId: string, state: NodeState): void {
    const entry = this.#entry(nodeId);
    this.setNodeInfo({ ...entry.info, state, error: undefined }, entry.connected);
  }

  /** Marks a known node (dis)connected; in memory only. Unknown nodes are ignored. */
  setConnected(nodeId: string, connected: boolean): void {
    const entry = this.#nodes.get(nodeId);
    if (!entry || entry.connected === connected) return;
    const next = { info: entry.info, connected };
    this.#nodes.set(nodeId, next);
    this.#logger.info(connected ? "node connected" : "node disconnected", { nodeId });
    this.#notify(next);
  }

  /** A node's info; `notFound` for an unknown node. */
  getNodeInfo(nodeId: string): NodeInfo {
    return structuredClone(this.#entry(nodeId).info);
  }

  /** Whether a node is connected now. */
  isConnected(nodeId: string): boolean {
    return this.#nodes.get(nodeId)?.connected ?? false;
  }

  /** Every known node ID (stored ones and those that registered during this run). */
  getAllNodeIds(): string[] {
    return [...this.#nodes.keys()];
  }

  /** Called with a node whenever its info or connected flag changes. */
  subscribe(listener: NodeListener): Unsubscribe {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #entry(nodeId: string): NodeEntry {
    const entry = this.#nodes.get(nodeId);
    if (!entry) throw new AosError("notFound", `Unknown node "${nodeId}"`);
    return entry;
  }

  #notify(entry: NodeEntry): void {
    for (const l of this.#listeners) {
      try {
        l({ info: structuredClone(entry.info), connected: entry.connected });
      } catch (err) {
        this.#logger.error("node listener failed", { nodeId: entry.info.nodeId, error: err });
      }
    }
  }
}

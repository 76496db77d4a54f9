/**
 * This node's `NodeInfo`: ID and type, title and DMIPS from config, RAM from meminfo, CPUs from
 * cpuinfo, partitions with statfs, OS info, attrs, and the state from the provision-state file.
 * @module
 */
import { statfs } from "node:fs/promises";
import { arch, cpus } from "node:os";
import type { CPUInfo, NodeInfo, PartitionInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import { AosError, toErrorInfo } from "@aos/shared/errors";
import type { Logger } from "@aos/shared/logger";
import type { IamConfig } from "../config.ts";
import { readNodeState, writeNodeState } from "./node_state.ts";
import type { NodeState, Unsubscribe } from "./types.ts";

/** `MemTotal` of /proc/meminfo in bytes (0 when missing). */
export function parseMemTotal(text: string): bigint {
  const m = /^MemTotal:\s+(\d+)\s*kB/m.exec(text);
  return m ? BigInt(m[1]!) * 1024n : 0n;
}

/** One CPU entry per physical package of /proc/cpuinfo (upstream grouping). */
export function parseCpuInfo(text: string, architecture: string, variant = ""): CPUInfo[] {
  const packages = new Map<string, CPUInfo>();
  for (const block of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of block.split("\n")) {
      const i = line.indexOf(":");
      if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
    }
    if (!fields.has("processor")) continue;
    const id = fields.get("physical id") ?? "0";
    if (packages.has(id)) continue;
    packages.set(id, {
      modelName: fields.get("model name") ?? fields.get("Hardware") ?? fields.get("cpu model") ??
        "",
      numCores: BigInt(Number(fields.get("cpu cores") ?? 1) || 1),
      numThreads: BigInt(Number(fields.get("siblings") ?? 1) || 1),
      archInfo: { architecture, variant },
      maxDmips: 0n,
    });
  }
  if (packages.size === 0) {
    return [{
      modelName: "",
      numCores: 1n,
      numThreads: 1n,
      archInfo: { architecture, variant },
      maxDmips: 0n,
    }];
  }
  return [...packages.values()];
}

/** Reads the node ID: the first line of `nodeIdPath` (or `nodeId` from config). */
export async function readNodeId(cfg: IamConfig["nodeInfo"]): Promise<string> {
  if (cfg.nodeId) return cfg.nodeId;
  const text = await Deno.readTextFile(cfg.nodeIdPath).catch((err) => {
    throw new AosError("notFound", `Cannot read node ID from ${cfg.nodeIdPath}: ${err.message}`, {
      cause: err,
    });
  });
  const id = text.split("\n")[0]!.trim();
  if (!id) throw new AosError("invalidArgument", `Node ID file ${cfg.nodeIdPath} is empty`);
  return id;
}

/**
 * Reads a /proc-like file; `undefined` when Deno refuses it (it grants /proc only to
 * `--allow-all`), so the caller falls back to the system-info APIs (`--allow-sys`).
 */
async function readProcFile(path: string, logger: Logger): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) return undefined;
    logger.warn("cannot read node information file", { path, error: err });
    return "";
  }
}

/** One CPU entry from `os.cpus()` (used when /proc/cpuinfo is not readable). */
function cpusFromOs(architecture: string, variant: string): CPUInfo[] {
  const list = cpus();
  return [{
    modelName: list[0]?.model ?? "",
    numCores: BigInt(Math.max(1, list.length)),
    numThreads: BigInt(Math.max(1, list.length)),
    archInfo: { architecture, variant },
    maxDmips: 0n,
  }];
}

function machineArch(): string {
  const a = arch();
  return a === "x64" ? "x86_64" : a === "arm64" ? "aarch64" : a;
}

/** Builds and tracks this node's `NodeInfo`. */
export class CurrentNode {
  #info: NodeInfo;
  readonly #statePath: string;
  readonly #listeners = new Set<(info: NodeInfo) => void>();
  readonly #logger: Logger;

  private constructor(info: NodeInfo, statePath: string, logger: Logger) {
    this.#info = info;
    this.#statePath = statePath;
    this.#logger = logger;
  }

  /** Reads everything once at start. */
  static async create(config: IamConfig, logger: Logger): Promise<CurrentNode> {
    const ni = config.nodeInfo;
    const architecture = ni.architecture ?? machineArch();
    const [nodeId, meminfo, cpuinfo, state] = await Promise.all([
      readNodeId(ni),
      readProcFile(ni.memInfoPath, logger),
      readProcFile(ni.cpuInfoPath, logger),
      readNodeState(ni.provisioningStatePath),
    ]);
    const partitions: PartitionInfo[] = [];
    for (const p of ni.partitions) {
      let totalSize = 0n;
      try {
        const s = await statfs(p.path);
        totalSize = BigInt(s.blocks) * BigInt(s.bsize);
      } catch (err) {
        logger.warn("cannot stat partition", { name: p.name, path: p.path, error: err });
      }
      partitions.push({ name: p.name, types: p.types, path: p.path, totalSize });
    }
    const info: NodeInfo = {
      nodeId,
      nodeType: ni.nodeType,
      title: ni.nodeName,
      maxDmips: BigInt(Math.trunc(ni.maxDmips)),
      totalRam: meminfo === undefined
        ? BigInt(Deno.systemMemoryInfo().total)
        : parseMemTotal(meminfo),
      physicalRam: 0n,
      osInfo: { os: ni.os ?? "linux", version: ni.osVersion ?? "", features: [] },
      cpus: cpuinfo === undefined
        ? cpusFromOs(architecture, ni.architectureVariant ?? "")
        : parseCpuInfo(cpuinfo, architecture, ni.architectureVariant ?? ""),
      partitions,
      attrs: Object.entries(ni.attrs).map(([name, value]) => ({ name, value })),
      state: state.state,
      error: state.error ? toErrorInfo(new AosError("failed", state.error)) : undefined,
    };
    return new CurrentNode(info, ni.provisioningStatePath, logger);
  }

  /** A copy of the current info. */
  get info(): NodeInfo {
    return structuredClone(this.#info);
  }

  /** This node's ID. */
  get nodeId(): string {
    return this.#info.nodeId;
  }

  /** The current state. */
  get state(): NodeState {
    return this.#info.state as NodeState;
  }

  /** Whether the config marks this node as the main node (`MainNode` attr). */
  get isMainNode(): boolean {
    return this.#info.attrs.some((a) => a.name.toLowerCase() === "mainnode");
  }

  /** Persists a new state (file first), then notifies. */
  async setState(state: NodeState): Promise<void> {
    await writeNodeState(this.#statePath, state);
    this.#info = { ...this.#info, state, error: undefined };
    this.#logger.info("node state changed", { state });
    for (const l of this.#listeners) l(this.info);
  }

  /** Called with the new info whenever it changes. */
  subscribe(listener: (info: NodeInfo) => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/**
 * CM's unit config manager (cm.md §9): checks a desired `unitConfig` (strictly newer semver,
 * every connected node's SM accepts its node config), persists it, pushes each node its node
 * config, re-pushes to nodes that reconnect with another version or an error, and reports the
 * `unitConfig` section of the unit status.
 * @module
 */
import {
  buildDesiredStatus,
  type NodeConfig,
  type UnitConfig,
  unitConfigSchema,
  type UnitConfigStatus,
} from "@aos/shared/cloudprotocol";
import {
  AosError,
  compareSemver,
  type ErrorInfoMessage,
  fromErrorInfo,
  isSemver,
  Mutex,
  toAosError,
  toCloudErrorInfo,
} from "@aos/shared/core";
import { type Logger, nullLogger } from "@aos/shared/logger";
import type { NodeConfig as PlacementNodeConfig } from "./placement_types.ts";

/** Largest persisted unit config read back (bytes of JSON). */
export const MAX_UNIT_CONFIG_SIZE = 1024 * 1024;

/** Where the unit config is persisted (`unitConfigFile`, JSON, mode 0600 in production). */
export interface UnitConfigStore {
  /** The stored JSON text; `undefined` when there is none. */
  load(): Promise<string | undefined> | string | undefined;
  /** Replaces the stored text (atomically). */
  save(text: string): Promise<void> | void;
}

/** `NodeConfigStatus` as an SM reports it. */
export interface NodeConfigStatusReply {
  /** `absent`, `installed` or `failed`. */
  state: string;
  /** Installed node config version. */
  version: string;
  /** All zero (or absent) on success. */
  error?: ErrorInfoMessage | undefined;
}

/** The SM controller calls the manager needs (implemented by `SmController`). */
export interface NodeConfigPort {
  /** `get_node_config_status`. */
  getNodeConfigStatus(nodeId: string): Promise<NodeConfigStatusReply>;
  /** `check_node_config`; throws the SM's error. */
  checkNodeConfig(nodeId: string, nodeConfig: string, version: string): Promise<void>;
  /** `set_node_config`; throws the SM's error. */
  setNodeConfig(nodeId: string, nodeConfig: string, version: string): Promise<void>;
}

/** A node whose SM is connected, as the node info provider knows it. */
export interface ConfigTarget {
  /** Node id (`node.codename` in node configs). */
  nodeId: string;
  /** Node type (`nodeGroupSubject.codename` in node configs). */
  nodeType: string;
}

/** Dependencies of {@link UnitConfigManager}. */
export interface UnitConfigManagerOptions {
  /** Persistence of the installed unit config. */
  store: UnitConfigStore;
  /** SM node-config requests. */
  sm: NodeConfigPort;
  /** Nodes whose SM is connected now. */
  connectedNodes: () => readonly ConfigTarget[];
  logger?: Logger;
}

type State = "absent" | "installed" | "failed";

/** JSON text of a unit config in the cloud's wire form (what {@link unitConfigSchema} reads). */
export function unitConfigToJson(config: UnitConfig): string {
  const wire = buildDesiredStatus({
    nodes: [],
    unitConfig: config,
    items: [],
    instances: [],
    subjects: [],
    certificates: [],
    certificateChains: [],
  });
  return JSON.stringify(wire.unitConfig);
}

/** Parses unit config JSON text (untrusted: bounded and validated). */
export function parseUnitConfig(text: string): UnitConfig {
  if (text.length > MAX_UNIT_CONFIG_SIZE) {
    throw new AosError(
      "outOfRange",
      `Unit config is ${text.length} bytes, more than ${MAX_UNIT_CONFIG_SIZE}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AosError("invalidArgument", `Unit config is not JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const r = unitConfigSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new AosError(
      "invalidArgument",
      `Unit config key "${i?.path.join(".") ?? "?"}": ${i?.message ?? "invalid"}`,
      { cause: r.error },
    );
  }
  return r.data;
}

/**
 * Picks the node config of a node: the entry naming the node, else the entry of its node type,
 * else an empty config; `version` becomes the unit config version and `node` the node itself.
 */
export function selectNodeConfig(config: UnitConfig, node: ConfigTarget): NodeConfig {
  const picked = config.nodes.find((n) => n.node?.codename === node.nodeId) ??
    // An entry naming another node of the same type is that node's, not the group's.
    config.nodes.find((n) =>
      n.node?.codename === undefined && n.nodeGroupSubject.codename === node.nodeType
    ) ??
    { nodeGroupSubject: { codename: node.nodeType }, priority: 0, labels: [] };
  return { ...picked, version: config.version, node: { codename: node.nodeId } };
}

function isoSeconds(ms: number): string {
  return `PT${ms / 1000}S`;
}

function rule(r: { minThreshold: number; maxThreshold: number; minTimeout: number }) {
  return {
    minTimeout: isoSeconds(r.minTimeout),
    minThreshold: r.minThreshold,
    maxThreshold: r.maxThreshold,
  };
}

/**
 * JSON text of a node config as sent to an SM (`CheckNodeConfig`/`SetNodeConfig`). Alert rule
 * `minTimeout`s go out as ISO-8601 duration strings, the form the C++ SM writes and ours reads.
 */
export function nodeConfigToJson(config: NodeConfig): string {
  const out: Record<string, unknown> = {};
  if (config.version !== undefined) out.version = config.version;
  out.nodeGroupSubject = { codename: config.nodeGroupSubject.codename ?? "" };
  if (config.node?.codename !== undefined) out.node = { codename: config.node.codename };
  out.priority = config.priority;
  out.labels = [...config.labels];
  const a = config.alertRules;
  if (a !== undefined) {
    const rules: Record<string, unknown> = {};
    if (a.cpu) rules.cpu = rule(a.cpu);
    if (a.ram) rules.ram = rule(a.ram);
    if (a.partitions.length > 0) {
      rules.partitions = a.partitions.map((p) => ({ name: p.name, ...rule(p) }));
    }
    if (a.download) rules.download = rule(a.download);
    if (a.upload) rules.upload = rule(a.upload);
    out.alertRules = rules;
  }
  if (config.resourceRatios !== undefined) {
    const ratios: Record<string, number> = {};
    for (const k of ["cpu", "ram", "storage", "state"] as const) {
      const v = config.resourceRatios[k];
      if (v !== undefined) ratios[k] = v;
    }
    out.resourceRatios = ratios;
  }
  return JSON.stringify(out);
}

/** The placement's view of a node config (priority, labels, ratios, CPU/RAM alert rules). */
export function toPlacementNodeConfig(config: NodeConfig): PlacementNodeConfig {
  const out: PlacementNodeConfig = { priority: config.priority, labels: [...config.labels] };
  const r = config.resourceRatios;
  if (r !== undefined) {
    const ratios: NonNullable<PlacementNodeConfig["resourceRatios"]> = {};
    if (r.cpu !== undefined) ratios.cpu = r.cpu;
    if (r.ram !== undefined) ratios.ram = r.ram;
    if (r.storage !== undefined) ratios.storage = r.storage;
    if (r.state !== undefined) ratios.state = r.state;
    out.resourceRatios = ratios;
  }
  const a = config.alertRules;
  if (a?.cpu !== undefined || a?.ram !== undefined) {
    const rules: NonNullable<PlacementNodeConfig["alertRules"]> = {};
    if (a.cpu) rules.cpu = { minThreshold: a.cpu.minThreshold, maxThreshold: a.cpu.maxThreshold };
    if (a.ram) rules.ram = { minThreshold: a.ram.minThreshold, maxThreshold: a.ram.maxThreshold };
    out.alertRules = rules;
  }
  return out;
}

/** Keeps the unit config, its status and the nodes' node configs in step. */
export class UnitConfigManager {
  readonly #o: UnitConfigManagerOptions;
  readonly #log: Logger;
  #state: State = "absent";
  #config: UnitConfig | undefined;
  #error: AosError | undefined;
  /** A desired config that failed, reported after the installed one. */
  #failedUpdate: { version: string; error: AosError } | undefined;
  readonly #listeners = new Set<() => void>();
  /** The SM controller allows one node-config request per node at a time: keep them in line. */
  readonly #smLock = new Mutex();

  /** Creates the manager; call {@link init} before use. */
  constructor(options: UnitConfigManagerOptions) {
    this.#o = options;
    this.#log = options.logger ?? nullLogger;
  }

  /** Loads the persisted config: none → `absent`, unreadable or invalid → `failed`. */
  async init(): Promise<void> {
    let text: string | undefined;
    try {
      text = await this.#o.store.load();
    } catch (err) {
      this.#setFailed(toAosError(err));
      return;
    }
    if (text === undefined) return;
    try {
      const config = parseUnitConfig(text);
      if (!isSemver(config.version)) {
        throw new AosError(
          "invalidArgument",
          `Stored unit config version "${config.version}" is not a semantic version`,
        );
      }
      this.#config = config;
      this.#state = "installed";
    } catch (err) {
      this.#setFailed(toAosError(err));
    }
  }

  #setFailed(error: AosError): void {
    this.#state = "failed";
    this.#error = error;
    this.#log.error("stored unit config is unusable", { error });
  }

  /** The installed unit config. */
  get config(): UnitConfig | undefined {
    return this.#config;
  }

  /** Version of the installed unit config (`undefined` when absent or failed). */
  get version(): string | undefined {
    return this.#config?.version;
  }

  /**
   * The `unitConfig` section of the unit status: the installed (or absent/failed) config, then
   * a desired config that failed, with its error.
   */
  status(): UnitConfigStatus[] {
    const out: UnitConfigStatus[] = [];
    const current: UnitConfigStatus = { state: this.#state };
    if (this.#config !== undefined) current.version = this.#config.version;
    if (this.#state === "failed") {
      current.errorInfo = toCloudErrorInfo(
        this.#error ?? new AosError("failed", "Unit config failed"),
      );
    }
    out.push(current);
    if (this.#failedUpdate !== undefined) {
      out.push({
        version: this.#failedUpdate.version,
        state: "failed",
        errorInfo: toCloudErrorInfo(this.#failedUpdate.error),
      });
    }
    return out;
  }

  /** Calls `listener` whenever {@link status} changes; returns the unsubscribe function. */
  onStatusChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    for (const l of this.#listeners) {
      try {
        l();
      } catch (err) {
        this.#log.error("unit config status listener failed", { error: err });
      }
    }
  }

  /**
   * Checks the version of a desired config against the installed one.
   * @throws AosError `invalidArgument` (not semver), `alreadyExist` (equal), `wrongState` (older).
   */
  checkVersion(config: UnitConfig): void {
    if (!isSemver(config.version)) {
      throw new AosError(
        "invalidArgument",
        `Unit config version "${config.version}" is not a semantic version`,
      );
    }
    const installed = this.#config?.version;
    if (installed === undefined) return;
    const cmp = compareSemver(config.version, installed);
    if (cmp === 0) {
      throw new AosError("alreadyExist", `Unit config version ${installed} is already installed`);
    }
    if (cmp < 0) {
      throw new AosError(
        "wrongState",
        `Unit config version ${config.version} is older than the installed ${installed}`,
      );
    }
  }

  /** The node config a node gets from the installed config (empty when none is installed). */
  nodeConfig(node: ConfigTarget): NodeConfig {
    const config = this.#config ??
      { version: "", formatVersion: "", nodes: [] };
    return selectNodeConfig(config, node);
  }

  /** {@link nodeConfig} in the placement's form. */
  placementConfig(node: ConfigTarget): PlacementNodeConfig {
    return toPlacementNodeConfig(this.nodeConfig(node));
  }

  async #needsConfig(nodeId: string, version: string): Promise<boolean> {
    const st = await this.#o.sm.getNodeConfigStatus(nodeId);
    return st.version !== version || fromErrorInfo(st.error) !== undefined ||
      st.state === "failed";
  }

  /**
   * Checks a desired config: its version, then each connected node that does not run this
   * version yet validates its node config (`CheckNodeConfig`). Changes nothing.
   */
  async checkUnitConfig(config: UnitConfig): Promise<void> {
    this.checkVersion(config);
    for (const node of this.#o.connectedNodes()) {
      if (!(await this.#needsConfig(node.nodeId, config.version))) continue;
      const nodeConfig = selectNodeConfig(config, node);
      try {
        await this.#o.sm.checkNodeConfig(
          node.nodeId,
          nodeConfigToJson(nodeConfig),
          config.version,
        );
      } catch (err) {
        const e = toAosError(err);
        throw new AosError(
          e.code,
          `Node ${node.nodeId} rejects node config of unit config ${config.version}: ${e.message}`,
          { cause: e },
        );
      }
    }
  }

  /**
   * Installs a checked config: persists it, marks it `installed`, then sets each connected
   * node's node config (`SetNodeConfig`); the first node error aborts and is thrown (the config
   * stays installed; the node gets it again when it reconnects).
   */
  async updateUnitConfig(config: UnitConfig): Promise<void> {
    this.checkVersion(config);
    await this.#o.store.save(unitConfigToJson(config));
    this.#config = config;
    this.#state = "installed";
    this.#error = undefined;
    if (this.#failedUpdate?.version === config.version) this.#failedUpdate = undefined;
    this.#changed();
    for (const node of this.#o.connectedNodes()) {
      await this.#pushTo(node, config);
    }
  }

  async #pushTo(node: ConfigTarget, config: UnitConfig): Promise<void> {
    if (!(await this.#needsConfig(node.nodeId, config.version))) return;
    try {
      await this.#o.sm.setNodeConfig(
        node.nodeId,
        nodeConfigToJson(selectNodeConfig(config, node)),
        config.version,
      );
    } catch (err) {
      const e = toAosError(err);
      throw new AosError(
        e.code,
        `Cannot set node config ${config.version} on node ${node.nodeId}: ${e.message}`,
        { cause: e },
      );
    }
  }

  /**
   * The installing step of the update manager: check, then install. A config equal to the
   * installed one is a no-op (upstream reports it `failed` with `alreadyExist`, which would
   * flag every re-sent desired status, cm.md §18 #8). Any other failure is kept as a failed
   * entry of {@link status} and rethrown.
   * @returns true when the config was installed, false when it was already installed.
   */
  async apply(config: UnitConfig): Promise<boolean> {
    try {
      await this.#smLock.run(async () => {
        await this.checkUnitConfig(config);
        await this.updateUnitConfig(config);
      });
      return true;
    } catch (err) {
      const e = toAosError(err);
      if (e.code === "alreadyExist" && this.#config?.version === config.version) {
        this.#log.info("unit config is already installed", { version: config.version });
        return false;
      }
      this.#failedUpdate = { version: config.version, error: e };
      this.#log.error("unit config update failed", { version: config.version, error: e });
      this.#changed();
      throw e;
    }
  }

  /**
   * A node's SM (re)connected: pushes its node config when the node reports another version or
   * an error. Errors are logged, not thrown (the next reconnect tries again).
   */
  async nodeConnected(node: ConfigTarget): Promise<void> {
    try {
      await this.#smLock.run(async () => {
        const config = this.#config;
        if (config !== undefined) await this.#pushTo(node, config);
      });
    } catch (err) {
      this.#log.error("cannot push node config to a reconnected node", {
        nodeId: node.nodeId,
        error: err,
      });
    }
  }
}

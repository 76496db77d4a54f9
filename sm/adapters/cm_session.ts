/**
 * The SM's session with the CM (`servicemanager.v5.SMService/RegisterSM`): connect, send
 * `sm_info` then `node_instances_status`, dispatch CM requests to handlers, reconnect with a
 * fixed back-off (`cmReconnectTimeout`, 10 s upstream) whenever the stream ends.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import {
  type InstanceStatus,
  type NodeConfigStatus,
  type SMIncomingMessages,
  type SMInfo,
  type SMOutgoingMessages,
  SMServiceClient,
  type UpdateInstances,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { AosError, sleep, toErrorInfo } from "@aos/shared/core";
import type { Logger } from "@aos/shared/logger";
import { callUnary, type ClientSecurity, createGrpcClient } from "@aos/shared/grpc";

/** What the SM does for CM requests. Handlers may throw; errors go back in `ErrorInfo`. */
export interface CmSessionHandlers {
  /** `sm_info` sent first on every connect. */
  smInfo(): Promise<SMInfo> | SMInfo;
  /** Full snapshot sent after `sm_info` and after every update batch. */
  instancesStatus(): Promise<InstanceStatus[]> | InstanceStatus[];
  /**
   * Runs an `update_instances` delta; the session sends `node_instances_status` when it
   * resolves. Called for every batch as it arrives: the handler runs them in that order.
   */
  updateInstances(update: UpdateInstances): Promise<void>;
  nodeConfigStatus(): NodeConfigStatus;
  checkNodeConfig(config: string, version: string): NodeConfigStatus;
  setNodeConfig(config: string, version: string): Promise<NodeConfigStatus>;
  /** Cloud connection state relayed by the CM. */
  connectionStatus?(connected: boolean): void;
}

/** Options of {@link CmSession}. */
export interface CmSessionOptions {
  /** `cmServerUrl`. */
  address: string;
  /** Credentials for each attempt (rebuilt every time: the `sm` cert may have changed). */
  security: () => Promise<ClientSecurity> | ClientSecurity;
  handlers: CmSessionHandlers;
  logger: Logger;
  /** Wait between attempts (default 10 s). */
  reconnectMs?: number;
}

/** Status of a failed handler call, as `NodeConfigStatus` always carries `error`. */
function configStatusError(version: string, err: unknown): NodeConfigStatus {
  return { state: "failed", version, error: toErrorInfo(err) };
}

/** The RegisterSM client with its reconnect loop. */
export class CmSession implements AsyncDisposable {
  readonly #o: CmSessionOptions;
  readonly #stop = new AbortController();
  #client: SMServiceClient | undefined;
  #stream: grpc.ClientDuplexStream<SMOutgoingMessages, SMIncomingMessages> | undefined;
  #loop: Promise<void> | undefined;
  #connectedListeners = new Set<(connected: boolean) => void>();

  constructor(options: CmSessionOptions) {
    this.#o = options;
  }

  /** Whether a stream is open. */
  get connected(): boolean {
    return this.#stream !== undefined;
  }

  /** Called on every connect (true) and disconnect (false). */
  onConnectionChange(listener: (connected: boolean) => void): () => void {
    this.#connectedListeners.add(listener);
    return () => this.#connectedListeners.delete(listener);
  }

  /** Starts connecting in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.#session(signal);
      } catch (err) {
        if (signal.aborted) break;
        this.#o.logger.warn("CM session ended", { error: err });
      }
      if (signal.aborted) break;
      await sleep(this.#o.reconnectMs ?? 10_000, signal).catch(() => {});
    }
  }

  async #session(signal: AbortSignal): Promise<void> {
    const client = await createGrpcClient(SMServiceClient, this.#o.address, {
      security: await this.#o.security(),
      logger: this.#o.logger,
    });
    this.#client = client;
    const stream = client.registerSm();
    const ended = new Promise<void>((resolve, reject) => {
      stream.on("end", () => resolve());
      stream.on("error", (err) => reject(err));
      signal.addEventListener("abort", () => stream.cancel(), { once: true });
    });
    try {
      this.#stream = stream;
      stream.on("data", (msg: SMIncomingMessages) => void this.#dispatch(msg));
      this.#write({
        SMOutgoingMessage: { $case: "smInfo", smInfo: await this.#o.handlers.smInfo() },
      });
      await this.sendNodeInstancesStatus();
      this.#o.logger.info("connected to CM", { address: this.#o.address });
      for (const l of this.#connectedListeners) l(true);
      await ended;
    } finally {
      const wasConnected = this.#stream === stream;
      this.#stream = undefined;
      this.#client = undefined;
      stream.removeAllListeners("data");
      client.close();
      if (wasConnected) { for (const l of this.#connectedListeners) l(false); }
    }
  }

  #write(msg: SMOutgoingMessages): boolean {
    const stream = this.#stream;
    if (!stream) return false;
    stream.write(msg);
    return true;
  }

  async #dispatch(msg: SMIncomingMessages): Promise<void> {
    const m = msg.SMIncomingMessage;
    const h = this.#o.handlers;
    if (!m) {
      this.#o.logger.warn("CM sent a message without content");
      return;
    }
    try {
      switch (m.$case) {
        case "getNodeConfigStatus":
          return void this.#sendConfigStatus(h.nodeConfigStatus());
        case "checkNodeConfig": {
          const { nodeConfig, version } = m.checkNodeConfig;
          let status: NodeConfigStatus;
          try {
            status = h.checkNodeConfig(nodeConfig, version);
          } catch (err) {
            status = configStatusError(version, err);
          }
          return void this.#sendConfigStatus(status);
        }
        case "setNodeConfig": {
          const { nodeConfig, version } = m.setNodeConfig;
          let status: NodeConfigStatus;
          try {
            status = await h.setNodeConfig(nodeConfig, version);
          } catch (err) {
            status = configStatusError(version, err);
          }
          return void this.#sendConfigStatus(status);
        }
        case "updateInstances":
          return await this.#update(m.updateInstances);
        case "connectionStatus":
          return h.connectionStatus?.(m.connectionStatus.cloudStatus === 1);
        default:
          // Logs, monitoring and alerts come with a later issue.
          this.#o.logger.warn("CM request not supported yet", { kind: m.$case });
      }
    } catch (err) {
      this.#o.logger.error("handling a CM message failed", { kind: m.$case, error: err });
    }
  }

  #sendConfigStatus(status: NodeConfigStatus): void {
    this.#write({
      SMOutgoingMessage: {
        $case: "nodeConfigStatus",
        nodeConfigStatus: {
          ...status,
          error: status.error ?? { aosCode: 0, exitCode: 0, message: "" },
        },
      },
    });
  }

  async #update(update: UpdateInstances): Promise<void> {
    this.#o.logger.info("update_instances received", {
      start: update.startInstances.length,
      stop: update.stopInstances.length,
    });
    // Upstream rejects a batch that overlaps a running one with wrongState and only logs it, so
    // the CM's desired set is lost; the handler (the launcher) queues batches in arrival order.
    try {
      await this.#o.handlers.updateInstances(update);
    } catch (err) {
      this.#o.logger.error("update_instances failed", { error: err });
    }
    await this.sendNodeInstancesStatus();
  }

  /** Sends the full snapshot (`node_instances_status`). */
  async sendNodeInstancesStatus(): Promise<void> {
    const instances = await this.#o.handlers.instancesStatus();
    this.#write({
      SMOutgoingMessage: { $case: "nodeInstancesStatus", nodeInstancesStatus: { instances } },
    });
  }

  /** Sends an incremental `update_instances_status`; dropped while disconnected (resynced on connect). */
  sendUpdateInstancesStatus(instances: InstanceStatus[]): boolean {
    if (!instances.length) return true;
    return this.#write({
      SMOutgoingMessage: { $case: "updateInstancesStatus", updateInstancesStatus: { instances } },
    });
  }

  /** `GetBlobsInfos`: URLs of blobs on the CM's file server, in the order of `digests`. */
  async getBlobsInfos(digests: string[]): Promise<string[]> {
    const client = this.#client;
    if (!client) throw new AosError("wrongState", "Cannot get blob URLs: not connected to CM");
    const res = await callUnary<{ digests: string[] }, { urls: string[] }>(
      client.getBlobsInfos.bind(client),
      { digests },
      { timeoutMs: 60_000 },
    );
    if (res.urls.length !== digests.length) {
      throw new AosError(
        "failed",
        `CM returned ${res.urls.length} blob URLs for ${digests.length} digests`,
      );
    }
    return res.urls;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }
}

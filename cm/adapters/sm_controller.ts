/**
 * The SM controller: CM's `servicemanager.v5.SMService` server. Each `RegisterSM` stream is bound
 * to a node by its first `sm_info`; the CM pushes `update_instances`, node-config requests and
 * cloud connection status per node, awaits the replies, and answers `GetBlobsInfos` with
 * file-server URLs.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import {
  type BlobsInfos,
  type BlobsInfosRequest,
  type InstanceStatus,
  type NodeConfigStatus,
  type SMIncomingMessages,
  type SMInfo,
  type SMOutgoingMessages,
  SMServiceService,
  type UpdateInstances,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import { AosError, fromErrorInfo } from "@aos/shared/core";
import type { GrpcService } from "@aos/shared/grpc";
import { grpcErrorFrom } from "@aos/shared/grpc";
import type { Logger } from "@aos/shared/logger";
import { parseDigest } from "@aos/shared/oci";

/** Upstream wait for a node-config or monitoring reply. */
export const SYNC_REQUEST_TIMEOUT_MS = 5_000;
/** Upstream wait for `node_instances_status` after `update_instances`. */
export const UPDATE_TIMEOUT_MS = 10 * 60_000;

type Stream = grpc.ServerDuplexStream<SMOutgoingMessages, SMIncomingMessages>;

/** Events the controller reports to the rest of CM. */
export interface SmControllerListener {
  /** A node's SM connected (`sm_info`) or disconnected (`undefined`). */
  smInfo?(nodeId: string, info: SMInfo | undefined): void;
  /** Full snapshot of a node's instances. */
  nodeInstancesStatus?(nodeId: string, instances: InstanceStatus[]): void;
  /** Incremental instance changes. */
  updateInstancesStatus?(nodeId: string, instances: InstanceStatus[]): void;
  /** Messages this issue does not handle yet (logs, monitoring, alerts). */
  other?(nodeId: string, msg: SMOutgoingMessages): void;
}

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: unknown): void;
}

class NodeSession {
  readonly nodeId: string;
  info: SMInfo;
  readonly stream: Stream;
  configWaiter: Waiter<NodeConfigStatus> | undefined;
  snapshotWaiters: Waiter<InstanceStatus[]>[] = [];
  /** The SM's connect snapshot (the `node_instances_status` after `sm_info`) has arrived. */
  connectSnapshotSeen = false;
  /** Updates held until the connect snapshot arrives: their waiter and the write. */
  heldUpdates: { waiter: Waiter<InstanceStatus[]>; send: () => void }[] = [];

  constructor(nodeId: string, info: SMInfo, stream: Stream) {
    this.nodeId = nodeId;
    this.info = info;
    this.stream = stream;
  }

  /** Rejects everything pending on this stream (it ended or was replaced). */
  failPending(err: AosError): void {
    this.configWaiter?.reject(err);
    this.configWaiter = undefined;
    for (const w of this.snapshotWaiters.splice(0)) w.reject(err);
    for (const h of this.heldUpdates.splice(0)) h.waiter.reject(err);
  }
}

/** Options of {@link SmController}. */
export interface SmControllerOptions {
  /** Base URL of the blob file server, e.g. `http://localhost:8094/blobs`. */
  blobBaseUrl: string;
  /** Whether a blob is stored (GetBlobsInfos fails with INTERNAL for a missing one, as upstream). */
  hasBlob: (digest: string) => Promise<boolean>;
  listener: SmControllerListener;
  logger: Logger;
  syncTimeoutMs?: number;
  updateTimeoutMs?: number;
}

/** Node sessions and the SMService implementation. */
export class SmController {
  readonly #o: SmControllerOptions;
  readonly #nodes = new Map<string, NodeSession>();
  #cloudConnected = false;

  constructor(options: SmControllerOptions) {
    this.#o = options;
  }

  /** The service to register on the CM gRPC server. */
  get service(): GrpcService {
    return {
      definition: SMServiceService,
      implementation: {
        registerSm: (call: Stream) => this.#register(call),
        getBlobsInfos: (
          call: grpc.ServerUnaryCall<BlobsInfosRequest, BlobsInfos>,
          cb: grpc.sendUnaryData<BlobsInfos>,
        ) => {
          this.#blobsInfos(call.request).then((r) => cb(null, r), (err) => cb(grpcErrorFrom(err)));
        },
      },
    };
  }

  /** IDs of nodes whose SM is connected. */
  get connectedNodes(): string[] {
    return [...this.#nodes.keys()];
  }

  /** The `sm_info` of a connected node. */
  smInfo(nodeId: string): SMInfo | undefined {
    return this.#nodes.get(nodeId)?.info;
  }

  async #blobsInfos(req: BlobsInfosRequest): Promise<BlobsInfos> {
    if (req.digests.length > 1000) {
      throw new AosError("outOfRange", "Too many digests in one request");
    }
    const urls: string[] = [];
    for (const d of req.digests) {
      const { algorithm, hex } = parseDigest(d);
      if (!(await this.#o.hasBlob(d))) throw new AosError("notFound", `Blob ${d} is not available`);
      urls.push(`${this.#o.blobBaseUrl}/${algorithm}/${hex}`);
    }
    return { urls };
  }

  #register(call: Stream): void {
    let session: NodeSession | undefined;
    // Upstream sends the cloud status as soon as the stream opens, before knowing the node.
    call.write({
      SMIncomingMessage: {
        $case: "connectionStatus",
        connectionStatus: { cloudStatus: this.#cloudConnected ? 1 : 0 },
      },
    });
    call.on("data", (msg: SMOutgoingMessages) => {
      const m = msg.SMOutgoingMessage;
      if (!m) return this.#o.logger.warn("SM sent a message without content");
      if (m.$case === "smInfo") {
        const nodeId = m.smInfo.nodeId;
        if (!nodeId || nodeId.length > 256) {
          this.#o.logger.warn("SM sent sm_info without a valid node ID; closing the stream");
          call.destroy(new Error("invalid node id"));
          return;
        }
        if (session && session.nodeId !== nodeId) {
          this.#o.logger.warn("SM changed its node ID on an open stream; ignored", { nodeId });
          return;
        }
        if (session) {
          // Re-sent on the same stream: the node's pending requests stay with it.
          session.info = m.smInfo;
        } else {
          const old = this.#nodes.get(nodeId);
          if (old && old.stream !== call) {
            // Its close handler no longer finds it in the map: fail its requests here.
            old.failPending(
              new AosError("canceled", `SM of node ${nodeId} reconnected on a new stream`),
            );
            old.stream.end();
          }
          session = new NodeSession(nodeId, m.smInfo, call);
          this.#nodes.set(nodeId, session);
        }
        this.#o.logger.info("SM connected", { nodeId, runtimes: m.smInfo.runtimes.length });
        this.#o.listener.smInfo?.(nodeId, m.smInfo);
        return;
      }
      if (!session) {
        this.#o.logger.warn("SM message before sm_info dropped", { kind: m.$case });
        return;
      }
      this.#handle(session, msg);
    });
    const close = () => {
      if (!session) return;
      session.failPending(new AosError("canceled", `SM of node ${session.nodeId} disconnected`));
      if (this.#nodes.get(session.nodeId) === session) {
        this.#nodes.delete(session.nodeId);
        this.#o.logger.info("SM disconnected", { nodeId: session.nodeId });
        this.#o.listener.smInfo?.(session.nodeId, undefined);
      }
    };
    call.on("end", () => {
      close();
      call.end();
    });
    call.on("error", close);
    call.on("close", close);
  }

  #handle(session: NodeSession, msg: SMOutgoingMessages): void {
    const m = msg.SMOutgoingMessage!;
    switch (m.$case) {
      case "nodeConfigStatus": {
        const w = session.configWaiter;
        session.configWaiter = undefined;
        if (w) w.resolve(m.nodeConfigStatus);
        else {this.#o.logger.error("unsolicited node_config_status dropped", {
            nodeId: session.nodeId,
          });}
        return;
      }
      case "nodeInstancesStatus":
        if (!session.connectSnapshotSeen) {
          // The connect snapshot ends no batch: the updates held for it go out now.
          session.connectSnapshotSeen = true;
          this.#o.listener.nodeInstancesStatus?.(session.nodeId, m.nodeInstancesStatus.instances);
          for (const h of session.heldUpdates.splice(0)) h.send();
          return;
        }
        for (const w of session.snapshotWaiters.splice(0)) {
          w.resolve(m.nodeInstancesStatus.instances);
        }
        this.#o.listener.nodeInstancesStatus?.(session.nodeId, m.nodeInstancesStatus.instances);
        return;
      case "updateInstancesStatus":
        this.#o.listener.updateInstancesStatus?.(session.nodeId, m.updateInstancesStatus.instances);
        return;
      default:
        this.#o.listener.other?.(session.nodeId, msg);
    }
  }

  #session(nodeId: string): NodeSession {
    const s = this.#nodes.get(nodeId);
    if (!s) throw new AosError("notFound", `SM of node "${nodeId}" is not connected`);
    return s;
  }

  /** `register` may return an undo, run on timeout so a late reply or send finds nothing. */
  #withTimeout<T>(
    what: string,
    ms: number,
    register: (w: Waiter<T>) => (() => void) | void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let undo: (() => void) | void = undefined;
      const timer = setTimeout(() => {
        undo?.();
        reject(new AosError("timeout", `${what}: no reply within ${ms} ms`));
      }, ms);
      undo = register({
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  async #configRequest(
    nodeId: string,
    msg: SMIncomingMessages,
    what: string,
  ): Promise<NodeConfigStatus> {
    const s = this.#session(nodeId);
    if (s.configWaiter) {
      throw new AosError(
        "wrongState",
        `${what}: another node config request is pending on ${nodeId}`,
      );
    }
    const reply = this.#withTimeout<NodeConfigStatus>(
      `${what} on ${nodeId}`,
      this.#o.syncTimeoutMs ?? SYNC_REQUEST_TIMEOUT_MS,
      (w) => {
        s.configWaiter = w;
      },
    );
    s.stream.write(msg);
    try {
      return await reply;
    } finally {
      if (s.configWaiter) s.configWaiter = undefined;
    }
  }

  /** `get_node_config_status`. */
  getNodeConfigStatus(nodeId: string): Promise<NodeConfigStatus> {
    return this.#configRequest(nodeId, {
      SMIncomingMessage: { $case: "getNodeConfigStatus", getNodeConfigStatus: {} },
    }, "Get node config status");
  }

  /** `check_node_config`; throws the SM's error. */
  async checkNodeConfig(nodeId: string, nodeConfig: string, version: string): Promise<void> {
    const st = await this.#configRequest(nodeId, {
      SMIncomingMessage: { $case: "checkNodeConfig", checkNodeConfig: { nodeConfig, version } },
    }, "Check node config");
    const err = fromErrorInfo(st.error);
    if (err) throw err;
  }

  /** `set_node_config`; throws the SM's error. */
  async setNodeConfig(nodeId: string, nodeConfig: string, version: string): Promise<void> {
    const st = await this.#configRequest(nodeId, {
      SMIncomingMessage: { $case: "setNodeConfig", setNodeConfig: { nodeConfig, version } },
    }, "Set node config");
    const err = fromErrorInfo(st.error);
    if (err) throw err;
  }

  /**
   * Pushes `update_instances` to a node and resolves with its `node_instances_status`, which
   * marks the end of the batch. Replies carry no id: an update is written only after the SM's
   * connect snapshot arrived, else that snapshot (sent before the SM read the update) would be
   * taken for the end of the batch and its instances for never started.
   */
  updateInstances(nodeId: string, update: UpdateInstances): Promise<InstanceStatus[]> {
    const s = this.#session(nodeId);
    return this.#withTimeout<InstanceStatus[]>(
      `Update instances on ${nodeId}`,
      this.#o.updateTimeoutMs ?? UPDATE_TIMEOUT_MS,
      (waiter) => {
        const send = () => {
          s.snapshotWaiters.push(waiter);
          s.stream.write({
            SMIncomingMessage: { $case: "updateInstances", updateInstances: update },
          });
        };
        const held = { waiter, send };
        if (s.connectSnapshotSeen) send();
        else s.heldUpdates.push(held);
        // Timed out: a held update is never sent late, and a later snapshot ends no batch of it.
        return () => {
          s.heldUpdates = s.heldUpdates.filter((h) => h !== held);
          s.snapshotWaiters = s.snapshotWaiters.filter((w) => w !== waiter);
        };
      },
    );
  }

  /** Tells every SM whether the cloud is connected (and new SMs when they connect). */
  setCloudConnected(connected: boolean): void {
    this.#cloudConnected = connected;
    for (const s of this.#nodes.values()) {
      s.stream.write({
        SMIncomingMessage: {
          $case: "connectionStatus",
          connectionStatus: { cloudStatus: connected ? 1 : 0 },
        },
      });
    }
  }

  /** Ends every stream. */
  close(): void {
    const err = new AosError("canceled", "SM controller closed");
    for (const s of this.#nodes.values()) {
      s.failPending(err);
      s.stream.end();
    }
    this.#nodes.clear();
  }
}

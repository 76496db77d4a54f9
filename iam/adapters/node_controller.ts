/**
 * Main-node side of `RegisterNode`: admits secondary IAMs, links each node ID to its newest
 * stream, keeps the registry's connected flag, and forwards requests to a node, waiting for
 * the response of the matching oneof case (upstream correlates by case only, so at most one
 * request of each kind is outstanding per node).
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type {
  IAMIncomingMessages,
  IAMOutgoingMessages,
  NodeInfo,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import { AosError } from "@aos/shared/errors";
import { Mutex } from "@aos/shared/core";
import { grpcErrorFrom } from "@aos/shared/grpc";
import type { Logger } from "@aos/shared/logger";
import type { NodeManager } from "../core/node_manager.ts";
import { nodeInfoMessage, parseRequest } from "./validation.ts";

/** A message main sends to a secondary. */
export type IncomingMessage = NonNullable<IAMIncomingMessages["IAMIncomingMessage"]>;
/** A message a secondary sends to main. */
export type OutgoingMessage = NonNullable<IAMOutgoingMessages["IAMOutgoingMessage"]>;
/** The oneof case of a request to a secondary. */
export type RequestCase = IncomingMessage["$case"];

/** The response case that answers each request case. */
export const RESPONSE_CASE = {
  startProvisioningRequest: "startProvisioningResponse",
  getCertTypesRequest: "certTypesResponse",
  finishProvisioningRequest: "finishProvisioningResponse",
  deprovisionRequest: "deprovisionResponse",
  pauseNodeRequest: "pauseNodeResponse",
  resumeNodeRequest: "resumeNodeResponse",
  createKeyRequest: "createKeyResponse",
  applyCertRequest: "applyCertResponse",
} as const satisfies Record<RequestCase, OutgoingMessage["$case"]>;

type Payload<U, K extends string> = U extends { $case: K } ? U[K & keyof U] : never;
/** Payload of a request case. */
export type RequestPayload<C extends RequestCase> = Payload<IncomingMessage, C>;
/** Payload of the response to a request case. */
export type ResponsePayload<C extends RequestCase> = Payload<
  OutgoingMessage,
  typeof RESPONSE_CASE[C]
>;

/** Which server a stream arrived on: it decides which node states are admitted. */
export type ServerKind = "public" | "protected";

/**
 * A forwarded request could not be delivered or answered (node not connected, stream lost,
 * timeout). Handlers answer it with a gRPC status rather than an `ErrorInfo`, as upstream.
 */
export class NodeUnreachableError extends AosError {
  /** `code`: why the node could not be reached. */
  constructor(code: "notFound" | "timeout" | "failed", message: string) {
    super(code, message);
    this.name = "NodeUnreachableError";
  }
}

/** Response timeouts of forwarded requests. */
export interface ForwardTimeouts {
  /** Pause, resume, cert types, create key, apply cert (upstream 1 min). */
  shortMs: number;
  /** Start/finish provisioning and deprovision (upstream 5 min). */
  longMs: number;
  /**
   * How long a request for a node that is not connected waits for it to (re)connect;
   * covers the seconds a secondary needs after IAM restarts its servers (upstream retries
   * three times 10 s apart).
   */
  connectWaitMs: number;
}

/** Upstream timeouts. */
export const DEFAULT_FORWARD_TIMEOUTS: ForwardTimeouts = {
  shortMs: 60_000,
  longMs: 5 * 60_000,
  connectWaitMs: 10_000,
};

const LONG_REQUESTS = new Set<RequestCase>([
  "startProvisioningRequest",
  "finishProvisioningRequest",
  "deprovisionRequest",
]);

/** Options of {@link NodeController}. */
export interface NodeControllerOptions {
  /** This (main) node's ID: no secondary may register under it. */
  ownNodeId: string;
  nodes: NodeManager;
  logger: Logger;
  timeouts?: Partial<ForwardTimeouts>;
}

type Call = grpc.ServerDuplexStream<IAMOutgoingMessages, IAMIncomingMessages>;

interface Pending {
  resolve: (payload: unknown) => void;
  reject: (err: unknown) => void;
}

class NodeStream {
  readonly call: Call;
  readonly server: ServerKind;
  nodeId: string | undefined;
  readonly pending = new Map<string, Pending>();
  readonly locks = new Map<RequestCase, Mutex>();
  closed = false;

  constructor(call: Call, server: ServerKind) {
    this.call = call;
    this.server = server;
  }

  lock(kind: RequestCase): Mutex {
    let m = this.locks.get(kind);
    if (!m) this.locks.set(kind, m = new Mutex());
    return m;
  }

  failPending(err: AosError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** Registers secondary nodes and forwards requests to them. */
export class NodeController {
  readonly #ownNodeId: string;
  readonly #nodes: NodeManager;
  readonly #logger: Logger;
  readonly #timeouts: ForwardTimeouts;
  readonly #streams = new Set<NodeStream>();
  readonly #links = new Map<string, NodeStream>();
  readonly #linkWaiters = new Set<() => void>();

  constructor(options: NodeControllerOptions) {
    this.#ownNodeId = options.ownNodeId;
    this.#nodes = options.nodes;
    this.#logger = options.logger.child({ module: "nodes" });
    this.#timeouts = { ...DEFAULT_FORWARD_TIMEOUTS, ...options.timeouts };
  }

  /** Whether `nodeId` has a live stream. */
  isLinked(nodeId: string): boolean {
    return this.#links.has(nodeId);
  }

  /** The `RegisterNode` handler for a server of the given kind. */
  handler(
    server: ServerKind,
  ): grpc.handleBidiStreamingCall<IAMOutgoingMessages, IAMIncomingMessages> {
    return (call) => this.#accept(call, server);
  }

  #accept(call: Call, server: ServerKind): void {
    const stream = new NodeStream(call, server);
    this.#streams.add(stream);
    this.#logger.debug("node stream opened", { server, peer: call.getPeer() });
    call.on("data", (msg: IAMOutgoingMessages) => {
      try {
        this.#onMessage(stream, msg);
      } catch (err) {
        this.#logger.warn("closing node stream", { nodeId: stream.nodeId, error: err });
        this.#fail(stream, err);
      }
    });
    const gone = () => this.#drop(stream);
    call.on("end", () => {
      this.#drop(stream);
      try {
        call.end();
      } catch {
        // Already ended.
      }
    });
    call.on("cancelled", gone);
    call.on("error", gone);
    call.on("close", gone);
  }

  #onMessage(stream: NodeStream, msg: IAMOutgoingMessages): void {
    const m = msg.IAMOutgoingMessage;
    if (!m) return;
    if (m.$case === "nodeInfo") {
      this.#onNodeInfo(stream, m.nodeInfo);
      return;
    }
    const pending = stream.pending.get(m.$case);
    if (!pending) {
      this.#logger.warn("ignoring an unrequested response", {
        nodeId: stream.nodeId,
        kind: m.$case,
      });
      return;
    }
    stream.pending.delete(m.$case);
    pending.resolve((m as Record<string, unknown>)[m.$case]);
  }

  #onNodeInfo(stream: NodeStream, info: NodeInfo): void {
    const valid = parseRequest(nodeInfoMessage, info, "RegisterNode node_info");
    if (valid.nodeId === this.#ownNodeId) {
      throw new AosError("invalidArgument", `Node ID ${valid.nodeId} is the main node's own ID`);
    }
    if (stream.nodeId === undefined) {
      // Upstream keeps a refused stream open but unlinked; ending it with a status tells the
      // secondary why, and it retries on its own schedule.
      const wantPublic = valid.state === "unprovisioned";
      if (wantPublic !== (stream.server === "public")) {
        throw new AosError(
          "wrongState",
          `Node ${valid.nodeId} is ${valid.state}: it must register on the ${
            wantPublic ? "public" : "protected"
          } server`,
        );
      }
      stream.nodeId = valid.nodeId;
      const older = this.#links.get(valid.nodeId);
      this.#links.set(valid.nodeId, stream);
      if (older) older.failPending(this.#unreachable(valid.nodeId, "replaced by a newer stream"));
      this.#logger.info("node registered", {
        nodeId: valid.nodeId,
        state: valid.state,
        server: stream.server,
      });
      for (const wake of this.#linkWaiters) wake();
    } else if (stream.nodeId !== valid.nodeId) {
      throw new AosError(
        "invalidArgument",
        `Stream of node ${stream.nodeId} sent node info of ${valid.nodeId}`,
      );
    }
    this.#nodes.setNodeInfo(info, true);
  }

  #unreachable(nodeId: string, why: string): NodeUnreachableError {
    return new NodeUnreachableError("failed", `Node ${nodeId}: ${why}`);
  }

  #fail(stream: NodeStream, err: unknown): void {
    this.#drop(stream);
    try {
      stream.call.emit("error", grpcErrorFrom(err));
    } catch {
      // The stream is already gone.
    }
  }

  #drop(stream: NodeStream): void {
    if (stream.closed) return;
    stream.closed = true;
    this.#streams.delete(stream);
    const id = stream.nodeId;
    stream.failPending(this.#unreachable(id ?? "?", "stream closed"));
    if (id !== undefined && this.#links.get(id) === stream) {
      this.#links.delete(id);
      this.#nodes.setConnected(id, false);
      this.#logger.info("node stream closed", { nodeId: id });
    }
  }

  async #waitForLink(nodeId: string, signal?: AbortSignal): Promise<NodeStream> {
    const deadline = Date.now() + this.#timeouts.connectWaitMs;
    for (;;) {
      const stream = this.#links.get(nodeId);
      if (stream) return stream;
      const left = deadline - Date.now();
      if (left <= 0 || signal?.aborted) {
        throw new NodeUnreachableError("notFound", `Node ${nodeId} is not connected`);
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#linkWaiters.delete(done);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#linkWaiters.add(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  /**
   * Sends `payload` as a `kind` request to `nodeId` and resolves with the payload of the
   * matching response. Delivery failures reject with {@link NodeUnreachableError}.
   */
  async forward<C extends RequestCase>(
    nodeId: string,
    kind: C,
    payload: RequestPayload<C>,
    signal?: AbortSignal,
  ): Promise<ResponsePayload<C>> {
    const stream = await this.#waitForLink(nodeId, signal);
    return await stream.lock(kind).run(() => {
      if (stream.closed) throw this.#unreachable(nodeId, "stream closed");
      const responseCase = RESPONSE_CASE[kind];
      const timeoutMs = LONG_REQUESTS.has(kind) ? this.#timeouts.longMs : this.#timeouts.shortMs;
      return new Promise<ResponsePayload<C>>((resolve, reject) => {
        const timer = setTimeout(() => {
          stream.pending.delete(responseCase);
          reject(
            new NodeUnreachableError(
              "timeout",
              `Node ${nodeId} did not answer ${kind} within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
        stream.pending.set(responseCase, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as ResponsePayload<C>);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        const message = {
          IAMIncomingMessage: { $case: kind, [kind]: payload } as unknown as IncomingMessage,
        };
        try {
          stream.call.write(message);
        } catch (err) {
          stream.pending.delete(responseCase);
          clearTimeout(timer);
          reject(this.#unreachable(nodeId, `cannot send ${kind}: ${(err as Error).message}`));
        }
        this.#logger.debug("request forwarded", { nodeId, kind });
      });
    });
  }

  /** Ends every node stream with status OK (servers stop or restart). */
  closeAll(): void {
    for (const stream of [...this.#streams]) {
      this.#drop(stream);
      try {
        stream.call.end();
      } catch {
        // Already gone.
      }
    }
    for (const wake of this.#linkWaiters) wake();
  }
}

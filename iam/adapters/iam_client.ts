/**
 * Secondary-node side of `RegisterNode`: keeps one stream to the main IAM up (dialling again
 * with back-off, forever, until stopped), announces this node with `node_info`, and answers
 * the main node's requests through the local provision manager, which enforces the state
 * transitions. After a pause or resume the new `node_info` goes out before the response.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import {
  type IAMIncomingMessages,
  IAMPublicNodesServiceClient,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import { backoffDelay, Mutex, sleep } from "@aos/shared/core";
import { AosError, toErrorInfo } from "@aos/shared/errors";
import { type ClientSecurity, createGrpcClient } from "@aos/shared/grpc";
import type { Logger } from "@aos/shared/logger";
import type { CurrentNode } from "../core/current_node.ts";
import type { ProvisionManager } from "../core/provision_manager.ts";
import { dialAddress } from "./address.ts";
import type { IncomingMessage, OutgoingMessage } from "./node_controller.ts";
import {
  applyCertRequest,
  createKeyRequest,
  MAX_MESSAGE_BYTES,
  nodeRequest,
  parseRequest,
  passwordRequest,
} from "./validation.ts";
import { certInfoToWire } from "./wire.ts";

/** What answering the main node's requests needs. */
export interface MainRequestDeps {
  node: CurrentNode;
  provisioning: ProvisionManager;
}

function checkNodeId(d: MainRequestDeps, nodeId: string, what: string): void {
  if (nodeId !== "" && nodeId !== d.node.nodeId) {
    throw new AosError(
      "invalidArgument",
      `${what} for node ${nodeId} reached node ${d.node.nodeId}`,
    );
  }
}

/**
 * Runs one request of the main node and returns the messages to send back: the response of
 * the matching case (errors in its `error`), preceded by `node_info` after a successful pause
 * or resume.
 */
export async function answerMainRequest(
  m: IncomingMessage,
  d: MainRequestDeps,
): Promise<OutgoingMessage[]> {
  const pm = d.provisioning;
  const attempt = async (fn: () => Promise<void>) => {
    try {
      await fn();
      return undefined;
    } catch (err) {
      return toErrorInfo(err);
    }
  };
  switch (m.$case) {
    case "getCertTypesRequest":
      // The response has no error field: an unknown node ID gets no types.
      return [{
        $case: "certTypesResponse",
        certTypesResponse: {
          types: m.getCertTypesRequest.nodeId === "" ||
              m.getCertTypesRequest.nodeId === d.node.nodeId
            ? pm.getCertTypes()
            : [],
        },
      }];
    case "startProvisioningRequest": {
      const error = await attempt(async () => {
        const r = parseRequest(passwordRequest, m.startProvisioningRequest, "StartProvisioning");
        checkNodeId(d, r.nodeId, "StartProvisioning");
        await pm.startProvisioning(r.password);
      });
      return [{ $case: "startProvisioningResponse", startProvisioningResponse: { error } }];
    }
    case "finishProvisioningRequest": {
      const error = await attempt(async () => {
        const r = parseRequest(passwordRequest, m.finishProvisioningRequest, "FinishProvisioning");
        checkNodeId(d, r.nodeId, "FinishProvisioning");
        await pm.finishProvisioning(r.password);
      });
      return [{ $case: "finishProvisioningResponse", finishProvisioningResponse: { error } }];
    }
    case "deprovisionRequest": {
      const error = await attempt(async () => {
        const r = parseRequest(passwordRequest, m.deprovisionRequest, "Deprovision");
        checkNodeId(d, r.nodeId, "Deprovision");
        await pm.deprovision(r.password);
      });
      return [{ $case: "deprovisionResponse", deprovisionResponse: { error } }];
    }
    case "pauseNodeRequest":
    case "resumeNodeRequest": {
      const pause = m.$case === "pauseNodeRequest";
      const error = await attempt(async () => {
        const req = pause ? m.pauseNodeRequest : m.resumeNodeRequest;
        const r = parseRequest(nodeRequest, req, pause ? "PauseNode" : "ResumeNode");
        checkNodeId(d, r.nodeId, pause ? "PauseNode" : "ResumeNode");
        await (pause ? pm.pause() : pm.resume());
      });
      const response: OutgoingMessage = pause
        ? { $case: "pauseNodeResponse", pauseNodeResponse: { error } }
        : { $case: "resumeNodeResponse", resumeNodeResponse: { error } };
      return error ? [response] : [{ $case: "nodeInfo", nodeInfo: d.node.info }, response];
    }
    case "createKeyRequest": {
      const req = m.createKeyRequest;
      let csr = "";
      const error = await attempt(async () => {
        const r = parseRequest(createKeyRequest, req, "CreateKey");
        checkNodeId(d, r.nodeId, "CreateKey");
        csr = await pm.createKey(r.type, r.subject, r.password);
      });
      return [{
        $case: "createKeyResponse",
        createKeyResponse: { nodeId: d.node.nodeId, type: req.type, csr, error },
      }];
    }
    case "applyCertRequest": {
      let certInfo;
      const error = await attempt(async () => {
        const r = parseRequest(applyCertRequest, m.applyCertRequest, "ApplyCert");
        checkNodeId(d, r.nodeId, "ApplyCert");
        certInfo = certInfoToWire(await pm.applyCert(r.type, r.cert));
      });
      return [{
        $case: "applyCertResponse",
        applyCertResponse: { nodeId: d.node.nodeId, certInfo, error },
      }];
    }
  }
}

/** Options of {@link SecondaryIamClient}. */
export interface SecondaryIamClientOptions extends MainRequestDeps {
  /** The main IAM's URL (public while provisioning, protected otherwise). */
  url: string;
  /** Resolved before every dial (normal mode: the newest own certificate). */
  security: () => Promise<ClientSecurity>;
  logger: Logger;
  /** First and longest wait between dials, ms (default 1 000 and 10 000). */
  reconnect?: { initialMs?: number; maxMs?: number };
  /** How long a dial waits for the channel to be ready, ms (upstream 3 000). */
  connectTimeoutMs?: number;
}

type Stream = grpc.ClientDuplexStream<
  { IAMOutgoingMessage: OutgoingMessage | undefined },
  IAMIncomingMessages
>;

/** Keeps this secondary node registered with the main IAM. */
export class SecondaryIamClient implements AsyncDisposable {
  readonly #o: SecondaryIamClientOptions;
  readonly #abort = new AbortController();
  readonly #mutex = new Mutex();
  readonly #listeners = new Set<(connected: boolean) => void>();
  #loop: Promise<void> = Promise.resolve();
  #call: Stream | undefined;
  #connected = false;

  private constructor(o: SecondaryIamClientOptions) {
    this.#o = o;
  }

  /** Starts dialling in the background. */
  static start(o: SecondaryIamClientOptions): SecondaryIamClient {
    const c = new SecondaryIamClient(o);
    c.#loop = c.#run();
    return c;
  }

  /** Whether the stream to the main IAM is up. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Called whenever the stream goes up or down. */
  onConnectedChange(listener: (connected: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Drops the current stream so the next dial uses fresh credentials (own cert changed). */
  reconnect(): void {
    this.#call?.cancel();
  }

  #setConnected(connected: boolean): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    this.#o.logger.info(connected ? "connected to main IAM" : "disconnected from main IAM", {
      url: this.#o.url,
    });
    for (const l of this.#listeners) l(connected);
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    const initial = this.#o.reconnect?.initialMs ?? 1_000;
    const max = Math.max(initial, this.#o.reconnect?.maxMs ?? 10_000);
    let attempt = 0;
    while (!signal.aborted) {
      let upSince: number | undefined;
      try {
        await this.#session(() => upSince = Date.now());
      } catch (err) {
        if (signal.aborted) break;
        this.#o.logger.warn("main IAM stream failed", { url: this.#o.url, error: err });
      }
      this.#setConnected(false);
      if (signal.aborted) break;
      // A stream that stayed up a while starts the back-off over.
      if (upSince !== undefined && Date.now() - upSince >= max) attempt = 0;
      attempt++;
      await sleep(backoffDelay(attempt, initial, max), signal).catch(() => {});
    }
  }

  async #session(onUp: () => void): Promise<void> {
    const signal = this.#abort.signal;
    const url = dialAddress(this.#o.url);
    const client = await createGrpcClient(IAMPublicNodesServiceClient, url, {
      security: await this.#o.security(),
      options: { "grpc.max_receive_message_length": MAX_MESSAGE_BYTES },
      logger: this.#o.logger,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const deadline = new Date(Date.now() + (this.#o.connectTimeoutMs ?? 3_000));
        client.waitForReady(deadline, (err) => err ? reject(err) : resolve());
      });
      signal.throwIfAborted();
      const call = client.registerNode() as unknown as Stream;
      this.#call = call;
      await new Promise<void>((resolve) => {
        let finished = false;
        const finish = (err?: unknown) => {
          if (finished) return;
          finished = true;
          signal.removeEventListener("abort", cancel);
          if (err && !(err instanceof Error && /Cancelled/.test(err.message))) {
            this.#o.logger.warn("main IAM stream ended", { error: err });
          }
          resolve();
        };
        const cancel = () => call.cancel();
        signal.addEventListener("abort", cancel, { once: true });
        call.on("data", (msg: IAMIncomingMessages) => this.#onRequest(call, msg));
        call.on("error", finish);
        call.on("end", () => finish());
        call.on("close", () => finish());
        call.write({ IAMOutgoingMessage: { $case: "nodeInfo", nodeInfo: this.#o.node.info } });
        onUp();
        this.#setConnected(true);
      });
    } finally {
      this.#call = undefined;
      client.close();
    }
  }

  #onRequest(call: Stream, msg: IAMIncomingMessages): void {
    const m = msg.IAMIncomingMessage;
    if (!m) return;
    this.#o.logger.info("request from main IAM", { kind: m.$case });
    // One request at a time: provisioning steps must not interleave.
    this.#mutex.run(async () => {
      const replies = await answerMainRequest(m, this.#o);
      for (const reply of replies) {
        try {
          call.write({ IAMOutgoingMessage: reply });
        } catch (err) {
          // The stream broke meanwhile; main times the request out and may ask again.
          this.#o.logger.warn("cannot send reply to main IAM", { kind: reply.$case, error: err });
          return;
        }
      }
    }).catch((err) =>
      this.#o.logger.error("cannot answer main IAM", { kind: m.$case, error: err })
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#abort.abort(new AosError("canceled", "IAM client stopped"));
    this.#call?.cancel();
    await this.#loop;
    // Let a request that is running finish before the provision manager goes away.
    await this.#mutex.run(() => {});
  }
}

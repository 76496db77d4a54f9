/**
 * The cloud link: discovery, WSS session with mTLS, acknowledged delivery with a durable outbox,
 * request/response pairing and reconnection, as the AosCore CM does it (protocol digest §1, §2,
 * §4) plus what it lacks: a ping watchdog, inbound de-duplication and an egress allow-list.
 * @module
 */
import {
  AosError,
  type Clock,
  type Logger,
  nullLogger,
  sleep as realSleep,
  systemClock,
} from "@aos/shared/core";
import type { Database } from "@aos/shared/db";
import {
  buildAck,
  buildEnvelope,
  buildRequestBlobUrls,
  type CloudHeader,
  type CloudToUnitMessage,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeEnvelope,
  type MessageOf,
  type MessageType,
  parseCloudMessage,
  type ParsedCloudMessage,
  type WireData,
} from "@aos/shared/cloudprotocol";
import { hostAllowed, type HostPattern, linkAllowList, urlHostPort } from "./allowed_hosts.ts";
import { chooseDiscoveryUrl, type CloudCredentials, requestDiscovery } from "./discovery.ts";
import { Outbox, type OutboxLimits } from "./outbox.ts";
import { RecentSet } from "./recent_set.ts";
import { openWs, WS_OPEN, wsBytes, type WsClient, type WsData } from "./_ws.ts";

/** Message types the cloud sends to the unit (anything else received is dropped). */
export const CLOUD_TO_UNIT_TYPES = [
  "desiredStatus",
  "blobUrls",
  "stateAcceptance",
  "updateState",
  "requestLog",
  "overrideEnvVars",
  "renewCertificatesNotification",
  "issuedUnitCertificates",
  "startProvisioningRequest",
  "finishProvisioningRequest",
  "deprovisioningRequest",
  "ack",
  "nack",
] as const satisfies readonly MessageType[];

/** Timing of the link; defaults are AosCore's (§4) plus our watchdog. */
export interface CloudLinkTiming {
  /** `cloudResponseWaitTimeout`: ack wait per transmission and request/response wait (10 s). */
  responseWaitMs: number;
  /** Resends after the first transmission before a message is dropped (3). */
  maxResends: number;
  /** First reconnect delay when discovery gave no `nextRequestDelay` (1 s). */
  reconnectInitialMs: number;
  /** Cap of the doubling reconnect delay (10 min). */
  reconnectMaxMs: number;
  /** Attempts per back-off cycle before a new cycle starts (5). */
  reconnectTries: number;
  /** A session shorter than this counts as a failed attempt, so a peer that accepts and drops
   * at once cannot make the link spin (AosCore would reconnect immediately) (1 s). */
  minSessionMs: number;
  /** Deadline of the discovery POST and of the WebSocket upgrade (30 s). */
  connectTimeoutMs: number;
  /** Deadline of one frame write before the connection is dropped (30 s). */
  sendTimeoutMs: number;
  /** WebSocket ping period (30 s). */
  pingIntervalMs: number;
  /** How long after a ping nothing may arrive before the connection is dropped (20 s). */
  pongTimeoutMs: number;
  /** Cap of a nack's `retryAfter`, so a bogus value cannot park a message for ever (10 min). */
  maxNackDelayMs: number;
  /** How long `close()` waits for the close handshake before cutting the socket (1 s). */
  closeTimeoutMs: number;
}

/** AosCore's timing (digest §4, cm.md §17) plus the watchdog. */
export const DEFAULT_CLOUD_LINK_TIMING: CloudLinkTiming = {
  responseWaitMs: 10_000,
  maxResends: 3,
  reconnectInitialMs: 1_000,
  reconnectMaxMs: 600_000,
  reconnectTries: 5,
  minSessionMs: 1_000,
  connectTimeoutMs: 30_000,
  sendTimeoutMs: 30_000,
  pingIntervalMs: 30_000,
  pongTimeoutMs: 20_000,
  maxNackDelayMs: 600_000,
  closeTimeoutMs: 1_000,
};

/** The `cm.cfg` keys the link reads. */
export interface CloudLinkConfig {
  /** Fallback discovery URL and source of the discovery path. */
  serviceDiscoveryUrl: string;
  /** Discovery URL that wins over the certificate's. */
  overrideServiceDiscoveryUrl: string;
  /** Egress allow-list (`host`, `*.domain`, optional `:port`). */
  allowedHosts: readonly string[];
  /** Ack/response wait in ms (overrides `timing.responseWaitMs`). */
  cloudResponseWaitTimeout?: number;
}

/** Options of {@link CloudLink}. */
export interface CloudLinkOptions {
  /** The unit's system id (header of every message; inbound ones must carry it). */
  systemId: string;
  /** Link settings from `cm.cfg`. */
  config: CloudLinkConfig;
  /** Current `online` certificate, key and CA; read on every connection attempt (renewals). */
  credentials: () => CloudCredentials | Promise<CloudCredentials>;
  /** `cm.db` with {@link CLOUD_OUTBOX_MIGRATION}: persisted messages survive restarts. */
  db?: Database;
  /** Outbox bounds. */
  outboxLimits?: Partial<OutboxLimits>;
  /** Logger (the link adds `module: "cloud"`). */
  logger?: Logger;
  /** Timing overrides (tests). */
  timing?: Partial<CloudLinkTiming>;
  /** Largest inbound message in bytes (default 4 MiB); a larger frame closes the socket. */
  maxMessageBytes?: number;
  /** How many received txns are remembered for de-duplication (default 1024). */
  recentTxns?: number;
  /** Most non-persisted messages waiting to be sent; the oldest go first (default 1000). */
  maxQueued?: number;
  /** Most received messages waiting for handlers; beyond it they are not acked (default 256). */
  maxInbound?: number;
  /** Clock port. */
  clock?: Clock;
  /** Sleep port for the reconnect back-off (tests record the delays). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** How a message is kept until acked. */
export interface PersistOptions {
  /** Retention group (default the message type), bounded by the outbox limits. */
  group?: string;
  /** This message is a full snapshot: drop every stored and queued message of its group. */
  supersede?: boolean;
}

/** Options of {@link CloudLink.send}. */
export interface SendOptions {
  /** Wait for the cloud's ack and resend without one (default true; acks are never acked). */
  expectAck?: boolean;
  /** Store in the outbox before sending, so it survives a restart (needs `db`). */
  persist?: boolean | PersistOptions;
}

/** Handles one received cloud message (already acked); errors are logged. */
export type CloudMessageHandler = (
  message: CloudToUnitMessage,
  header: CloudHeader,
) => void | Promise<void>;

/** Events of the link. */
export interface CloudLinkEvents {
  /** A session is up (CM sends a full unit status now). */
  connect: { url: string };
  /** The session ended. */
  disconnect: { url: string; reason: string };
  /** A host outside the allow-list was not dialled. */
  refusedHost: { url: string; host: string; port: number; purpose: "discovery" | "websocket" };
  /** A message got no ack after all resends and was given up. */
  dropped: { txn: string; messageType: string };
}

type Timer = ReturnType<typeof setTimeout>;

/** A received message of a cloud → unit type. */
interface Inbound {
  header: CloudHeader;
  message: CloudToUnitMessage;
}

interface Pending {
  txn: string;
  messageType: string;
  bytes: Uint8Array;
  expectAck: boolean;
  persisted: boolean;
  transmissions: number;
  notBefore: number;
  ackTimer?: Timer | undefined;
}

interface PendingRequest {
  type: MessageType;
  resolve: (m: CloudToUnitMessage) => void;
  reject: (err: unknown) => void;
  timer: Timer;
}

interface Discovered {
  urls: string[];
  token: string;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The cloud link. `start()` connects and keeps reconnecting; `send()` queues a message (and
 * stores it first when `persist` is set); `request()` pairs a request with its reply by
 * `correlationId`; `onMessage()` receives cloud messages in arrival order, each acked before
 * the handlers run and each txn handled once.
 */
export class CloudLink implements AsyncDisposable {
  readonly #systemId: string;
  readonly #config: CloudLinkConfig;
  readonly #credentials: CloudLinkOptions["credentials"];
  readonly #outbox: Outbox | undefined;
  readonly #log: Logger;
  readonly #timing: CloudLinkTiming;
  readonly #maxMessageBytes: number;
  readonly #maxQueued: number;
  readonly #maxInbound: number;
  readonly #clock: Clock;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #allow: HostPattern[];

  #queue: Pending[] = [];
  readonly #inFlight = new Map<string, Pending>();
  readonly #recent: RecentSet;
  readonly #requests = new Map<string, PendingRequest>();
  readonly #handlers = new Set<CloudMessageHandler>();
  readonly #listeners: { [K in keyof CloudLinkEvents]: Set<(e: CloudLinkEvents[K]) => void> } = {
    connect: new Set(),
    disconnect: new Set(),
    refusedHost: new Set(),
    dropped: new Set(),
  };
  #inbound: Inbound[] = [];
  #inboundWake: (() => void) | undefined;
  #consumer: Promise<void> | undefined;

  #discovered: Discovered | undefined;
  #nextRequestDelay = 0;
  #ws: WsClient | undefined;
  /** The message being written now (neither queued nor in flight). */
  #sending: Pending | undefined;
  #wake: (() => void) | undefined;
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #closed = false;

  constructor(options: CloudLinkOptions) {
    this.#systemId = options.systemId;
    this.#config = options.config;
    this.#credentials = options.credentials;
    this.#log = (options.logger ?? nullLogger).child({ module: "cloud" });
    this.#timing = {
      ...DEFAULT_CLOUD_LINK_TIMING,
      ...(options.config.cloudResponseWaitTimeout !== undefined
        ? { responseWaitMs: options.config.cloudResponseWaitTimeout }
        : {}),
      ...options.timing,
    };
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#maxQueued = options.maxQueued ?? 1000;
    this.#maxInbound = options.maxInbound ?? 256;
    this.#clock = options.clock ?? systemClock;
    this.#sleep = options.sleep ?? realSleep;
    this.#recent = new RecentSet(options.recentTxns ?? 1024);
    this.#allow = linkAllowList(options.config);
    this.#outbox = options.db ? new Outbox(options.db, options.outboxLimits, this.#log) : undefined;
    this.#loadOutbox();
  }

  /** Whether a session is up. */
  get connected(): boolean {
    return this.#ws !== undefined;
  }

  /** Messages waiting to be sent or acked. */
  get pendingCount(): number {
    return this.#queue.length + this.#inFlight.size + (this.#sending ? 1 : 0);
  }

  /** Starts connecting (and reconnecting until {@link close}). */
  start(): void {
    if (this.#closed) throw new AosError("wrongState", "Cannot start the cloud link: it is closed");
    if (this.#loop) return;
    this.#consumer = this.#consume();
    this.#loop = this.#run(this.#abort.signal);
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends keyof CloudLinkEvents>(
    event: K,
    listener: (e: CloudLinkEvents[K]) => void,
  ): () => void {
    const set = this.#listeners[event] as Set<(e: CloudLinkEvents[K]) => void>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Receives every cloud message not consumed by a {@link request}; returns unsubscribe. */
  onMessage(handler: CloudMessageHandler): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  /**
   * Queues a message (body from a `build*` function) in a fresh envelope and returns its txn.
   * With `persist` it is first stored in the outbox, so it is delivered even after a restart.
   */
  send(data: WireData, options: SendOptions = {}): string {
    if (this.#closed) {
      throw new AosError("wrongState", `Cannot send ${data.messageType}: the cloud link is closed`);
    }
    const txn = crypto.randomUUID();
    const createdAt = new Date(this.#clock.now());
    const bytes = encodeEnvelope(buildEnvelope({ systemId: this.#systemId, txn, createdAt }, data));
    const expectAck = options.expectAck ?? data.messageType !== "ack";
    let persisted = false;
    if (options.persist) {
      if (!this.#outbox) {
        throw new AosError(
          "wrongState",
          `Cannot persist ${data.messageType}: the cloud link has no database`,
        );
      }
      const p = options.persist === true ? {} : options.persist;
      const { removed } = this.#outbox.add({
        txn,
        group: p.group ?? data.messageType,
        messageType: data.messageType,
        systemId: this.#systemId,
        queuedAt: createdAt.getTime(),
        payload: bytes,
      }, { supersede: p.supersede ?? false });
      for (const t of removed) this.#forget(t);
      persisted = true;
    }
    this.#queue.push({
      txn,
      messageType: data.messageType,
      bytes,
      expectAck,
      persisted,
      transmissions: 0,
      notBefore: 0,
    });
    this.#boundQueue();
    this.#wake?.();
    return txn;
  }

  /**
   * Sends a request and resolves with the cloud's reply of type `responseType` carrying the same
   * `correlationId` (a new one is set when `data` has none). Rejects with `AosError("timeout")`
   * after `cloudResponseWaitTimeout`, or `canceled` on close / abort.
   */
  request<T extends MessageType>(
    data: WireData,
    responseType: T,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<MessageOf<T>> {
    const correlationId = typeof data.correlationId === "string" && data.correlationId
      ? data.correlationId
      : crypto.randomUUID();
    const timeoutMs = options.timeoutMs ?? this.#timing.responseWaitMs;
    return new Promise<MessageOf<T>>((resolve, reject) => {
      if (this.#requests.has(correlationId)) {
        reject(new AosError("alreadyExist", `Request ${correlationId} is already waiting`));
        return;
      }
      const signal = options.signal;
      const done = () => {
        clearTimeout(entry.timer);
        this.#requests.delete(correlationId);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(new AosError("canceled", `Request ${data.messageType} ${correlationId} canceled`));
      };
      const entry: PendingRequest = {
        type: responseType,
        resolve: (m) => {
          done();
          resolve(m as MessageOf<T>);
        },
        reject: (err) => {
          done();
          reject(err);
        },
        timer: setTimeout(() => {
          entry.reject(
            new AosError(
              "timeout",
              `No ${responseType} for ${data.messageType} ${correlationId} within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs),
      };
      if (signal?.aborted) {
        clearTimeout(entry.timer);
        return onAbort();
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#requests.set(correlationId, entry);
      try {
        this.send({ ...data, correlationId });
      } catch (err) {
        entry.reject(err);
      }
    });
  }

  /** `requestBlobUrls` for `digests`, resolved with the matching `blobUrls`. */
  requestBlobUrls(
    digests: readonly string[],
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<MessageOf<"blobUrls">> {
    const data = buildRequestBlobUrls({
      correlationId: crypto.randomUUID(),
      digests: [...digests],
    });
    return this.request(data, "blobUrls", options);
  }

  /** Stops: closes the session, rejects waiting requests; persisted messages stay stored. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort(new AosError("canceled", "Cloud link closed"));
    this.#wake?.();
    await this.#loop;
    for (const p of this.#inFlight.values()) clearTimeout(p.ackTimer);
    for (const r of [...this.#requests.values()]) {
      r.reject(new AosError("canceled", "Cloud link closed while waiting for a reply"));
    }
    this.#inboundWake?.();
    await this.#consumer;
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // -------------------------------------------------------------------------------------------
  // outgoing queue

  #loadOutbox(): void {
    if (!this.#outbox) return;
    for (const e of this.#outbox.list()) {
      if (e.systemId !== this.#systemId) {
        // Built for another identity (the unit was re-provisioned): the cloud would drop it.
        this.#outbox.delete(e.txn);
        this.#log.warn("Dropped a stored message of another system id", {
          txn: e.txn,
          messageType: e.messageType,
        });
        continue;
      }
      // A restart grants a fresh retry budget: the restart, not the cloud, may be why it lacks an ack.
      this.#queue.push({
        txn: e.txn,
        messageType: e.messageType,
        bytes: e.payload,
        expectAck: true,
        persisted: true,
        transmissions: 0,
        notBefore: 0,
      });
    }
    if (this.#queue.length) {
      this.#log.info("Resending stored messages", { count: this.#queue.length });
    }
  }

  #boundQueue(): void {
    let transient = this.#queue.filter((p) => !p.persisted).length;
    while (transient > this.#maxQueued) {
      const i = this.#queue.findIndex((p) => !p.persisted);
      const [old] = this.#queue.splice(i, 1);
      transient--;
      this.#log.warn("Send queue full: dropped the oldest unsent message", {
        txn: old?.txn,
        messageType: old?.messageType,
      });
    }
  }

  /** Removes a message from every place (superseded or evicted from the outbox). */
  #forget(txn: string): void {
    const p = this.#inFlight.get(txn);
    if (p) {
      clearTimeout(p.ackTimer);
      this.#inFlight.delete(txn);
    }
    this.#queue = this.#queue.filter((q) => q.txn !== txn);
  }

  #finish(p: Pending): void {
    if (p.persisted) this.#outbox?.delete(p.txn);
  }

  #takeReady(now: number): Pending | undefined {
    const i = this.#queue.findIndex((p) => p.notBefore <= now);
    if (i < 0) return undefined;
    return this.#queue.splice(i, 1)[0];
  }

  #armAckTimer(p: Pending): void {
    p.ackTimer = setTimeout(() => this.#onAckTimeout(p.txn), this.#timing.responseWaitMs);
  }

  #onAckTimeout(txn: string): void {
    const p = this.#inFlight.get(txn);
    if (!p) return;
    this.#inFlight.delete(txn);
    p.ackTimer = undefined;
    if (p.transmissions > this.#timing.maxResends) {
      this.#finish(p);
      this.#log.error("No ack from the cloud after all resends: message dropped", {
        txn,
        messageType: p.messageType,
        transmissions: p.transmissions,
      });
      this.#emit("dropped", { txn, messageType: p.messageType });
      return;
    }
    this.#log.debug("No ack in time: resending", { txn, messageType: p.messageType });
    p.notBefore = 0;
    this.#queue.push(p);
    this.#wake?.();
  }

  #onAck(txn: string): void {
    const p = this.#inFlight.get(txn);
    if (p) {
      clearTimeout(p.ackTimer);
      this.#inFlight.delete(txn);
      this.#finish(p);
      return;
    }
    // Acked after it timed out and went back to the queue: no need to send it again.
    const i = this.#queue.findIndex((q) => q.txn === txn);
    if (i >= 0) {
      const [q] = this.#queue.splice(i, 1);
      if (q) this.#finish(q);
      return;
    }
    this.#log.debug("Ack for an unknown txn ignored", { txn });
  }

  #onNack(txn: string, retryAfter: number): void {
    const p = this.#inFlight.get(txn);
    if (!p) {
      // AosCore blocks a receive thread waiting for such a txn; we just ignore it.
      this.#log.debug("Nack for a txn not awaiting an ack ignored", { txn });
      return;
    }
    clearTimeout(p.ackTimer);
    p.ackTimer = undefined;
    this.#inFlight.delete(txn);
    // A nack does not use up a resend.
    p.transmissions--;
    p.notBefore = this.#clock.now() + Math.min(retryAfter, this.#timing.maxNackDelayMs);
    this.#queue.push(p);
    this.#log.debug("Nack: resending later", { txn, retryAfter });
    this.#wake?.();
  }

  /** Sends queued messages over `ws` until it closes or the link stops. */
  async #pump(ws: WsClient, signal: AbortSignal): Promise<void> {
    while (!signal.aborted && this.#ws === ws && ws.readyState === WS_OPEN) {
      const now = this.#clock.now();
      const p = this.#takeReady(now);
      if (!p) {
        const next = this.#queue.reduce((m, q) => Math.min(m, q.notBefore), Infinity);
        await new Promise<void>((resolve) => {
          const timer = next === Infinity
            ? undefined
            : setTimeout(() => this.#wake?.(), Math.max(0, next - now));
          this.#wake = () => {
            clearTimeout(timer);
            this.#wake = undefined;
            resolve();
          };
        });
        continue;
      }
      this.#sending = p;
      try {
        await this.#write(ws, p.bytes);
      } catch (err) {
        // Not transmitted: back to the head, with its budget untouched.
        this.#queue.unshift(p);
        this.#log.warn("Cannot send to the cloud", { error: errorText(err) });
        return;
      } finally {
        this.#sending = undefined;
      }
      if (!p.expectAck) continue;
      p.transmissions++;
      this.#inFlight.set(p.txn, p);
      this.#armAckTimer(p);
    }
  }

  #write(ws: WsClient, bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(
          new AosError(
            "timeout",
            `WebSocket send timed out after ${this.#timing.sendTimeoutMs} ms`,
          ),
        );
      }, this.#timing.sendTimeoutMs);
      ws.send(bytes, { binary: true }, (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  // -------------------------------------------------------------------------------------------
  // incoming

  #onFrame(ws: WsClient, data: WsData): void {
    let parsed: ParsedCloudMessage;
    try {
      parsed = parseCloudMessage(wsBytes(data), {
        maxBytes: this.#maxMessageBytes,
        accept: CLOUD_TO_UNIT_TYPES,
      });
    } catch (err) {
      this.#log.warn("Dropped an invalid cloud message", { error: errorText(err) });
      return;
    }
    const header = parsed.header;
    // `accept` above admits only cloud → unit types.
    const message = parsed.message as CloudToUnitMessage;
    if (header.systemId !== this.#systemId) {
      this.#log.warn("Dropped a cloud message for another system id", {
        systemId: header.systemId,
        txn: header.txn,
        messageType: message.messageType,
      });
      return;
    }
    if (message.messageType === "ack") return this.#onAck(header.txn);
    if (message.messageType === "nack") return this.#onNack(header.txn, message.retryAfter);
    const duplicate = this.#recent.has(header.txn);
    if (!duplicate && this.#inbound.length >= this.#maxInbound) {
      // Not acked, so the cloud sends it again later; acking would lose it.
      this.#log.warn("Inbound queue full: cloud message left unacked", {
        txn: header.txn,
        messageType: message.messageType,
      });
      return;
    }
    // Ack means "received": sent before processing, as AosCore does.
    const ack = encodeEnvelope(
      buildEnvelope(
        { systemId: this.#systemId, txn: header.txn, createdAt: new Date(this.#clock.now()) },
        buildAck(),
      ),
    );
    this.#write(ws, ack).catch((err) =>
      this.#log.warn("Cannot ack a cloud message", { txn: header.txn, error: errorText(err) })
    );
    if (duplicate) {
      this.#log.debug("Duplicate cloud message acked again, not processed", {
        txn: header.txn,
        messageType: message.messageType,
      });
      return;
    }
    this.#recent.add(header.txn);
    const correlationId = message.correlationId ?? header.correlationId;
    const waiting = correlationId ? this.#requests.get(correlationId) : undefined;
    if (waiting && waiting.type === message.messageType) {
      waiting.resolve(message);
      return;
    }
    this.#inbound.push({ header, message });
    this.#inboundWake?.();
  }

  /** Runs the handlers one message at a time, in arrival order. */
  async #consume(): Promise<void> {
    for (;;) {
      const next = this.#inbound.shift();
      if (!next) {
        if (this.#closed) return;
        await new Promise<void>((r) => {
          this.#inboundWake = () => {
            this.#inboundWake = undefined;
            r();
          };
        });
        continue;
      }
      for (const handler of [...this.#handlers]) {
        try {
          await handler(next.message, next.header);
        } catch (err) {
          this.#log.error("Cloud message handler failed", {
            messageType: next.message.messageType,
            txn: next.header.txn,
            error: errorText(err),
          });
        }
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // connection

  #emit<K extends keyof CloudLinkEvents>(event: K, e: CloudLinkEvents[K]): void {
    for (const l of [...this.#listeners[event]]) {
      try {
        (l as (e: CloudLinkEvents[K]) => void)(e);
      } catch (err) {
        this.#log.error(`Cloud link ${event} listener failed`, { error: errorText(err) });
      }
    }
  }

  #checkHost(url: string, purpose: "discovery" | "websocket"): void {
    if (hostAllowed(url, this.#allow)) return;
    const { host, port } = urlHostPort(url);
    this.#emit("refusedHost", { url, host, port, purpose });
    throw new AosError(
      "failed",
      `Refused to dial ${host}:${port} for ${purpose} (${url}): not in allowedHosts nor a configured discovery host`,
    );
  }

  async #run(signal: AbortSignal): Promise<void> {
    // AosCore's schedule: cycles of `reconnectTries` attempts, waiting `nextRequestDelay` (or
    // 1 s), doubling up to the cap, between them; a new cycle starts at once, delay reset.
    let attempt = 0;
    let delay = 0;
    const failed = async (): Promise<boolean> => {
      if (attempt >= this.#timing.reconnectTries) {
        attempt = 0;
        delay = 0;
        return signal.aborted;
      }
      delay = delay === 0
        ? (this.#nextRequestDelay > 0 ? this.#nextRequestDelay : this.#timing.reconnectInitialMs)
        : delay * 2;
      delay = Math.min(delay, this.#timing.reconnectMaxMs);
      try {
        await this.#sleep(delay, signal);
      } catch {
        return true;
      }
      return signal.aborted;
    };
    while (!signal.aborted) {
      attempt++;
      let ws: WsClient;
      let url: string;
      try {
        ({ ws, url } = await this.#connectOnce(signal));
      } catch (err) {
        if (signal.aborted) return;
        this.#log.warn("Cannot connect to the cloud", { attempt, error: errorText(err) });
        if (await failed()) return;
        continue;
      }
      const startedAt = this.#clock.now();
      await this.#session(ws, url, signal);
      if (signal.aborted) return;
      if (this.#clock.now() - startedAt >= this.#timing.minSessionMs) {
        // A drop after a working session: reconnect at once with the cached URL and token.
        attempt = 0;
        delay = 0;
        continue;
      }
      if (await failed()) return;
    }
  }

  async #connectOnce(signal: AbortSignal): Promise<{ ws: WsClient; url: string }> {
    const credentials = await this.#credentials();
    if (!this.#discovered || this.#discovered.urls.length === 0) {
      this.#discovered = undefined;
      const chosen = chooseDiscoveryUrl({
        serviceDiscoveryUrl: this.#config.serviceDiscoveryUrl,
        overrideServiceDiscoveryUrl: this.#config.overrideServiceDiscoveryUrl,
        onlineCertPem: credentials.cert,
      }, this.#log);
      this.#checkHost(chosen.url, "discovery");
      this.#log.debug("Service discovery", { url: chosen.url, source: chosen.source });
      const response = await requestDiscovery({
        url: chosen.url,
        systemId: this.#systemId,
        credentials,
        timeoutMs: this.#timing.connectTimeoutMs,
        signal,
      });
      this.#nextRequestDelay = response.nextRequestDelay;
      const urls = response.connectionInfo.filter((u) => {
        try {
          const p = new URL(u).protocol;
          if (p === "wss:" || p === "ws:") return true;
        } catch { /* reported below */ }
        this.#log.warn("Ignoring a discovery connection URL that is not ws(s)", { url: u });
        return false;
      });
      if (response.errorCode !== 0) {
        // AosCore ignores it; we log it and still use what the response offers.
        this.#log.warn("Service discovery answered with an error code", {
          errorCode: response.errorCode,
          connectionInfo: urls.length,
        });
      }
      if (urls.length === 0) {
        throw new AosError(
          "failed",
          `Service discovery at ${chosen.url} returned no WebSocket URL (errorCode ${response.errorCode})`,
        );
      }
      this.#discovered = { urls, token: response.authToken };
    }
    const discovered = this.#discovered;
    const url = discovered.urls[0]!;
    try {
      this.#checkHost(url, "websocket");
    } catch (err) {
      discovered.urls.shift();
      throw err;
    }
    try {
      const ws = await this.#open(url, discovered.token, credentials, signal);
      return { ws, url };
    } catch (err) {
      if (err instanceof AosError && err.exitCode === 401) {
        this.#log.info("Cloud refused the token (HTTP 401): discovery again next time");
        this.#discovered = undefined;
      } else {
        discovered.urls.shift();
      }
      throw err;
    }
  }

  #open(
    url: string,
    token: string,
    credentials: CloudCredentials,
    signal: AbortSignal,
  ): Promise<WsClient> {
    const ws = openWs(url, {
      ca: credentials.ca,
      cert: credentials.cert,
      key: credentials.key,
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      maxPayload: this.#maxMessageBytes,
      handshakeTimeout: this.#timing.connectTimeoutMs,
    });
    return new Promise((resolve, reject) => {
      let failure: Error | undefined;
      const onAbort = () => ws.terminate();
      const onError = (err: Error) => {
        failure ??= err;
      };
      const cleanup = () => {
        signal.removeEventListener("abort", onAbort);
        ws.off("open", onOpen);
        ws.off("close", onClose);
      };
      const onOpen = () => {
        cleanup();
        resolve(ws);
      };
      const onClose = () => {
        cleanup();
        ws.off("error", onError);
        const text = failure?.message ?? "connection closed";
        // `ws` reports a refused upgrade only in its error text (pinned ws 8.18).
        const status = /Unexpected server response: (\d{3})/.exec(text)?.[1];
        reject(
          new AosError("failed", `Cannot open WebSocket ${url}: ${text}`, {
            cause: failure,
            ...(status ? { exitCode: Number(status) } : {}),
          }),
        );
      };
      // `error` must always have a listener: an EventEmitter throws otherwise.
      ws.on("error", onError);
      ws.on("open", onOpen);
      ws.on("close", onClose);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Runs one session until the socket closes (or the link stops, which closes it). */
  async #session(ws: WsClient, url: string, signal: AbortSignal): Promise<void> {
    let pongTimer: Timer | undefined;
    const alive = () => {
      clearTimeout(pongTimer);
      pongTimer = undefined;
    };
    let closeInfo = "closed";
    const closed = new Promise<void>((resolve) => {
      ws.on("close", (code, reason) => {
        closeInfo = `closed (${code}${reason.length ? ` ${String(reason)}` : ""})`;
        resolve();
      });
    });
    ws.on("error", (err) => {
      closeInfo = err.message;
      this.#log.warn("Cloud connection error", { error: err.message });
    });
    ws.on("message", (data) => {
      alive();
      this.#onFrame(ws, data);
    });
    ws.on("pong", alive);
    ws.on("ping", alive);
    const pinger = setInterval(() => {
      if (pongTimer !== undefined) return;
      try {
        ws.ping();
      } catch {
        return;
      }
      pongTimer = setTimeout(() => {
        this.#log.warn("Cloud connection silent after a ping: dropping it", {
          timeoutMs: this.#timing.pongTimeoutMs,
        });
        ws.terminate();
      }, this.#timing.pongTimeoutMs);
    }, this.#timing.pingIntervalMs);
    const onAbort = () => {
      ws.close(1000, "unit shutting down");
      // A peer that does not answer the close must not hold up shutdown.
      const t = setTimeout(() => ws.terminate(), this.#timing.closeTimeoutMs);
      closed.then(() => clearTimeout(t));
    };
    signal.addEventListener("abort", onAbort, { once: true });

    this.#ws = ws;
    this.#log.info("Connected to the cloud", { url });
    this.#emit("connect", { url });
    const pump = this.#pump(ws, signal);
    await closed;
    this.#ws = undefined;
    signal.removeEventListener("abort", onAbort);
    clearInterval(pinger);
    alive();
    this.#wake?.();
    await pump;
    // An ack cannot arrive on a closed socket: resend what was in flight on the next session,
    // oldest first, each keeping the transmissions it used.
    const inFlight = [...this.#inFlight.values()];
    for (const p of inFlight) {
      clearTimeout(p.ackTimer);
      p.ackTimer = undefined;
      p.notBefore = 0;
    }
    this.#inFlight.clear();
    this.#queue.unshift(...inFlight);
    this.#log.info("Disconnected from the cloud", { url, reason: closeInfo });
    this.#emit("disconnect", { url, reason: closeInfo });
  }
}

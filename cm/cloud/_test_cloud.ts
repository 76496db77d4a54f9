/**
 * A small in-test AosCloud: HTTPS discovery and a WSS endpoint on one `node:https` server that
 * requires client certificates, checks the Bearer token and records everything it sees.
 * @module
 */
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { Buffer } from "node:buffer";
import { WebSocketServer } from "ws";
import type { CertFiles, TestCa } from "@aos/shared/testing";
import type { WsClient, WsData } from "./_ws.ts";
import { wsBytes } from "./_ws.ts";

/** A frame the cloud received. */
export interface Received {
  /** Parsed JSON (undefined when not JSON). */
  json: { header: Record<string, unknown>; data: Record<string, unknown> };
  /** Raw bytes. */
  bytes: Uint8Array;
  /** Binary (true) or text frame. */
  binary: boolean;
  /** Index of the WebSocket session it arrived on. */
  session: number;
}

/** What the discovery endpoint answers. */
export interface DiscoveryAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** A discovery request as received. */
export interface DiscoveryHit {
  body: unknown;
  path: string;
  clientCn: string | undefined;
}

/** A WebSocket upgrade as received (accepted or not). */
export interface UpgradeHit {
  authorization: string | undefined;
  clientCn: string | undefined;
  accepted: boolean;
}

/** How the cloud answers a unit message: ack, nack(retryAfter) or nothing. */
export type Reply = { ack: true } | { nack: number } | { none: true };

/** The test cloud. */
export class TestCloud implements AsyncDisposable {
  readonly server: https.Server;
  readonly wss: InstanceType<typeof WebSocketServer>;
  /** Discovery requests seen. */
  readonly discoveries: DiscoveryHit[] = [];
  /** Upgrades seen. */
  readonly upgrades: UpgradeHit[] = [];
  /** Unit frames seen. */
  readonly received: Received[] = [];
  /** TLS failures seen (e.g. no or foreign client certificate). */
  readonly tlsErrors: string[] = [];
  /** Tokens the WSS endpoint accepts. */
  validTokens = new Set<string>(["token-1"]);
  /** Discovery answer (a function to vary it per request). */
  discovery: (hit: DiscoveryHit) => DiscoveryAnswer;
  /** How to answer each unit message that expects an ack. */
  reply: (r: Received, nth: number) => Reply = () => ({ ack: true });
  /** Whether the server answers pings (false: a silent peer). */
  readonly #sockets = new Set<WsClient>();
  #sessions = 0;
  readonly #counts = new Map<string, number>();
  #systemId: string;
  port = 0;

  constructor(
    pki: { ca: TestCa; server: CertFiles },
    systemId: string,
    options: { autoPong?: boolean } = {},
  ) {
    this.#systemId = systemId;
    const read = (f: string) => Deno.readTextFileSync(f);
    this.discovery = () => ({
      status: 200,
      body: {
        version: 7,
        systemId,
        nextRequestDelay: 0,
        connectionInfo: [this.wsUrl],
        authToken: "token-1",
        errorCode: 0,
      },
    });
    this.server = https.createServer({
      cert: read(pki.server.cert),
      key: read(pki.server.key),
      ca: read(pki.ca.cert),
      requestCert: true,
      rejectUnauthorized: true,
    }, (req, res) => this.#http(req, res));
    this.server.on("tlsClientError", (err: Error) => this.tlsErrors.push(err.message));
    this.wss = new WebSocketServer({
      server: this.server,
      path: "/ws",
      autoPong: options.autoPong ?? true,
      verifyClient: (
        info: { req: IncomingMessage },
        cb: (ok: boolean, code?: number) => void,
      ) => {
        const authorization = info.req.headers.authorization;
        const token = /^Bearer (.+)$/.exec(authorization ?? "")?.[1];
        const accepted = token !== undefined && this.validTokens.has(token);
        this.upgrades.push({ authorization, clientCn: cn(info.req), accepted });
        cb(accepted, accepted ? undefined : 401);
      },
    });
    this.wss.on("connection", (ws: WsClient) => this.#connection(ws));
  }

  /** Listens on 127.0.0.1, port 0. */
  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  /** Discovery URL (host `localhost`, as in the server certificate). */
  get sdUrl(): string {
    return `https://localhost:${this.port}/sd/v7/`;
  }

  /** WebSocket URL. */
  get wsUrl(): string {
    return `wss://localhost:${this.port}/ws`;
  }

  /** Open sessions. */
  get openSessions(): number {
    return this.#sockets.size;
  }

  /** Unit frames carrying `messageType`. */
  messages(messageType: string): Received[] {
    return this.received.filter((r) => r.json?.data?.messageType === messageType);
  }

  /** Sends an envelope `{header, data}` to every session (binary unless `text`). */
  sendEnvelope(
    data: Record<string, unknown>,
    options: { txn?: string; systemId?: string; version?: number; text?: boolean } = {},
  ): string {
    const txn = options.txn ?? crypto.randomUUID();
    const envelope = {
      header: {
        version: options.version ?? 7,
        systemId: options.systemId ?? this.#systemId,
        createdAt: new Date().toISOString(),
        txn,
      },
      data,
    };
    this.sendRaw(JSON.stringify(envelope), !options.text);
    return txn;
  }

  /** Sends raw text or bytes to every session. */
  sendRaw(payload: string, binary = true): void {
    for (const ws of this.#sockets) {
      ws.send(binary ? new TextEncoder().encode(payload) : payload as never, { binary }, () => {});
    }
  }

  /** Cuts every session without a close handshake. */
  dropAll(): void {
    for (const ws of this.#sockets) ws.terminate();
  }

  /** Stops everything. */
  async close(): Promise<void> {
    for (const ws of this.#sockets) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #http(req: IncomingMessage, res: ServerResponse): void {
    let body = "";
    req.on("data", (c: Buffer) => body += c.toString());
    req.on("end", () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = body;
      }
      const hit = { body: parsed, path: req.url ?? "", clientCn: cn(req) };
      this.discoveries.push(hit);
      const answer = this.discovery(hit);
      res.writeHead(answer.status, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify(answer.body));
    });
  }

  #connection(ws: WsClient): void {
    const session = ++this.#sessions;
    this.#sockets.add(ws);
    ws.on("close", () => this.#sockets.delete(ws));
    ws.on("error", () => {});
    ws.on("message", (data: WsData, binary: boolean) => {
      const bytes = wsBytes(data).slice();
      let json: Received["json"];
      try {
        json = JSON.parse(new TextDecoder().decode(bytes));
      } catch {
        json = { header: {}, data: {} };
      }
      const r: Received = { json, bytes, binary, session };
      this.received.push(r);
      if (json.data?.messageType === "ack") return;
      const txn = String(json.header?.txn);
      const nth = (this.#counts.get(txn) ?? 0) + 1;
      this.#counts.set(txn, nth);
      const reply = this.reply(r, nth);
      if ("none" in reply) return;
      const data2 = "ack" in reply ? { messageType: "ack" } : {
        messageType: "nack",
        retryAfter: reply.nack,
      };
      const envelope = {
        header: {
          version: 7,
          systemId: this.#systemId,
          createdAt: new Date().toISOString(),
          txn,
        },
        data: data2,
      };
      ws.send(new TextEncoder().encode(JSON.stringify(envelope)), { binary: true }, () => {});
    });
  }
}

function cn(req: IncomingMessage): string | undefined {
  const socket = req.socket as TLSSocket;
  const peer = socket.getPeerCertificate?.();
  const value = peer?.subject?.CN;
  return Array.isArray(value) ? value[0] : value;
}

/** Polls `cond` every 10 ms until true; throws after `timeoutMs` with `what`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

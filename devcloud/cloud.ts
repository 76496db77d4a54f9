/**
 * The devcloud server: HTTPS service discovery and a WSS endpoint speaking protocol v7 (both
 * with mutual TLS against the dev root CA, the WebSocket also with the discovery's Bearer
 * token), a blob server, and the state a cloud keeps: the services deployed (desired status)
 * and, per unit, the latest merged unit status, recent alerts and monitoring.
 *
 * Delivery follows the protocol (digest §2.3): every unit message but `ack`/`nack` is acked
 * with its txn and handled once per txn; devcloud's own messages are resent without an ack
 * after `ackTimeoutMs`, at most `maxResends` times, and `nack` delays them.
 * @module
 */
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Buffer } from "node:buffer";
import { join } from "node:path";
import { WebSocketServer } from "ws";
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import {
  AosError,
  type Clock,
  type Logger,
  Mutex,
  nullLogger,
  systemClock,
  toBytes,
} from "@aos/shared/core";
import {
  type Body,
  buildAck,
  buildBlobUrls,
  buildDesiredStatus,
  buildEnvelope,
  type DesiredStatus,
  encodeEnvelope,
  MESSAGE_SCHEMAS,
  type MessageType,
  parseCloudMessage,
  type UnitConfig,
  type UnitToCloudMessage,
  type WireData,
} from "@aos/shared/cloudprotocol";
import { splitHostPort } from "@aos/shared/config";
import { type FileServer, startFileServer } from "@aos/shared/fileserver";
import { BlobStore } from "./blobs.ts";
import { devcloudPaths } from "./config.ts";
import { loadServiceDir, packService, SERVICE_NAME_RE, type ServiceManifest } from "./packer.ts";
import { DevPki } from "./pki.ts";
import {
  emptyUnitStatus,
  mergeUnitStatus,
  type ServiceProgress,
  serviceProgress,
  type UnitRecord,
} from "./unit_state.ts";

/** Message types a unit sends (plus `ack`/`nack`). */
export const UNIT_TO_CLOUD_TYPES = [
  "unitStatus",
  "monitoringData",
  "alerts",
  "requestBlobUrls",
  "newState",
  "stateRequest",
  "pushLog",
  "overrideEnvVarsStatus",
  "issueUnitCertificates",
  "installUnitCertificatesConfirmation",
  "startProvisioningResponse",
  "finishProvisioningResponse",
  "deprovisioningResponse",
  "ack",
  "nack",
] as const satisfies readonly MessageType[];

/** Options of {@link startDevcloud}. */
export interface DevcloudOptions {
  /** Data directory (PKI, blobs, state). */
  workingDir: string;
  /** Service sources (default `<workingDir>/services`). */
  servicesDir?: string;
  /** Discovery + WSS listen address `host:port` (port 0: ephemeral; `localhost` = 127.0.0.1). */
  cloudListen: string;
  /** Blob server listen address. */
  blobsListen: string;
  /** Host name written into URLs (default `localhost`, covered by the server certificate). */
  publicHost?: string;
  /** The packer's `tar` (default `tar`). */
  tar?: string;
  /** Logger. */
  logger?: Logger;
  /** Clock port. */
  clock?: Clock;
  /** Wait for a unit's ack before resending (default 10 s). */
  ackTimeoutMs?: number;
  /** Resends without an ack before a message is given up (default 3). */
  maxResends?: number;
  /** Alerts kept per unit (default 1000). */
  maxAlerts?: number;
  /** Largest accepted unit message (default 4 MiB). */
  maxMessageBytes?: number;
  /**
   * Base URL written into blob URLs instead of the blob server's own (`<base>/sha256/<hex>`),
   * e.g. a proxy in front of it that a fault test throttles.
   */
  blobsBaseUrl?: string;
}

/** Options of {@link Devcloud.dropSessions}. */
export interface DropOptions {
  /** Answer WebSocket upgrades with 503 for this long afterwards (default 0). */
  refuseForMs?: number;
}

/** A deployed service. */
export interface ServiceRecord {
  /** Service name (directory under the services dir). */
  name: string;
  /** Update item id (UUID), stable across versions. */
  id: string;
  /** Version deployed. */
  version: string;
  /** Digest of the image index. */
  indexDigest: string;
  /** Desired number of instances. */
  instances: number;
  /** When it was (re)deployed (ISO). */
  deployedAt: string;
}

/** Options of {@link Devcloud.deploy}. */
export interface DeployOptions {
  /** Desired instances (default: as before, else 1). */
  instances?: number;
  /** Rootfs directory or tarball; with `manifest`, instead of the services dir. */
  source?: string;
  /** Service manifest for `source`. */
  manifest?: ServiceManifest;
  /** More layers (directories or archives) after the rootfs layer, each its own blob. */
  layers?: readonly string[];
}

/** Something that happened, for tests, the CLI and the dashboard. */
export type DevcloudEvent =
  | { type: "discovery"; systemId: string }
  | { type: "connected"; systemId: string }
  | { type: "disconnected"; systemId: string }
  | { type: "message"; systemId: string; txn: string; message: UnitToCloudMessage }
  | { type: "sent"; systemId: string; txn: string; messageType: string }
  | { type: "dropped"; systemId: string; txn: string; messageType: string }
  | { type: "invalid"; systemId: string; error: string }
  | { type: "deployed"; service: ServiceRecord }
  | { type: "removed"; name: string };

/** A service's progress on one unit. */
export interface UnitServiceView extends ServiceProgress {
  /** The unit. */
  systemId: string;
}

/** `status()`: services with their progress per unit, and the units. */
export interface DevcloudStatus {
  /** Deployed services, each with its progress per known unit. */
  services: (ServiceRecord & { units: UnitServiceView[] })[];
  /** Known units. */
  units: UnitRecord[];
}

/** The state file. */
const stateSchema = z.object({
  ownerId: z.string(),
  subjectId: z.string(),
  services: z.array(z.object({
    name: z.string(),
    id: z.string(),
    version: z.string(),
    indexDigest: z.string(),
    instances: z.number().check(z.int(), z.nonnegative()),
    deployedAt: z.string(),
  })),
  unitConfig: z.optional(z.unknown()),
});
type State = z.output<typeof stateSchema>;

/** The `ws` server socket API used here (the package ships no types). */
interface Socket {
  readonly readyState: number;
  send(data: Uint8Array, options: { binary: boolean }, cb: (err?: Error) => void): void;
  terminate(): void;
  pause(): void;
  close(code?: number, reason?: string): void;
  on(event: "message", fn: (data: Buffer | ArrayBuffer | Buffer[], binary: boolean) => void): void;
  on(event: "close", fn: () => void): void;
  on(event: "error", fn: (err: Error) => void): void;
}

interface Outgoing {
  txn: string;
  messageType: string;
  bytes: Uint8Array;
  transmissions: number;
  timer?: ReturnType<typeof setTimeout> | undefined;
}

interface Session {
  systemId: string;
  ws: Socket;
  pending: Map<string, Outgoing>;
  /** Recently handled txns (de-duplication), insertion ordered. */
  recent: Set<string>;
  /** The desired status went out after the session's first full unit status. */
  synced: boolean;
}

function listenHost(host: string): string {
  return host === "localhost" ? "127.0.0.1" : host;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const discoveryRequestSchema = z.looseObject({
  version: z.number().check(z.int()),
  systemId: z.string().check(z.minLength(1), z.maxLength(256)),
  supportedProtocols: z.optional(z.array(z.string())),
});

/** The running devcloud; create it with {@link startDevcloud}. */
export class Devcloud implements AsyncDisposable {
  /** The dev PKI. */
  readonly pki: DevPki;
  /** Plain and served blobs. */
  readonly blobs: BlobStore;
  readonly #o: DevcloudOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #paths: ReturnType<typeof devcloudPaths>;
  readonly #server: https.Server;
  readonly #wss: InstanceType<typeof WebSocketServer>;
  readonly #files: FileServer;
  readonly #publicHost: string;
  #cloudPort = 0;
  readonly #tokens = new Map<string, string>();
  readonly #upgradeSystem = new WeakMap<IncomingMessage, string>();
  readonly #sessions = new Map<string, Session>();
  readonly #units = new Map<string, UnitRecord>();
  readonly #listeners = new Set<(e: DevcloudEvent) => void>();
  readonly #deployLock = new Mutex();
  #state: State;
  #unitsTimer: ReturnType<typeof setTimeout> | undefined;
  #unitsWrite: Promise<void> = Promise.resolve();
  #closed = false;
  /** WebSocket upgrades are refused until then (epoch ms), see {@link dropSessions}. */
  #refuseUntil = 0;

  private constructor(
    options: DevcloudOptions,
    parts: { pki: DevPki; state: State; units: UnitRecord[]; files: FileServer; tls: TlsParts },
  ) {
    this.#o = options;
    this.#log = (options.logger ?? nullLogger).child({ module: "devcloud" });
    this.#clock = options.clock ?? systemClock;
    this.#paths = devcloudPaths(options);
    this.#publicHost = options.publicHost ?? "localhost";
    this.pki = parts.pki;
    this.#state = parts.state;
    for (const u of parts.units) this.#units.set(u.systemId, { ...u, connected: false });
    this.#files = parts.files;
    this.blobs = new BlobStore({
      blobs: this.#paths.blobs,
      served: this.#paths.served,
      servedMeta: this.#paths.servedMeta,
      pki: parts.pki,
      clock: this.#clock,
    });
    this.#server = https.createServer({
      ...parts.tls,
      requestCert: true,
      rejectUnauthorized: true,
    }, (req, res) => this.#http(req, res));
    this.#server.on("tlsClientError", (err: Error) => {
      this.#log.warn("TLS handshake refused", { error: err.message });
    });
    this.#wss = new WebSocketServer({
      server: this.#server,
      path: "/ws",
      perMessageDeflate: false,
      maxPayload: options.maxMessageBytes ?? 4 * 1024 * 1024,
      verifyClient: (
        info: { req: IncomingMessage },
        cb: (ok: boolean, code?: number, message?: string) => void,
      ) => {
        if (this.#clock.now() < this.#refuseUntil) {
          this.#log.warn("WebSocket upgrade refused: sessions are being dropped");
          return cb(false, 503, "Service Unavailable");
        }
        const token = /^Bearer (.+)$/.exec(info.req.headers.authorization ?? "")?.[1];
        const systemId = token === undefined ? undefined : this.#tokens.get(token);
        if (systemId === undefined) {
          this.#log.warn("WebSocket upgrade refused: unknown token");
          return cb(false, 401, "Unauthorized");
        }
        this.#upgradeSystem.set(info.req, systemId);
        cb(true);
      },
    });
    this.#wss.on("connection", (ws: Socket, req: IncomingMessage) => this.#connection(ws, req));
  }

  /** Starts listening; see {@link startDevcloud}. */
  static async start(options: DevcloudOptions): Promise<Devcloud> {
    const paths = devcloudPaths(options);
    await Deno.mkdir(options.workingDir, { recursive: true });
    for (const d of [paths.blobs, join(paths.served, "sha256")]) {
      await Deno.mkdir(d, { recursive: true });
    }
    const publicHost = options.publicHost ?? "localhost";
    const pki = await DevPki.open(paths.pki, {
      serverHosts: [...new Set(["localhost", "127.0.0.1", publicHost])],
      ...(options.clock ? { clock: options.clock } : {}),
    });
    const state = await loadState(paths.state);
    const units = await loadUnits(paths.units);
    const blobs = splitHostPort(options.blobsListen);
    const files = await startFileServer({
      root: paths.served,
      prefix: "/blobs",
      hostname: listenHost(blobs.host),
      port: blobs.port,
      ...(options.logger ? { logger: options.logger.child({ module: "blobs" }) } : {}),
    });
    const server = await pki.serverCredentials();
    const cloud = new Devcloud(options, {
      pki,
      state,
      units,
      files,
      tls: { cert: server.cert, key: server.key, ca: pki.rootPem },
    });
    try {
      await cloud.#listen();
    } catch (err) {
      await cloud.close();
      throw err;
    }
    return cloud;
  }

  async #listen(): Promise<void> {
    const { host, port } = splitHostPort(this.#o.cloudListen);
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, listenHost(host), () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    this.#cloudPort = (this.#server.address() as { port: number }).port;
    this.#log.info("devcloud listening", { discovery: this.discoveryUrl, blobs: this.blobsUrl });
  }

  /** Discovery URL, e.g. `https://localhost:9000/sd/v7/` (a unit's `serviceDiscoveryUrl`). */
  get discoveryUrl(): string {
    return `https://${this.#publicHost}:${this.#cloudPort}/sd/v7/`;
  }

  /** Base URL for a unit certificate's issuer alternative name: `https://localhost:9000`. */
  get cloudBaseUrl(): string {
    return `https://${this.#publicHost}:${this.#cloudPort}`;
  }

  /** The WebSocket URL handed out by discovery. */
  get wsUrl(): string {
    return `wss://${this.#publicHost}:${this.#cloudPort}/ws`;
  }

  /** Base URL of blobs in `blobUrls` (the blob server's own unless `blobsBaseUrl` is set). */
  get blobsUrl(): string {
    return this.#o.blobsBaseUrl ?? this.blobServerUrl;
  }

  /** Base URL of the blob server itself. */
  get blobServerUrl(): string {
    return `http://${this.#publicHost}:${this.#files.addr.port}/blobs`;
  }

  /** Subscribes to events; returns the unsubscribe function. */
  subscribe(listener: (e: DevcloudEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Events as an async iterable until `signal` aborts (a fresh subscription). */
  async *events(signal: AbortSignal): AsyncIterable<DevcloudEvent> {
    const queue: DevcloudEvent[] = [];
    let wake: (() => void) | undefined;
    const off = this.subscribe((e) => {
      queue.push(e);
      wake?.();
    });
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      while (!signal.aborted) {
        const e = queue.shift();
        if (e) {
          yield e;
          continue;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      off();
      signal.removeEventListener("abort", onAbort);
    }
  }

  // -------------------------------------------------------------------------------------------
  // API

  /** Deployed services. */
  services(): ServiceRecord[] {
    return this.#state.services.map((s) => ({ ...s }));
  }

  /**
   * Packs a service (from `<servicesDir>/<name>`, or `options.source` + `options.manifest`),
   * adds or updates it in the desired status with `instances`, and sends the desired status
   * to every connected unit.
   */
  deploy(name: string, options: DeployOptions = {}): Promise<ServiceRecord> {
    return this.#deployLock.run(async () => {
      if (!SERVICE_NAME_RE.test(name)) {
        throw new AosError("invalidArgument", `Invalid service name "${name}"`);
      }
      const instances = options.instances;
      if (instances !== undefined && (!Number.isSafeInteger(instances) || instances < 0)) {
        throw new AosError("invalidArgument", `Invalid instance count ${instances}`);
      }
      const { manifest, source } = options.source && options.manifest
        ? { manifest: options.manifest, source: options.source }
        : await loadServiceDir(join(this.#paths.services, name));
      const image = await packService({
        source,
        manifest,
        blobsDir: this.#paths.blobs,
        ...(this.#o.tar ? { tar: this.#o.tar } : {}),
        ...(options.layers ? { layers: options.layers } : {}),
      });
      const before = this.#state.services.find((s) => s.name === name);
      const record: ServiceRecord = {
        name,
        id: before?.id ?? manifest.id ?? crypto.randomUUID(),
        version: manifest.version,
        indexDigest: image.index.digest,
        instances: instances ?? before?.instances ?? 1,
        deployedAt: new Date(this.#clock.now()).toISOString(),
      };
      this.#state.services = [...this.#state.services.filter((s) => s.name !== name), record];
      await this.#saveState();
      this.#log.info("service deployed", { ...record });
      this.#emit({ type: "deployed", service: record });
      this.pushDesiredStatus();
      return record;
    });
  }

  /** Removes a service from the desired status (units stop and remove it). */
  remove(name: string): Promise<void> {
    return this.#deployLock.run(async () => {
      if (!this.#state.services.some((s) => s.name === name)) {
        throw new AosError("notFound", `Cannot remove service "${name}": it is not deployed`);
      }
      this.#state.services = this.#state.services.filter((s) => s.name !== name);
      await this.#saveState();
      this.#emit({ type: "removed", name });
      this.pushDesiredStatus();
    });
  }

  /** Sets (or clears) the unit config sent in the desired status, and sends it. */
  async setUnitConfig(unitConfig: UnitConfig | undefined): Promise<void> {
    await this.#deployLock.run(async () => {
      if (unitConfig) this.#state.unitConfig = unitConfig;
      else delete this.#state.unitConfig;
      await this.#saveState();
    });
    this.pushDesiredStatus();
  }

  /** The desired status devcloud sends now. */
  desiredStatus(): Body<DesiredStatus> {
    const trust = this.pki.signingTrust();
    const unitConfig = this.#state.unitConfig as UnitConfig | undefined;
    return {
      nodes: [],
      ...(unitConfig ? { unitConfig } : {}),
      items: this.#state.services.map((s) => ({
        item: { id: s.id, type: "service" },
        version: s.version,
        owner: { id: this.#state.ownerId },
        indexDigest: s.indexDigest,
      })),
      instances: this.#state.services.filter((s) => s.instances > 0).map((s) => ({
        item: { id: s.id },
        subject: { id: this.#state.subjectId },
        priority: 0,
        numInstances: s.instances,
        labels: [],
      })),
      subjects: [{
        identity: { id: this.#state.subjectId, codename: "devcloud" },
        type: "group",
        isReportedFromUnit: false,
      }],
      certificates: trust.certificates,
      certificateChains: trust.chains.map((c) => ({
        name: c.name,
        fingerprints: [...c.fingerprints],
      })),
    };
  }

  /** Sends the desired status to every connected unit. */
  pushDesiredStatus(): void {
    for (const s of this.#sessions.values()) this.#sendDesired(s);
  }

  /** Units known (connected now or before). */
  units(): UnitRecord[] {
    return [...this.#units.values()].map((u) => structuredClone(u));
  }

  /** Services with their progress on every known unit, and the units. */
  status(): DevcloudStatus {
    const units = this.units();
    return {
      services: this.#state.services.map((s) => ({
        ...s,
        units: units.map((u) => ({
          systemId: u.systemId,
          ...serviceProgress(u.status, s.id, s.version, s.instances),
        })),
      })),
      units,
    };
  }

  /** Alerts received (oldest first), of one unit or of all. */
  alerts(systemId?: string): (UnitRecord["alerts"][number] & { systemId: string })[] {
    return [...this.#units.values()]
      .filter((u) => systemId === undefined || u.systemId === systemId)
      .flatMap((u) => u.alerts.map((a) => ({ ...a, systemId: u.systemId })))
      .sort((a, b) => a.timestamp.getTime() - b.timestamp.getTime());
  }

  /**
   * Sends any cloud → unit message (body from a `build*` function) to one unit, or to every
   * connected unit; returns the txns. Sent with ack tracking and resends.
   */
  send(data: WireData, systemId?: string): string[] {
    const targets = systemId === undefined
      ? [...this.#sessions.values()]
      : [this.#sessions.get(systemId)].filter((s): s is Session => s !== undefined);
    return targets.map((s) => this.#send(s, data));
  }

  /** Messages sent to a unit and not acked yet. */
  unacked(systemId: string): number {
    return this.#sessions.get(systemId)?.pending.size ?? 0;
  }

  /**
   * Closes every unit's WebSocket abruptly (no close frame), as a cloud restart or a broken
   * network would, and optionally refuses new upgrades for a while; returns how many were open.
   * For fault tests: the units reconnect on their own.
   */
  dropSessions(options: DropOptions = {}): number {
    this.#refuseUntil = this.#clock.now() + Math.max(options.refuseForMs ?? 0, 0);
    const sessions = [...this.#sessions.values()];
    for (const s of sessions) this.#endSession(s, "dropped by devcloud");
    return sessions.length;
  }

  /**
   * Stops reading every unit's WebSocket, as a hung cloud would: the units' messages are
   * neither handled nor acked (they wait in the socket buffers) while devcloud can still send.
   * The session stays paused until it ends (a unit's new session replaces it); returns how many
   * were paused. For fault tests of the unit's outbox.
   */
  pauseSessions(): number {
    const sessions = [...this.#sessions.values()];
    for (const s of sessions) s.ws.pause();
    return sessions.length;
  }

  /** Stops every server and session and writes the unit file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#sessions.values()) {
      for (const p of s.pending.values()) clearTimeout(p.timer);
      s.ws.terminate();
    }
    this.#sessions.clear();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    await this.#files.close();
    clearTimeout(this.#unitsTimer);
    this.#unitsTimer = undefined;
    for (const u of this.#units.values()) u.connected = false;
    await this.#writeUnits();
    this.#listeners.clear();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // -------------------------------------------------------------------------------------------
  // discovery

  #http(req: IncomingMessage, res: ServerResponse): void {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify(body));
    };
    const path = (req.url ?? "").replace(/\?.*$/, "");
    if (req.method !== "POST" || !/^\/sd\/v7\/?$/.test(path)) {
      reply(404, { error: "not found" });
      return;
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > 64 * 1024) {
        reply(413, { error: "request too large" });
        req.destroy();
        return;
      }
      chunks.push(new Uint8Array(c));
    });
    req.on("end", () => {
      if (res.headersSent) return;
      let body: z.output<typeof discoveryRequestSchema>;
      try {
        const text = new TextDecoder().decode(
          chunks.reduce((all, c) => {
            const out = new Uint8Array(all.length + c.length);
            out.set(all);
            out.set(c, all.length);
            return out;
          }, new Uint8Array()),
        );
        body = discoveryRequestSchema.parse(JSON.parse(text));
      } catch (err) {
        this.#log.warn("Invalid discovery request", { error: errorText(err) });
        reply(400, { errorCode: 3, error: "invalid discovery request" });
        return;
      }
      if (body.version !== 7) {
        reply(400, { errorCode: 3, error: `protocol version ${body.version} is not supported` });
        return;
      }
      const token = crypto.randomUUID();
      this.#tokens.set(token, body.systemId);
      // Only recent tokens stay valid; a unit whose token went gets 401 and discovers again.
      while (this.#tokens.size > 256) this.#tokens.delete(this.#tokens.keys().next().value!);
      this.#log.info("discovery", { systemId: body.systemId });
      this.#emit({ type: "discovery", systemId: body.systemId });
      reply(200, {
        version: 7,
        systemId: body.systemId,
        nextRequestDelay: 0,
        connectionInfo: [this.wsUrl],
        authToken: token,
        errorCode: 0,
      });
    });
  }

  // -------------------------------------------------------------------------------------------
  // sessions

  #unit(systemId: string): UnitRecord {
    let u = this.#units.get(systemId);
    if (!u) {
      u = {
        systemId,
        connected: false,
        lastSeen: new Date(this.#clock.now()).toISOString(),
        status: emptyUnitStatus(),
        alerts: [],
      };
      this.#units.set(systemId, u);
    }
    return u;
  }

  #connection(ws: Socket, req: IncomingMessage): void {
    const systemId = this.#upgradeSystem.get(req);
    if (systemId === undefined || this.#closed) {
      ws.terminate();
      return;
    }
    const old = this.#sessions.get(systemId);
    if (old) this.#endSession(old, "replaced by a new session");
    const session: Session = {
      systemId,
      ws,
      pending: new Map(),
      recent: new Set(),
      synced: false,
    };
    this.#sessions.set(systemId, session);
    const unit = this.#unit(systemId);
    unit.connected = true;
    unit.lastSeen = new Date(this.#clock.now()).toISOString();
    this.#log.info("unit connected", { systemId });
    this.#emit({ type: "connected", systemId });
    ws.on("message", (data, binary) => this.#onFrame(session, toBytes(data), binary));
    ws.on("error", (err) => this.#log.warn("WebSocket error", { systemId, error: err.message }));
    ws.on("close", () => this.#endSession(session, "closed"));
  }

  #endSession(session: Session, reason: string): void {
    if (this.#sessions.get(session.systemId) !== session) return;
    this.#sessions.delete(session.systemId);
    for (const p of session.pending.values()) clearTimeout(p.timer);
    session.pending.clear();
    session.ws.terminate();
    const unit = this.#units.get(session.systemId);
    if (unit) unit.connected = false;
    this.#scheduleUnitsWrite();
    this.#log.info("unit disconnected", { systemId: session.systemId, reason });
    this.#emit({ type: "disconnected", systemId: session.systemId });
  }

  #write(session: Session, bytes: Uint8Array): void {
    if (session.ws.readyState !== 1) return;
    session.ws.send(bytes, { binary: true }, (err) => {
      if (err) {
        this.#log.warn("Cannot send to unit", { systemId: session.systemId, error: err.message });
      }
    });
  }

  #send(session: Session, data: WireData): string {
    const txn = crypto.randomUUID();
    const bytes = encodeEnvelope(
      buildEnvelope(
        { systemId: session.systemId, txn, createdAt: new Date(this.#clock.now()) },
        data,
      ),
    );
    const out: Outgoing = { txn, messageType: data.messageType, bytes, transmissions: 0 };
    session.pending.set(txn, out);
    this.#transmit(session, out);
    this.#emit({ type: "sent", systemId: session.systemId, txn, messageType: data.messageType });
    return txn;
  }

  #transmit(session: Session, out: Outgoing, delayMs = 0): void {
    clearTimeout(out.timer);
    const go = () => {
      if (this.#sessions.get(session.systemId) !== session) return;
      out.transmissions++;
      this.#write(session, out.bytes);
      out.timer = setTimeout(
        () => this.#onAckTimeout(session, out),
        this.#o.ackTimeoutMs ?? 10_000,
      );
    };
    if (delayMs > 0) out.timer = setTimeout(go, delayMs);
    else go();
  }

  #onAckTimeout(session: Session, out: Outgoing): void {
    if (!session.pending.has(out.txn)) return;
    if (out.transmissions > (this.#o.maxResends ?? 3)) {
      session.pending.delete(out.txn);
      this.#log.error("No ack from the unit after all resends: message dropped", {
        systemId: session.systemId,
        txn: out.txn,
        messageType: out.messageType,
      });
      this.#emit({
        type: "dropped",
        systemId: session.systemId,
        txn: out.txn,
        messageType: out.messageType,
      });
      return;
    }
    this.#log.debug("No ack in time: resending", { txn: out.txn, messageType: out.messageType });
    this.#transmit(session, out);
  }

  #sendDesired(session: Session): void {
    // A newer desired status supersedes one still waiting for its ack.
    for (const p of [...session.pending.values()]) {
      if (p.messageType === "desiredStatus") {
        clearTimeout(p.timer);
        session.pending.delete(p.txn);
      }
    }
    session.synced = true;
    this.#send(session, buildDesiredStatus(this.desiredStatus()));
  }

  #onFrame(session: Session, bytes: Uint8Array, _binary: boolean): void {
    let parsed;
    try {
      parsed = parseCloudMessage(bytes, {
        ...(this.#o.maxMessageBytes ? { maxBytes: this.#o.maxMessageBytes } : {}),
        accept: UNIT_TO_CLOUD_TYPES,
      });
    } catch (err) {
      // Not acked: a unit resends what the cloud did not take.
      this.#log.warn("Dropped an invalid unit message", {
        systemId: session.systemId,
        error: errorText(err),
      });
      this.#emit({ type: "invalid", systemId: session.systemId, error: errorText(err) });
      return;
    }
    const { header, message } = parsed;
    if (header.systemId !== session.systemId) {
      const error =
        `header systemId "${header.systemId}" is not the session's "${session.systemId}"`;
      this.#log.warn("Dropped a unit message", { error });
      this.#emit({ type: "invalid", systemId: session.systemId, error });
      return;
    }
    const unit = this.#unit(session.systemId);
    unit.lastSeen = new Date(this.#clock.now()).toISOString();
    if (message.messageType === "ack") {
      const p = session.pending.get(header.txn);
      if (p) {
        clearTimeout(p.timer);
        session.pending.delete(header.txn);
      }
      return;
    }
    if (message.messageType === "nack") {
      const p = session.pending.get(header.txn);
      if (p) {
        p.transmissions--;
        this.#transmit(session, p, Math.min(Math.max(message.retryAfter, 0), 600_000));
      }
      return;
    }
    this.#write(
      session,
      encodeEnvelope(
        buildEnvelope(
          { systemId: session.systemId, txn: header.txn, createdAt: new Date(this.#clock.now()) },
          buildAck(),
        ),
      ),
    );
    if (session.recent.has(header.txn)) return;
    session.recent.add(header.txn);
    if (session.recent.size > 1024) session.recent.delete(session.recent.values().next().value!);
    const m = message as UnitToCloudMessage;
    this.#handle(session, unit, m);
    this.#emit({ type: "message", systemId: session.systemId, txn: header.txn, message: m });
  }

  #handle(session: Session, unit: UnitRecord, m: UnitToCloudMessage): void {
    switch (m.messageType) {
      case "unitStatus":
        unit.status = mergeUnitStatus(unit.status, m);
        this.#scheduleUnitsWrite();
        // The unit sends its full status on every connect: answer with the desired one.
        if (!m.isDeltaInfo && !session.synced) this.#sendDesired(session);
        return;
      case "alerts": {
        unit.alerts.push(...m.items);
        const max = this.#o.maxAlerts ?? 1000;
        if (unit.alerts.length > max) unit.alerts.splice(0, unit.alerts.length - max);
        this.#scheduleUnitsWrite();
        return;
      }
      case "monitoringData": {
        const { messageType: _, ...rest } = m;
        unit.monitoring = rest;
        this.#scheduleUnitsWrite();
        return;
      }
      case "requestBlobUrls":
        this.#answerBlobUrls(session, m.digests, m.correlationId).catch((err) =>
          this.#log.error("Cannot answer requestBlobUrls", { error: errorText(err) })
        );
        return;
      default:
        return;
    }
  }

  async #answerBlobUrls(
    session: Session,
    digests: string[],
    correlationId: string | undefined,
  ): Promise<void> {
    const items = [];
    for (const digest of digests) {
      const served = await this.blobs.served(digest);
      if (!served) {
        this.#log.warn("Unit asked for an unknown blob", { systemId: session.systemId, digest });
        continue;
      }
      items.push({
        digest,
        urls: [`${this.blobsUrl}/sha256/${digest.slice("sha256:".length)}`],
        sha256: served.sha3,
        size: served.size,
        decryptInfo: served.decryptInfo,
        signInfo: {
          ...served.signInfo,
          trustedTimestamp: new Date(served.signInfo.trustedTimestamp),
          ocspValues: [],
        },
      });
    }
    if (this.#sessions.get(session.systemId) !== session) return;
    this.#send(session, buildBlobUrls({ ...(correlationId ? { correlationId } : {}), items }));
  }

  #emit(e: DevcloudEvent): void {
    for (const l of [...this.#listeners]) {
      try {
        l(e);
      } catch (err) {
        this.#log.error("devcloud event listener failed", { error: errorText(err) });
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // files

  async #saveState(): Promise<void> {
    await writeJsonAtomic(this.#paths.state, this.#state);
  }

  #scheduleUnitsWrite(): void {
    if (this.#unitsTimer !== undefined || this.#closed) return;
    this.#unitsTimer = setTimeout(() => {
      this.#unitsTimer = undefined;
      this.#writeUnits().catch((err) =>
        this.#log.warn("Cannot write the units file", { error: errorText(err) })
      );
    }, 250);
  }

  #writeUnits(): Promise<void> {
    this.#unitsWrite = this.#unitsWrite.catch(() => {}).then(() =>
      writeJsonAtomic(this.#paths.units, { units: [...this.#units.values()] })
    );
    return this.#unitsWrite;
  }
}

interface TlsParts {
  cert: string;
  key: string;
  ca: string;
}

async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
  await Deno.rename(tmp, path);
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new AosError("invalidArgument", `Cannot read ${path}: ${errorText(err)}`, { cause: err });
  }
}

async function loadState(path: string): Promise<State> {
  const raw = await readJson(path);
  if (raw === undefined) {
    const state: State = {
      ownerId: crypto.randomUUID(),
      subjectId: crypto.randomUUID(),
      services: [],
    };
    await writeJsonAtomic(path, state);
    return state;
  }
  const parsed = stateSchema.safeParse(raw);
  if (!parsed.success) {
    throw new AosError("invalidArgument", `Invalid ${path}: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
}

/**
 * Units saved by a previous run. Only a loose shape check: dates come back as strings and the
 * file is ours, so a damaged one is dropped (with the next save) rather than fatal.
 */
async function loadUnits(path: string): Promise<UnitRecord[]> {
  let raw: unknown;
  try {
    raw = await readJson(path);
  } catch {
    return [];
  }
  const units = (raw as { units?: unknown } | undefined)?.units;
  if (!Array.isArray(units)) return [];
  return units.filter((u): u is UnitRecord =>
    typeof u === "object" && u !== null && typeof (u as UnitRecord).systemId === "string" &&
    typeof (u as UnitRecord).status === "object" && Array.isArray((u as UnitRecord).alerts)
  ).map((u) => ({
    ...u,
    alerts: u.alerts.map((a) => ({ ...a, timestamp: new Date(a.timestamp) })),
    monitoring: reviveMonitoring(u.monitoring),
  }));
}

/** Monitoring saved as JSON gets its timestamps back as `Date`s (through the message schema). */
function reviveMonitoring(saved: UnitRecord["monitoring"]): UnitRecord["monitoring"] {
  if (!saved) return undefined;
  const r = MESSAGE_SCHEMAS.monitoringData.safeParse({ ...saved, messageType: "monitoringData" });
  return r.success ? r.data : undefined;
}

/** Starts devcloud: loads or creates its PKI and state, and listens. */
export function startDevcloud(options: DevcloudOptions): Promise<Devcloud> {
  return Devcloud.start(options);
}

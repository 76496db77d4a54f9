/**
 * The IAM client of a component (SM, CM, MP): bootstrap of its own certificate over the public
 * server, mTLS to the protected server, re-subscribing streams, and credential rebuilds when
 * IAM reports that the component's certificate changed.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import type { InstanceIdent } from "@aos/proto/common/v2/common.ts";
import {
  type CertInfo as CertInfoMessage,
  IAMCertificateServiceClient,
  IAMNodesServiceClient,
  IAMPermissionsServiceClient,
  IAMProvisioningServiceClient,
  IAMPublicCertServiceClient,
  IAMPublicCurrentNodeServiceClient,
  IAMPublicIdentityServiceClient,
  IAMPublicNodesServiceClient,
  type NodeInfo,
  type Permissions,
  type SystemInfo,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import type { ErrorInfo } from "@aos/proto/common/v2/common.ts";
import { AosError, fromErrorInfo } from "../core/errors.ts";
import { type Logger, nullLogger } from "../core/logger.ts";
import { retry } from "../core/retry.ts";
import {
  clientChannelOptions,
  type ClientKeepalive,
  grpcTarget,
  loadClientCredentials,
  loadServerCredentials,
  readPem,
  tlsChannelOptions,
} from "../grpc/mod.ts";
import { aosErrorFromGrpc, callUnary, type UnaryMethod } from "../grpc/status.ts";
import { installGoawayGuard } from "../grpc/goaway_guard.ts";
import {
  type CertInfo,
  certInfoFromMessage,
  type TlsFiles,
  tlsFilesFromCertInfo,
} from "./cert_info.ts";
import {
  DEFAULT_RESUBSCRIBE_DELAY,
  keepSubscribed,
  type KeptSubscription,
  type ResubscribeDelay,
} from "./subscription.ts";

export type { NodeInfo, SystemInfo };

/** Removes a listener. */
export type Unsubscribe = () => void;

/** Deadline of unary IAM calls (upstream IAM clients: 10 s). */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/** Deadline of StartProvisioning, FinishProvisioning and Deprovision (upstream: 10 min). */
export const DEFAULT_PROVISIONING_TIMEOUT_MS = 600_000;
/** Wait after a certificate change before switching credentials (upstream: 10 s). */
export const DEFAULT_CERT_RECONNECT_DELAY_MS = 10_000;

/** Options of {@link createIamClient}. */
export interface IamClientOptions {
  /** IAM public server, `host:port` (`":8090"` means localhost). */
  publicUrl: string;
  /** IAM protected server (`":8089"`); absent or empty when the component never calls it. */
  protectedUrl?: string;
  /** PEM root CA (`caCert`) the IAM servers' certificate is verified against. */
  caCert: string;
  /** The component's own cert type in IAM (`certStorage`: `sm`, `cm`, …). */
  certStorage: string;
  /**
   * Plaintext to both servers and no certificate of our own (IAM in provisioning mode, tests).
   * The credentials handed out are then insecure too.
   */
  insecure?: boolean;
  /** Receives connection and rebuild records. */
  logger?: Logger;
  /** Unary deadline, ms (default {@link DEFAULT_CALL_TIMEOUT_MS}). */
  callTimeoutMs?: number;
  /** Start/Finish/Deprovision deadline, ms (default {@link DEFAULT_PROVISIONING_TIMEOUT_MS}). */
  provisioningTimeoutMs?: number;
  /** Delay between a cert change and the switch, ms (default 10 s; also the retry interval). */
  certReconnectDelayMs?: number;
  /** Back-off between re-subscriptions (default 0.5 s doubling to 3 s). */
  resubscribeDelay?: ResubscribeDelay;
  /**
   * Attempts of the start-up GetCert while IAM is unreachable (default 3, 1 s then 2 s apart;
   * `Infinity` waits for IAM). Other failures are not retried.
   */
  connectTries?: number;
  /** Stops the start-up attempts. */
  signal?: AbortSignal;
  /** Keepalive overrides (default: the C++ clients' 10 s / 3 s). */
  keepalive?: Partial<ClientKeepalive>;
}

interface Credentials {
  cert: CertInfo;
  files: TlsFiles;
  client: grpc.ChannelCredentials;
  server: grpc.ServerCredentials;
}

interface PublicClients {
  cert: IAMPublicCertServiceClient;
  identity: IAMPublicIdentityServiceClient;
  currentNode: IAMPublicCurrentNodeServiceClient;
  nodes: IAMPublicNodesServiceClient;
}

interface ProtectedClients {
  permissions: IAMPermissionsServiceClient;
  certificate: IAMCertificateServiceClient;
  provisioning: IAMProvisioningServiceClient;
  nodes: IAMNodesServiceClient;
}

/** Function name to permission string, per functional server id (`RegisterInstance`). */
export type InstancePermissions = Record<string, Record<string, string>>;

async function serialOf(certFile: string): Promise<string> {
  try {
    return new X509Certificate(await readPem(certFile, "certificate")).serialNumber.toLowerCase();
  } catch (err) {
    if (err instanceof AosError) throw err;
    throw new AosError("invalidArgument", `Cannot parse certificate ${certFile}: ${err}`, {
      cause: err,
    });
  }
}

function causeChainHasStatus(err: unknown, codes: readonly number[]): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "number" && codes.includes(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** Whether an IAM call failed because IAM could not be reached (worth retrying). */
export function isUnreachable(err: unknown): boolean {
  return causeChainHasStatus(err, [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);
}

function callFailed(what: string, err: unknown): AosError {
  const e = err instanceof AosError ? err : aosErrorFromGrpc(err);
  return new AosError(e.code, `IAM ${what} failed: ${e.message}`, {
    cause: e,
    exitCode: e.exitCode,
  });
}

function checkResponse(what: string, error: ErrorInfo | undefined): void {
  const e = fromErrorInfo(error);
  if (e) throw new AosError(e.code, `IAM ${what} failed: ${e.message}`, { exitCode: e.exitCode });
}

/**
 * Connects to the node's IAM. Unless `insecure`, it first asks the public server (server-only
 * TLS, verified against `caCert`) for the component's `certStorage` certificate, then uses those
 * files for mTLS to the protected server. Close it with `await using` or {@link IamClient.close}.
 */
export async function createIamClient(options: IamClientOptions): Promise<IamClient> {
  const client = new IamClient(options);
  try {
    await client.start();
  } catch (err) {
    await client.close();
    throw err;
  }
  return client;
}

/** A component's client of its node's IAM. Create it with {@link createIamClient}. */
export class IamClient implements AsyncDisposable {
  readonly #opts: IamClientOptions;
  readonly #log: Logger;
  readonly #callTimeoutMs: number;
  readonly #provisioningTimeoutMs: number;
  readonly #certDelayMs: number;
  readonly #resubscribe: ResubscribeDelay;
  readonly #abort = new AbortController();
  readonly #subscriptions = new Set<KeptSubscription>();
  readonly #stopping = new Set<Promise<void>>();
  readonly #credentialListeners = new Set<(files: TlsFiles) => void | Promise<void>>();
  #public: PublicClients | undefined;
  #protected: ProtectedClients | undefined;
  #creds: Credentials | undefined;
  #certWatch: KeptSubscription | undefined;
  #rebuildTimer: ReturnType<typeof setTimeout> | undefined;
  #rebuilding: Promise<void> = Promise.resolve();
  #closing: Promise<void> | undefined;

  /** Use {@link createIamClient}, which also connects. */
  constructor(options: IamClientOptions) {
    this.#opts = options;
    this.#log = options.logger ?? nullLogger;
    this.#callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#provisioningTimeoutMs = options.provisioningTimeoutMs ?? DEFAULT_PROVISIONING_TIMEOUT_MS;
    this.#certDelayMs = options.certReconnectDelayMs ?? DEFAULT_CERT_RECONNECT_DELAY_MS;
    this.#resubscribe = options.resubscribeDelay ?? DEFAULT_RESUBSCRIBE_DELAY;
  }

  /**
   * Opens the public channel, fetches the component's certificate (unless insecure), opens the
   * protected channel and starts watching for certificate changes. Called by
   * {@link createIamClient}.
   */
  async start(): Promise<void> {
    if (this.#public) throw new AosError("wrongState", "IAM client already started");
    const o = this.#opts;
    const publicCreds = o.insecure
      ? grpc.credentials.createInsecure()
      : await loadClientCredentials({ mode: "tls", ca: o.caCert });
    this.#public = this.#makePublicClients(publicCreds);
    if (!o.insecure) {
      const signal = o.signal
        ? AbortSignal.any([o.signal, this.#abort.signal])
        : this.#abort.signal;
      this.#creds = await retry(() => this.#loadCredentials(), {
        tries: o.connectTries ?? 3,
        initialDelayMs: 1_000,
        maxDelayMs: 3_000,
        signal,
        shouldRetry: isUnreachable,
        onRetry: (err, attempt, delayMs) =>
          this.#log.warn("IAM not reachable yet, retrying", { attempt, delayMs, error: err }),
      });
    }
    this.#protected = this.#makeProtectedClients();
    if (!o.insecure) {
      this.#certWatch = this.#keep(
        `SubscribeCertChanged(${o.certStorage})`,
        () => this.#publicClients().cert.subscribeCertChanged({ type: o.certStorage }),
        () => this.#scheduleRebuild(),
      );
    }
    this.#log.info("IAM client connected", {
      publicUrl: o.publicUrl,
      protectedUrl: o.protectedUrl ?? "",
      certStorage: o.certStorage,
      insecure: o.insecure ?? false,
      ...(this.#creds ? { serial: this.#creds.cert.serial } : {}),
    });
  }

  // ---- credentials for the caller's own connections ----

  /** The component's current cert, key and CA files; `undefined` when insecure. */
  tlsFiles(): TlsFiles | undefined {
    return this.#creds ? { ...this.#creds.files } : undefined;
  }

  /** The component's current certificate as IAM reported it; `undefined` when insecure. */
  certInfo(): CertInfo | undefined {
    const cert = this.#creds?.cert;
    return cert ? { ...cert, issuer: cert.issuer.slice() } : undefined;
  }

  /**
   * Client credentials presenting the component's certificate and verifying peers against the
   * CA (e.g. SM → CM). Insecure when the client is. Ask again after a credentials change.
   */
  clientCredentials(): grpc.ChannelCredentials {
    return this.#creds?.client ?? grpc.credentials.createInsecure();
  }

  /**
   * Server credentials with the component's certificate that require client certificates
   * issued by the CA (e.g. CM's SM server). Insecure when the client is.
   */
  serverCredentials(): grpc.ServerCredentials {
    return this.#creds?.server ?? grpc.ServerCredentials.createInsecure();
  }

  /**
   * Calls `listener` after the component's credentials were rebuilt for a new certificate;
   * listeners run one after another and are awaited (reconnect your channels there).
   */
  onCredentialsChanged(listener: (files: TlsFiles) => void | Promise<void>): Unsubscribe {
    this.#credentialListeners.add(listener);
    return () => this.#credentialListeners.delete(listener);
  }

  // ---- public server ----

  /** `GetSystemInfo`: system id, unit model, version (main node only). */
  async getSystemInfo(): Promise<SystemInfo> {
    const c = this.#publicClients().identity;
    return await this.#unary(c.getSystemInfo.bind(c), {}, "GetSystemInfo");
  }

  /** `GetSubjects` (main node only). */
  async getSubjects(): Promise<string[]> {
    const c = this.#publicClients().identity;
    return (await this.#unary(c.getSubjects.bind(c), {}, "GetSubjects")).subjects;
  }

  /** `GetCurrentNodeInfo`: this node. */
  async getCurrentNodeInfo(): Promise<NodeInfo> {
    const c = this.#publicClients().currentNode;
    return await this.#unary(c.getCurrentNodeInfo.bind(c), {}, "GetCurrentNodeInfo");
  }

  /** `GetNodeInfo` of any node of the unit (main node only). */
  async getNodeInfo(nodeId: string): Promise<NodeInfo> {
    const c = this.#publicClients().nodes;
    return await this.#unary(c.getNodeInfo.bind(c), { nodeId }, `GetNodeInfo("${nodeId}")`);
  }

  /** `GetAllNodeIDs` (main node only). */
  async getAllNodeIds(): Promise<string[]> {
    const c = this.#publicClients().nodes;
    return (await this.#unary(c.getAllNodeIDs.bind(c), {}, "GetAllNodeIDs")).ids;
  }

  /**
   * `GetCert`: the newest certificate of `type`, or with `issuer` (DER) and `serial` (hex) the
   * one that matches. Only type and URLs are filled by IAM.
   */
  async getCert(type: string, issuer?: Uint8Array, serial?: string): Promise<CertInfo> {
    return certInfoFromMessage(await this.#getCertMessage(type, issuer, serial));
  }

  /** Calls `listener` with each new certificate of `type` (re-subscribes after failures). */
  subscribeCertChanged(type: string, listener: (cert: CertInfo) => void): Unsubscribe {
    return this.#subscribe(
      `SubscribeCertChanged(${type})`,
      () => this.#publicClients().cert.subscribeCertChanged({ type }),
      (m: CertInfoMessage) => listener(certInfoFromMessage(m)),
    );
  }

  /** Calls `listener` with the NodeInfo of any node that changed (main node only). */
  subscribeNodeChanged(listener: (node: NodeInfo) => void): Unsubscribe {
    return this.#subscribe(
      "SubscribeNodeChanged",
      () => this.#publicClients().nodes.subscribeNodeChanged({}),
      listener,
    );
  }

  /** Calls `listener` with this node's NodeInfo whenever it changes. */
  subscribeCurrentNodeChanged(listener: (node: NodeInfo) => void): Unsubscribe {
    return this.#subscribe(
      "SubscribeCurrentNodeChanged",
      () => this.#publicClients().currentNode.subscribeCurrentNodeChanged({}),
      listener,
    );
  }

  /** Calls `listener` with the unit's subjects whenever they change (main node only). */
  subscribeSubjectsChanged(listener: (subjects: string[]) => void): Unsubscribe {
    return this.#subscribe(
      "SubscribeSubjectsChanged",
      () => this.#publicClients().identity.subscribeSubjectsChanged({}),
      (m: { subjects: string[] }) => listener(m.subjects),
    );
  }

  // ---- protected server ----

  /**
   * `RegisterInstance`: registers an instance's permissions (functional server id → function →
   * permission) and returns its secret (the same secret again for a registered instance).
   */
  async registerInstance(
    instance: InstanceIdent,
    permissions: InstancePermissions,
  ): Promise<string> {
    const c = this.#protectedClients("RegisterInstance").permissions;
    const perms: Record<string, Permissions> = {};
    for (const [server, functions] of Object.entries(permissions)) {
      perms[server] = { permissions: { ...functions } };
    }
    const res = await this.#unary(
      c.registerInstance.bind(c),
      { instance, permissions: perms },
      `RegisterInstance(${instance.itemId}/${instance.subjectId}/${instance.instance})`,
    );
    return res.secret;
  }

  /** `UnregisterInstance`. */
  async unregisterInstance(instance: InstanceIdent): Promise<void> {
    const c = this.#protectedClients("UnregisterInstance").permissions;
    await this.#unary(
      c.unregisterInstance.bind(c),
      { instance },
      `UnregisterInstance(${instance.itemId}/${instance.subjectId}/${instance.instance})`,
    );
  }

  /** `CreateKey`: a new key of `type` on `nodeId` (empty subject: the system id); returns the CSR. */
  async createKey(
    nodeId: string,
    type: string,
    subject: string,
    password: string,
  ): Promise<string> {
    const c = this.#protectedClients("CreateKey").certificate;
    const what = `CreateKey("${nodeId}", "${type}")`;
    const res = await this.#unary(
      c.createKey.bind(c),
      { nodeId, type, subject, password },
      what,
    );
    checkResponse(what, res.error);
    return res.csr;
  }

  /** `ApplyCert`: installs a PEM chain for `type` on `nodeId` (the key URL is not filled). */
  async applyCert(nodeId: string, type: string, cert: string): Promise<CertInfo> {
    const c = this.#protectedClients("ApplyCert").certificate;
    const what = `ApplyCert("${nodeId}", "${type}")`;
    const res = await this.#unary(c.applyCert.bind(c), { nodeId, type, cert }, what);
    checkResponse(what, res.error);
    if (!res.certInfo) throw new AosError("failed", `IAM ${what} answered without cert info`);
    return certInfoFromMessage(res.certInfo);
  }

  /** `GetCertTypes` of `nodeId`. */
  async getCertTypes(nodeId: string): Promise<string[]> {
    const c = this.#protectedClients("GetCertTypes").provisioning;
    return (await this.#unary(c.getCertTypes.bind(c), { nodeId }, `GetCertTypes("${nodeId}")`))
      .types;
  }

  /** `StartProvisioning` of `nodeId` (10 min deadline by default). */
  async startProvisioning(nodeId: string, password: string): Promise<void> {
    const c = this.#protectedClients("StartProvisioning").provisioning;
    const what = `StartProvisioning("${nodeId}")`;
    const res = await this.#unary(
      c.startProvisioning.bind(c),
      { nodeId, password },
      what,
      this.#provisioningTimeoutMs,
    );
    checkResponse(what, res.error);
  }

  /** `FinishProvisioning` of `nodeId` (10 min deadline by default). */
  async finishProvisioning(nodeId: string, password: string): Promise<void> {
    const c = this.#protectedClients("FinishProvisioning").provisioning;
    const what = `FinishProvisioning("${nodeId}")`;
    const res = await this.#unary(
      c.finishProvisioning.bind(c),
      { nodeId, password },
      what,
      this.#provisioningTimeoutMs,
    );
    checkResponse(what, res.error);
  }

  /** `Deprovision` of `nodeId` (10 min deadline by default). */
  async deprovision(nodeId: string, password: string): Promise<void> {
    const c = this.#protectedClients("Deprovision").provisioning;
    const what = `Deprovision("${nodeId}")`;
    const res = await this.#unary(
      c.deprovision.bind(c),
      { nodeId, password },
      what,
      this.#provisioningTimeoutMs,
    );
    checkResponse(what, res.error);
  }

  /** `PauseNode`. */
  async pauseNode(nodeId: string): Promise<void> {
    const c = this.#protectedClients("PauseNode").nodes;
    const what = `PauseNode("${nodeId}")`;
    checkResponse(what, (await this.#unary(c.pauseNode.bind(c), { nodeId }, what)).error);
  }

  /** `ResumeNode`. */
  async resumeNode(nodeId: string): Promise<void> {
    const c = this.#protectedClients("ResumeNode").nodes;
    const what = `ResumeNode("${nodeId}")`;
    checkResponse(what, (await this.#unary(c.resumeNode.bind(c), { nodeId }, what)).error);
  }

  // ---- lifecycle ----

  /** Cancels streams, pending calls and timers, and closes both channels. Idempotent. */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      this.#abort.abort(new AosError("canceled", "IAM client is closed"));
      clearTimeout(this.#rebuildTimer);
      this.#rebuildTimer = undefined;
      const subs = [...this.#subscriptions, ...(this.#certWatch ? [this.#certWatch] : [])];
      this.#subscriptions.clear();
      await Promise.allSettled([
        ...subs.map((s) => s.stop()),
        ...this.#stopping,
        this.#rebuilding,
      ]);
      this.#public?.cert.close();
      this.#protected?.permissions.close();
      this.#credentialListeners.clear();
    })();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- internals ----

  #checkOpen(): void {
    if (this.#closing) throw new AosError("wrongState", "IAM client is closed");
  }

  #publicClients(): PublicClients {
    this.#checkOpen();
    if (!this.#public) throw new AosError("wrongState", "IAM client is not started");
    return this.#public;
  }

  #protectedClients(what: string): ProtectedClients {
    this.#checkOpen();
    if (!this.#protected) {
      throw new AosError(
        "wrongState",
        `Cannot call IAM ${what}: no protected server URL is configured`,
      );
    }
    return this.#protected;
  }

  #channelOptions(target: string, secure: boolean): Partial<grpc.ClientOptions> {
    installGoawayGuard(this.#log); // every channel of this client is made with these options
    return {
      ...clientChannelOptions(this.#opts.keepalive),
      ...(secure ? tlsChannelOptions(target) : {}),
    };
  }

  // All services of one server share one channel: one connection, one close.
  #makePublicClients(creds: grpc.ChannelCredentials): PublicClients {
    const target = grpcTarget(this.#opts.publicUrl);
    const cert = new IAMPublicCertServiceClient(
      target,
      creds,
      this.#channelOptions(target, !this.#opts.insecure),
    );
    const shared = { channelOverride: cert.getChannel() };
    return {
      cert,
      identity: new IAMPublicIdentityServiceClient(target, creds, shared),
      currentNode: new IAMPublicCurrentNodeServiceClient(target, creds, shared),
      nodes: new IAMPublicNodesServiceClient(target, creds, shared),
    };
  }

  #makeProtectedClients(): ProtectedClients | undefined {
    const url = this.#opts.protectedUrl;
    if (!url) return undefined;
    const target = grpcTarget(url);
    const creds = this.clientCredentials();
    const permissions = new IAMPermissionsServiceClient(
      target,
      creds,
      this.#channelOptions(target, !this.#opts.insecure),
    );
    const shared = { channelOverride: permissions.getChannel() };
    return {
      permissions,
      certificate: new IAMCertificateServiceClient(target, creds, shared),
      provisioning: new IAMProvisioningServiceClient(target, creds, shared),
      nodes: new IAMNodesServiceClient(target, creds, shared),
    };
  }

  async #unary<Req, Res>(
    method: UnaryMethod<Req, Res>,
    request: Req,
    what: string,
    timeoutMs = this.#callTimeoutMs,
  ): Promise<Res> {
    try {
      return await callUnary(method, request, { timeoutMs, signal: this.#abort.signal });
    } catch (err) {
      throw callFailed(what, err);
    }
  }

  #getCertMessage(type: string, issuer?: Uint8Array, serial?: string): Promise<CertInfoMessage> {
    const c = this.#publicClients().cert;
    return this.#unary(
      c.getCert.bind(c),
      { type, issuer: issuer ?? new Uint8Array(), serial: serial ?? "" },
      `GetCert("${type}")`,
    );
  }

  async #loadCredentials(): Promise<Credentials> {
    const o = this.#opts;
    const cert = certInfoFromMessage(await this.#getCertMessage(o.certStorage));
    const files = tlsFilesFromCertInfo(cert, o.caCert);
    // GetCert answers carry no serial; the file has it (for logs and certInfo()).
    if (!cert.serial) cert.serial = await serialOf(files.certFile);
    const security = { ca: files.caFile, cert: files.certFile, key: files.keyFile };
    const [client, server] = await Promise.all([
      loadClientCredentials({ mode: "mtls", ...security }),
      loadServerCredentials({ mode: "mtls", ...security }),
    ]);
    return { cert, files, client, server };
  }

  #keep<T>(
    name: string,
    open: () => grpc.ClientReadableStream<T>,
    onMessage: (m: T) => void,
  ): KeptSubscription {
    return keepSubscribed({
      name,
      open,
      onMessage,
      delay: this.#resubscribe,
      logger: this.#log,
    });
  }

  #subscribe<T>(
    name: string,
    open: () => grpc.ClientReadableStream<T>,
    onMessage: (m: T) => void,
  ): Unsubscribe {
    this.#checkOpen();
    const sub = this.#keep(name, open, onMessage);
    this.#subscriptions.add(sub);
    return () => {
      if (!this.#subscriptions.delete(sub)) return;
      const stopped = sub.stop().finally(() => this.#stopping.delete(stopped));
      this.#stopping.add(stopped);
    };
  }

  // Upstream waits before reconnecting so IAM can finish storing the cert; a burst of changes
  // leads to one rebuild.
  #scheduleRebuild(): void {
    if (this.#closing) return;
    clearTimeout(this.#rebuildTimer);
    this.#log.info("IAM reports a new certificate, switching credentials soon", {
      certStorage: this.#opts.certStorage,
      delayMs: this.#certDelayMs,
    });
    this.#rebuildTimer = setTimeout(() => {
      this.#rebuildTimer = undefined;
      this.#rebuilding = this.#rebuilding.then(() => this.#rebuild());
    }, this.#certDelayMs);
  }

  async #rebuild(): Promise<void> {
    if (this.#closing) return;
    let creds: Credentials;
    try {
      creds = await this.#loadCredentials();
    } catch (err) {
      if (this.#closing) return;
      this.#log.error("Cannot switch to the new IAM certificate, retrying", {
        certStorage: this.#opts.certStorage,
        delayMs: this.#certDelayMs,
        error: err,
      });
      this.#scheduleRebuild();
      return;
    }
    if (this.#closing) return;
    const old = this.#protected;
    this.#creds = creds;
    this.#protected = this.#makeProtectedClients();
    old?.permissions.close();
    this.#log.info("IAM client switched to a new certificate", {
      certStorage: this.#opts.certStorage,
      serial: creds.cert.serial,
    });
    for (const listener of [...this.#credentialListeners]) {
      try {
        await listener({ ...creds.files });
      } catch (err) {
        this.#log.error("IAM credentials listener failed", { error: err });
      }
    }
  }
}

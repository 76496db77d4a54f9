/**
 * Handlers of every iamanager.v6 service, mapping requests onto IAM's core, and the service
 * sets of the public and the protected server (upstream exposure matrix).
 *
 * Errors follow upstream: node, provisioning and certificate responses carry business errors
 * in their `error` field with status OK; look-ups (GetCert, GetPermissions, node info,
 * Register/UnregisterInstance, GetCertTypes) and undeliverable forwarded requests answer with
 * a gRPC status. Every request is validated first (see `validation.ts`).
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { ErrorInfo } from "@aos/proto/common/v2/common.ts";
import type { Empty } from "@aos/proto/google/protobuf/empty.ts";
import {
  type ApplyCertRequest,
  type ApplyCertResponse,
  type CertInfo as WireCertInfo,
  type CreateKeyRequest,
  type CreateKeyResponse,
  type IAMCertificateServiceServer,
  IAMCertificateServiceService,
  type IAMNodesServiceServer,
  IAMNodesServiceService,
  type IAMPermissionsServiceServer,
  IAMPermissionsServiceService,
  type IAMProvisioningServiceServer,
  IAMProvisioningServiceService,
  type IAMPublicCertServiceServer,
  IAMPublicCertServiceService,
  type IAMPublicCurrentNodeServiceServer,
  IAMPublicCurrentNodeServiceService,
  type IAMPublicIdentityServiceServer,
  IAMPublicIdentityServiceService,
  type IAMPublicNodesServiceServer,
  IAMPublicNodesServiceService,
  type IAMPublicPermissionsServiceServer,
  IAMPublicPermissionsServiceService,
  type NodeInfo,
  type Subjects,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import {
  type IAMVersionServiceServer,
  IAMVersionServiceService,
} from "@aos/proto/iamanager/version.ts";
import { AosError, toErrorInfo } from "@aos/shared/errors";
import { grpcErrorFrom, type GrpcService } from "@aos/shared/grpc";
import type { Logger } from "@aos/shared/logger";
import type { CertHandler } from "../core/cert_handler.ts";
import type { CurrentNode } from "../core/current_node.ts";
import type { NodeManager } from "../core/node_manager.ts";
import type { InstanceIdent, PermHandler } from "../core/perm_handler.ts";
import type { IdentProvider, Unsubscribe } from "../core/types.ts";
import { Fanout } from "./fanout.ts";
import { type NodeController, NodeUnreachableError, type ServerKind } from "./node_controller.ts";
import type { ProvisioningRouter } from "./router.ts";
import {
  applyCertRequest,
  createKeyRequest,
  getCertRequest,
  nodeRequest,
  parseRequest,
  passwordRequest,
  permissionsRequest,
  registerInstanceRequest,
  subscribeCertRequest,
  unregisterInstanceRequest,
} from "./validation.ts";
import { certInfoToWire } from "./wire.ts";

/** The API generation this IAM speaks (`IAMVersionService.GetAPIVersion`). */
export const IAM_API_VERSION = 6n;

/** Options of {@link IamStreams}. */
export interface IamStreamsDeps {
  node: CurrentNode;
  certs: CertHandler;
  nodes?: NodeManager;
  ident?: IdentProvider;
  logger: Logger;
  /** Per-subscriber queue length. */
  capacity?: number;
}

/** The change feeds behind the `Subscribe*` streams, fed from the core's listeners. */
export class IamStreams implements Disposable {
  /** `SubscribeCurrentNodeChanged`. */
  readonly currentNode: Fanout<NodeInfo>;
  /** `SubscribeNodeChanged` (main node). */
  readonly nodes: Fanout<NodeInfo>;
  /** `SubscribeSubjectsChanged` (main node). */
  readonly subjects: Fanout<Subjects>;
  readonly #certs = new Map<string, Fanout<WireCertInfo>>();
  readonly #unsubscribe: Unsubscribe[] = [];

  constructor(deps: IamStreamsDeps) {
    const base = { logger: deps.logger, ...(deps.capacity ? { capacity: deps.capacity } : {}) };
    this.currentNode = new Fanout({ ...base, name: "SubscribeCurrentNodeChanged" });
    this.nodes = new Fanout({ ...base, name: "SubscribeNodeChanged", keyOf: (n) => n.nodeId });
    this.subjects = new Fanout({ ...base, name: "SubscribeSubjectsChanged" });
    this.#unsubscribe.push(deps.node.subscribe((info) => this.currentNode.publish(info)));
    if (deps.nodes) {
      this.#unsubscribe.push(deps.nodes.subscribe((e) => this.nodes.publish(e.info)));
    }
    if (deps.ident) {
      this.#unsubscribe.push(
        deps.ident.subscribeSubjects((subjects) => this.subjects.publish({ subjects })),
      );
    }
    for (const type of deps.certs.allCertTypes()) {
      const fanout = new Fanout<WireCertInfo>({ ...base, name: `SubscribeCertChanged(${type})` });
      this.#certs.set(type, fanout);
      this.#unsubscribe.push(
        deps.certs.subscribeCertChanged(type, (cert) => fanout.publish(certInfoToWire(cert))),
      );
    }
  }

  /** The feed of a cert type, `undefined` for an unknown type. */
  certs(type: string): Fanout<WireCertInfo> | undefined {
    return this.#certs.get(type);
  }

  /** Ends every subscriber stream with status OK. */
  closeAll(): void {
    this.currentNode.closeAll();
    this.nodes.closeAll();
    this.subjects.closeAll();
    for (const f of this.#certs.values()) f.closeAll();
  }

  [Symbol.dispose](): void {
    for (const u of this.#unsubscribe.splice(0)) u();
    this.closeAll();
  }
}

/** What the handlers work on. */
export interface IamServiceDeps {
  node: CurrentNode;
  certs: CertHandler;
  router: ProvisioningRouter;
  streams: IamStreams;
  logger: Logger;
  /** Main node with an identifier: the identity service. */
  ident?: IdentProvider;
  /** With `enablePermissionsHandler`: the permission services. */
  perm?: PermHandler;
  /** Main node: the registry and the secondary streams (nodes, provisioning, certificates). */
  nodes?: NodeManager;
  controller?: NodeController;
}

/** A unary handler whose failures become a gRPC status (logged at debug level). */
function statusHandler<Req, Res>(
  logger: Logger,
  what: string,
  fn: (request: Req) => Promise<Res> | Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then((res) => callback(null, res), (err) => {
        logger.debug(`${what} failed`, { error: err });
        callback(grpcErrorFrom(err));
      });
  };
}

/**
 * A unary handler whose business failures go into the response's `error` (status OK), while a
 * request that could not reach its node answers with a gRPC status.
 */
function errorInfoHandler<Req, Res>(
  logger: Logger,
  what: string,
  fn: (request: Req) => Promise<Res>,
  failed: (request: Req, error: ErrorInfo) => Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then((res) => callback(null, res), (err) => {
        logger.warn(`${what} failed`, { error: err });
        if (err instanceof NodeUnreachableError) callback(grpcErrorFrom(err));
        else callback(null, failed(call.request, toErrorInfo(err)));
      });
  };
}

/** Attaches a server stream to a feed, or ends it with the error status. */
function streamTo<Req, Res>(
  call: grpc.ServerWritableStream<Req, Res>,
  feed: () => Fanout<Res>,
): void {
  try {
    feed().attach(call as grpc.ServerWritableStream<unknown, Res>);
  } catch (err) {
    call.emit("error", grpcErrorFrom(err));
  }
}

/** A successful response of the RPCs whose only field is `error`. */
function noError(): { error: ErrorInfo | undefined } {
  return { error: undefined };
}

function versionService(): GrpcService {
  const impl: IAMVersionServiceServer = {
    getApiVersion: (_call, callback) => callback(null, { version: IAM_API_VERSION }),
  };
  return { definition: IAMVersionServiceService, implementation: impl };
}

function currentNodeService(d: IamServiceDeps): GrpcService {
  const impl: IAMPublicCurrentNodeServiceServer = {
    getCurrentNodeInfo: statusHandler(d.logger, "GetCurrentNodeInfo", () => d.node.info),
    subscribeCurrentNodeChanged: (call) => streamTo(call, () => d.streams.currentNode),
  };
  return { definition: IAMPublicCurrentNodeServiceService, implementation: impl };
}

function certService(d: IamServiceDeps): GrpcService {
  const impl: IAMPublicCertServiceServer = {
    getCert: statusHandler(d.logger, "GetCert", async (req) => {
      const { type, issuer, serial } = parseRequest(getCertRequest, req, "GetCert");
      return certInfoToWire(await d.certs.getCert(type, issuer, serial));
    }),
    subscribeCertChanged: (call) =>
      streamTo(call, () => {
        const { type } = parseRequest(subscribeCertRequest, call.request, "SubscribeCertChanged");
        const feed = d.streams.certs(type);
        if (!feed) throw new AosError("notFound", `Unknown cert type "${type}"`);
        return feed;
      }),
  };
  return { definition: IAMPublicCertServiceService, implementation: impl };
}

function toInstanceIdent(i: InstanceIdent): InstanceIdent {
  return {
    itemId: i.itemId,
    subjectId: i.subjectId,
    instance: i.instance,
    type: i.type,
    preinstalled: i.preinstalled,
  };
}

function publicPermissionsService(d: IamServiceDeps, perm: PermHandler): GrpcService {
  const impl: IAMPublicPermissionsServiceServer = {
    getPermissions: statusHandler(d.logger, "GetPermissions", (req) => {
      const r = parseRequest(permissionsRequest, req, "GetPermissions");
      const { ident, permissions } = perm.getPermissions(r.secret, r.functionalServerId);
      return { instance: toInstanceIdent(ident), permissions: { permissions } };
    }),
  };
  return { definition: IAMPublicPermissionsServiceService, implementation: impl };
}

function permissionsService(d: IamServiceDeps, perm: PermHandler): GrpcService {
  const impl: IAMPermissionsServiceServer = {
    registerInstance: statusHandler(d.logger, "RegisterInstance", (req) => {
      const r = parseRequest(registerInstanceRequest, req, "RegisterInstance");
      const perms = Object.fromEntries(
        Object.entries(r.permissions).map(([server, p]) => [server, { ...p.permissions }]),
      );
      return { secret: perm.registerInstance(toInstanceIdent(r.instance), perms) };
    }),
    unregisterInstance: statusHandler(d.logger, "UnregisterInstance", (req): Empty => {
      const r = parseRequest(unregisterInstanceRequest, req, "UnregisterInstance");
      perm.unregisterInstance(toInstanceIdent(r.instance));
      return {};
    }),
  };
  return { definition: IAMPermissionsServiceService, implementation: impl };
}

function identityService(d: IamServiceDeps, ident: IdentProvider): GrpcService {
  const impl: IAMPublicIdentityServiceServer = {
    getSystemInfo: statusHandler(d.logger, "GetSystemInfo", () => ident.getSystemInfo()),
    getSubjects: statusHandler(d.logger, "GetSubjects", async () => ({
      subjects: await ident.getSubjects(),
    })),
    subscribeSubjectsChanged: (call) => streamTo(call, () => d.streams.subjects),
  };
  return { definition: IAMPublicIdentityServiceService, implementation: impl };
}

function publicNodesService(
  d: IamServiceDeps,
  nodes: NodeManager,
  controller: NodeController,
  server: ServerKind,
): GrpcService {
  const impl: IAMPublicNodesServiceServer = {
    getAllNodeIDs: statusHandler(d.logger, "GetAllNodeIDs", () => ({
      ids: nodes.getAllNodeIds(),
    })),
    getNodeInfo: statusHandler(d.logger, "GetNodeInfo", (req) => {
      const { nodeId } = parseRequest(nodeRequest, req, "GetNodeInfo");
      return nodes.getNodeInfo(nodeId || d.node.nodeId);
    }),
    subscribeNodeChanged: (call) => streamTo(call, () => d.streams.nodes),
    registerNode: controller.handler(server),
  };
  return { definition: IAMPublicNodesServiceService, implementation: impl };
}

function nodesService(d: IamServiceDeps): GrpcService {
  const { router, logger } = d;
  const impl: IAMNodesServiceServer = {
    pauseNode: errorInfoHandler(logger, "PauseNode", async (req) => {
      const { nodeId } = parseRequest(nodeRequest, req, "PauseNode");
      await router.pause(nodeId);
      return noError();
    }, (_req, error) => ({ error })),
    resumeNode: errorInfoHandler(logger, "ResumeNode", async (req) => {
      const { nodeId } = parseRequest(nodeRequest, req, "ResumeNode");
      await router.resume(nodeId);
      return noError();
    }, (_req, error) => ({ error })),
  };
  return { definition: IAMNodesServiceService, implementation: impl };
}

function provisioningService(d: IamServiceDeps): GrpcService {
  const { router, logger } = d;
  const impl: IAMProvisioningServiceServer = {
    getCertTypes: statusHandler(logger, "GetCertTypes", async (req) => {
      const { nodeId } = parseRequest(nodeRequest, req, "GetCertTypes");
      return { types: await router.getCertTypes(nodeId) };
    }),
    startProvisioning: errorInfoHandler(logger, "StartProvisioning", async (req) => {
      const r = parseRequest(passwordRequest, req, "StartProvisioning");
      await router.startProvisioning(r.nodeId, r.password);
      return noError();
    }, (_req, error) => ({ error })),
    finishProvisioning: errorInfoHandler(logger, "FinishProvisioning", async (req) => {
      const r = parseRequest(passwordRequest, req, "FinishProvisioning");
      await router.finishProvisioning(r.nodeId, r.password);
      return noError();
    }, (_req, error) => ({ error })),
    deprovision: errorInfoHandler(logger, "Deprovision", async (req) => {
      const r = parseRequest(passwordRequest, req, "Deprovision");
      await router.deprovision(r.nodeId, r.password);
      return noError();
    }, (_req, error) => ({ error })),
  };
  return { definition: IAMProvisioningServiceService, implementation: impl };
}

function certificateService(d: IamServiceDeps): GrpcService {
  const { router, logger } = d;
  const impl: IAMCertificateServiceServer = {
    createKey: errorInfoHandler<CreateKeyRequest, CreateKeyResponse>(
      logger,
      "CreateKey",
      async (req) => {
        const r = parseRequest(createKeyRequest, req, "CreateKey");
        const csr = await router.createKey(r.nodeId, r.type, r.subject, r.password);
        return { nodeId: r.nodeId, type: r.type, csr, error: undefined };
      },
      (req, error) => ({ nodeId: req.nodeId, type: req.type, csr: "", error }),
    ),
    applyCert: errorInfoHandler<ApplyCertRequest, ApplyCertResponse>(
      logger,
      "ApplyCert",
      async (req) => {
        const r = parseRequest(applyCertRequest, req, "ApplyCert");
        const certInfo = await router.applyCert(r.nodeId, r.type, r.cert);
        return { nodeId: r.nodeId, certInfo, error: undefined };
      },
      (req, error) => ({ nodeId: req.nodeId, certInfo: undefined, error }),
    ),
  };
  return { definition: IAMCertificateServiceService, implementation: impl };
}

/**
 * The services of one server. Public: version, current node, certificates, public
 * permissions (if enabled), identity (main, with an identifier), public nodes (main).
 * Protected: all of that plus instance permissions (if enabled) and, on the main node, node
 * states, provisioning and certificates. A secondary node serves no node/provisioning
 * services: the main IAM reaches it through its `RegisterNode` stream.
 */
export function iamServices(d: IamServiceDeps, server: ServerKind): GrpcService[] {
  const main = d.nodes !== undefined && d.controller !== undefined;
  const out = [versionService(), currentNodeService(d), certService(d)];
  if (d.perm) out.push(publicPermissionsService(d, d.perm));
  if (main && d.ident) out.push(identityService(d, d.ident));
  if (main) out.push(publicNodesService(d, d.nodes!, d.controller!, server));
  if (server === "protected") {
    if (d.perm) out.push(permissionsService(d, d.perm));
    if (main) out.push(nodesService(d), provisioningService(d), certificateService(d));
  }
  return out;
}

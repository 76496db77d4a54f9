/**
 * Routes node-addressed requests (`node_id`) of the main IAM: an empty ID or this node's own
 * ID runs locally through the provision manager, any other ID is forwarded over that node's
 * `RegisterNode` stream. After a forwarded pause, resume, finish or deprovision succeeds, the
 * registry gets the node's new state (upstream bookkeeping).
 * @module
 */
import type { CertInfo as WireCertInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import { type ErrorInfoMessage, fromErrorInfo } from "@aos/shared/errors";
import type { Logger } from "@aos/shared/logger";
import type { NodeManager } from "../core/node_manager.ts";
import type { ProvisionManager } from "../core/provision_manager.ts";
import type { IdentProvider, NodeState } from "../core/types.ts";
import { type NodeController, NodeUnreachableError } from "./node_controller.ts";
import { certInfoToWire } from "./wire.ts";

/** Dependencies of {@link ProvisioningRouter}. */
export interface ProvisioningRouterDeps {
  ownNodeId: string;
  local: ProvisionManager;
  ident: IdentProvider;
  /** Main node only: the registry and the secondary streams. */
  nodes?: NodeManager;
  remote?: NodeController;
  logger: Logger;
}

function check(error: ErrorInfoMessage | undefined): void {
  const err = fromErrorInfo(error);
  if (err) throw err;
}

/** Node-addressed provisioning, certificate and node-state operations. */
export class ProvisioningRouter {
  readonly #d: ProvisioningRouterDeps;

  constructor(deps: ProvisioningRouterDeps) {
    this.#d = deps;
  }

  /** Whether `nodeId` means this node. */
  isLocal(nodeId: string): boolean {
    return nodeId === "" || nodeId === this.#d.ownNodeId;
  }

  #remote(nodeId: string): NodeController {
    if (!this.#d.remote) {
      throw new NodeUnreachableError(
        "notFound",
        `Node ${nodeId} is not this node (${this.#d.ownNodeId}) and this IAM is not the main node`,
      );
    }
    return this.#d.remote;
  }

  #setState(nodeId: string, state: NodeState): void {
    try {
      this.#d.nodes?.setNodeState(nodeId, state);
    } catch (err) {
      this.#d.logger.warn("cannot record node state", { nodeId, state, error: err });
    }
  }

  async getCertTypes(nodeId: string): Promise<string[]> {
    if (this.isLocal(nodeId)) return this.#d.local.getCertTypes();
    const res = await this.#remote(nodeId).forward(nodeId, "getCertTypesRequest", { nodeId });
    return res.types;
  }

  async startProvisioning(nodeId: string, password: string): Promise<void> {
    if (this.isLocal(nodeId)) return await this.#d.local.startProvisioning(password);
    const res = await this.#remote(nodeId).forward(nodeId, "startProvisioningRequest", {
      nodeId,
      password,
    });
    check(res.error);
  }

  async finishProvisioning(nodeId: string, password: string): Promise<void> {
    if (this.isLocal(nodeId)) return await this.#d.local.finishProvisioning(password);
    const res = await this.#remote(nodeId).forward(nodeId, "finishProvisioningRequest", {
      nodeId,
      password,
    });
    check(res.error);
    this.#setState(nodeId, "provisioned");
  }

  async deprovision(nodeId: string, password: string): Promise<void> {
    if (this.isLocal(nodeId)) return await this.#d.local.deprovision(password);
    const res = await this.#remote(nodeId).forward(nodeId, "deprovisionRequest", {
      nodeId,
      password,
    });
    check(res.error);
    this.#setState(nodeId, "unprovisioned");
  }

  async pause(nodeId: string): Promise<void> {
    if (this.isLocal(nodeId)) return await this.#d.local.pause();
    const res = await this.#remote(nodeId).forward(nodeId, "pauseNodeRequest", { nodeId });
    check(res.error);
    this.#setState(nodeId, "paused");
  }

  async resume(nodeId: string): Promise<void> {
    if (this.isLocal(nodeId)) return await this.#d.local.resume();
    const res = await this.#remote(nodeId).forward(nodeId, "resumeNodeRequest", { nodeId });
    check(res.error);
    this.#setState(nodeId, "provisioned");
  }

  /** Creates a key and returns the CSR (PEM). */
  async createKey(nodeId: string, type: string, subject: string, password: string) {
    if (this.isLocal(nodeId)) return await this.#d.local.createKey(type, subject, password);
    // Upstream fills an empty subject with the main node's system ID before forwarding.
    const cn = subject || await this.#d.ident.getSystemInfo().then((s) => s.systemId, () => "");
    const res = await this.#remote(nodeId).forward(nodeId, "createKeyRequest", {
      nodeId,
      type,
      subject: cn,
      password,
    });
    check(res.error);
    return res.csr;
  }

  /** Applies a certificate chain; returns the wire `CertInfo` of the new certificate. */
  async applyCert(nodeId: string, type: string, cert: string): Promise<WireCertInfo> {
    if (this.isLocal(nodeId)) return certInfoToWire(await this.#d.local.applyCert(type, cert));
    const res = await this.#remote(nodeId).forward(nodeId, "applyCertRequest", {
      nodeId,
      type,
      cert,
    });
    check(res.error);
    return res.certInfo ?? {
      type,
      certUrl: "",
      keyUrl: "",
      serial: new Uint8Array(),
      issuer: new Uint8Array(),
    };
  }
}

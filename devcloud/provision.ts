/**
 * The provisioning helper: drives a real `iam` in provisioning mode (`-p`) over its protected
 * gRPC server, as an external provisioning tool does (iam.md §10.2): `GetCertTypes` →
 * `StartProvisioning` → `CreateKey` per type → the dev CA signs each CSR → `ApplyCert` →
 * `FinishProvisioning`. The `online` certificate gets the cloud's discovery URL as issuer
 * alternative name, so the unit's CM finds devcloud without any override.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import {
  IAMCertificateServiceClient,
  IAMProvisioningServiceClient,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import type { ErrorInfo } from "@aos/proto/common/v2/common.ts";
import { AosError, fromErrorInfo, type Logger, nullLogger } from "@aos/shared/core";
import {
  callUnary,
  type ClientSecurity,
  createGrpcClient,
  type UnaryMethod,
} from "@aos/shared/grpc";
import type { DevPki } from "./pki.ts";

/** Options of {@link provisionNode}. */
export interface ProvisionOptions {
  /** IAM's protected server `host:port` (plaintext in provisioning mode). */
  iamUrl: string;
  /** The dev PKI that signs the CSRs. */
  pki: DevPki;
  /** Owner password set by `StartProvisioning`. */
  password: string;
  /** Node to provision; `""` (default) is the IAM's own node. */
  nodeId?: string;
  /** Discovery base URL (e.g. `https://localhost:9000`) for the `online` certificate. */
  discoveryUrl?: string;
  /** Certificate subject for `CreateKey` (default `""`: IAM uses the system ID). */
  subject?: string;
  /** Channel security (default insecure, as IAM serves in provisioning mode). */
  security?: ClientSecurity;
  /** Deadline per call (default 60 s). */
  timeoutMs?: number;
  /** Logger. */
  logger?: Logger;
}

/** A certificate IAM applied. */
export interface ProvisionedCert {
  /** Cert type (`online`, `iam`…). */
  type: string;
  /** Serial (lowercase hex) as IAM reports it. */
  serial: string;
  /** Where IAM stored it (`file://…`). */
  certUrl: string;
}

function check<T extends { error?: ErrorInfo | undefined }>(what: string, res: T): T {
  const err = fromErrorInfo(res.error);
  if (err) throw new AosError(err.code, `${what} failed: ${err.message}`, { cause: err });
  return res;
}

/** Provisions one node; returns the certificates applied, in IAM's type order. */
export async function provisionNode(options: ProvisionOptions): Promise<ProvisionedCert[]> {
  const nodeId = options.nodeId ?? "";
  const log = (options.logger ?? nullLogger).child({ module: "provision" });
  const security = options.security ?? { mode: "insecure" };
  const timeoutMs = options.timeoutMs ?? 60_000;
  const prov = await createGrpcClient(IAMProvisioningServiceClient, options.iamUrl, { security });
  const certs = await createGrpcClient(IAMCertificateServiceClient, options.iamUrl, { security });
  const call = <Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, request: Req) =>
    callUnary(method.bind(client), request, { timeoutMs });
  try {
    const { types } = await call(prov, prov.getCertTypes, { nodeId });
    log.info("provisioning", { nodeId, types });
    check(
      "StartProvisioning",
      await call(prov, prov.startProvisioning, { nodeId, password: options.password }),
    );
    const out: ProvisionedCert[] = [];
    for (const type of types) {
      const { csr } = check(
        `CreateKey ${type}`,
        await call(certs, certs.createKey, {
          nodeId,
          type,
          subject: options.subject ?? "",
          password: options.password,
        }),
      );
      const chain = await options.pki.signCsr(csr, {
        type,
        ...(type === "online" && options.discoveryUrl
          ? { discoveryUrl: options.discoveryUrl }
          : {}),
      });
      const applied = check(
        `ApplyCert ${type}`,
        await call(certs, certs.applyCert, { nodeId, type, cert: chain }),
      );
      const info = applied.certInfo;
      out.push({
        type,
        serial: new TextDecoder().decode(info?.serial ?? new Uint8Array()),
        certUrl: info?.certUrl ?? "",
      });
      log.info("certificate applied", { nodeId, type });
    }
    check(
      "FinishProvisioning",
      await call(prov, prov.finishProvisioning, { nodeId, password: options.password }),
    );
    log.info("provisioned", { nodeId });
    return out;
  } finally {
    prov.close();
    certs.close();
  }
}

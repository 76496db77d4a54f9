/**
 * IAM domain types and the ports between IAM's core and its adapters.
 *
 * Wire shapes (`NodeInfo`) are the generated `iamanager.v6` message types, so what the core
 * builds is what the servers send.
 * @module
 */
import type { NodeInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import type { CertInfo as CertRef } from "@aos/shared/iamclient";

export type { NodeInfo };

/** Node states (upstream strings). */
export const NODE_STATES = ["unprovisioned", "provisioned", "paused", "error"] as const;
/** A node state. */
export type NodeState = typeof NODE_STATES[number];

/** Whether a string is a node state. */
export function isNodeState(s: string): s is NodeState {
  return (NODE_STATES as readonly string[]).includes(s);
}

/** System identity (`GetSystemInfo`). */
export interface SystemInfo {
  systemId: string;
  unitModel: string;
  version: string;
}

/** A certificate as IAM tracks it: what clients see, plus its expiry. */
export interface CertInfo extends CertRef {
  notAfter: Date;
}

/** Unsubscribes a listener. */
export type Unsubscribe = () => void;

/** Identity source (`identifier` in iam.cfg). */
export interface IdentProvider {
  getSystemInfo(): Promise<SystemInfo>;
  getSubjects(): Promise<string[]>;
  /** Called with the new subjects whenever they change. */
  subscribeSubjects(listener: (subjects: string[]) => void): Unsubscribe;
}

/** Certificates of all cert types (the cert handler). */
export interface CertProvider {
  /** Cert types a provisioning client sees (self-signed modules hidden). */
  getCertTypes(): string[];
  /** Newest cert of `type` when `serial` is empty, else the one with that issuer and serial. */
  getCert(type: string, issuer: Uint8Array, serial: string): Promise<CertInfo>;
  /** Called with the newest cert of `type` whenever it changes. */
  subscribeCertChanged(type: string, listener: (cert: CertInfo) => void): Unsubscribe;
}

/** Provisioning operations on the local node. */
export interface ProvisioningOps {
  startProvisioning(password: string): Promise<void>;
  finishProvisioning(password: string): Promise<void>;
  deprovision(password: string): Promise<void>;
  createKey(type: string, subject: string, password: string): Promise<string>;
  applyCert(type: string, pemChain: string): Promise<CertInfo>;
  getCertTypes(): string[];
}

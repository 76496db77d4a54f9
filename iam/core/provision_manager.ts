/**
 * Provisioning of the local node: start (clear storages, set the owner, self-signed certs,
 * configured commands), keys and certificates, finish, deprovision, pause and resume.
 * @module
 */
import { AosError } from "@aos/shared/errors";
import type { CommandRunner } from "@aos/shared/exec";
import type { Logger } from "@aos/shared/logger";
import type { IamConfig } from "../config.ts";
import type { CertHandler } from "./cert_handler.ts";
import type { CurrentNode } from "./current_node.ts";
import { checkTransition } from "./node_state.ts";
import type { OwnerPassword } from "./owner.ts";
import type { CertInfo, IdentProvider, ProvisioningOps } from "./types.ts";

/** Provisioning commands run at most this long (upstream client deadline: 10 min). */
export const COMMAND_TIMEOUT_MS = 10 * 60_000;

/** Dependencies of {@link ProvisionManager}. */
export interface ProvisionManagerDeps {
  config: Pick<
    IamConfig,
    | "startProvisioningCmdArgs"
    | "diskEncryptionCmdArgs"
    | "finishProvisioningCmdArgs"
    | "deprovisionCmdArgs"
  >;
  certs: CertHandler;
  node: CurrentNode;
  owner: OwnerPassword;
  ident: IdentProvider;
  runner: CommandRunner;
  logger: Logger;
}

/** The provisioning operations of this node. */
export class ProvisionManager implements ProvisioningOps {
  readonly #d: ProvisionManagerDeps;

  constructor(deps: ProvisionManagerDeps) {
    this.#d = deps;
  }

  async #runCommand(what: string, argv: string[]): Promise<void> {
    const [program, ...args] = argv;
    if (!program) return;
    this.#d.logger.info(`running ${what} command`, { program });
    await this.#d.runner.run(program, args, { timeoutMs: COMMAND_TIMEOUT_MS }).catch((err) => {
      throw new AosError("failed", `${what} command failed: ${(err as Error).message}`, {
        cause: err,
      });
    });
  }

  getCertTypes(): string[] {
    return this.#d.certs.getCertTypes();
  }

  async startProvisioning(password: string): Promise<void> {
    checkTransition("startProvisioning", this.#d.node.state);
    await this.#runCommand("start provisioning", this.#d.config.startProvisioningCmdArgs);
    await this.#d.certs.clearAll();
    await this.#d.owner.set(password);
    for (const type of this.#d.certs.allCertTypes()) {
      if (this.#d.certs.moduleConfig(type).selfSigned) {
        await this.#d.certs.createSelfSignedCert(type);
      }
    }
    await this.#runCommand("disk encryption", this.#d.config.diskEncryptionCmdArgs);
    this.#d.logger.info("provisioning started");
  }

  async createKey(type: string, subject: string, password: string): Promise<string> {
    await this.#d.owner.check(password, `create key "${type}"`);
    const cn = subject || (await this.#d.ident.getSystemInfo()).systemId;
    return await this.#d.certs.createKey(type, cn);
  }

  applyCert(type: string, pemChain: string): Promise<CertInfo> {
    return this.#d.certs.applyCert(type, pemChain);
  }

  async finishProvisioning(password: string): Promise<void> {
    checkTransition("finishProvisioning", this.#d.node.state);
    await this.#d.owner.check(password, "finish provisioning");
    await this.#runCommand("finish provisioning", this.#d.config.finishProvisioningCmdArgs);
    await this.#d.node.setState("provisioned");
  }

  async deprovision(password: string): Promise<void> {
    checkTransition("deprovision", this.#d.node.state);
    await this.#d.owner.check(password, "deprovision");
    await this.#runCommand("deprovision", this.#d.config.deprovisionCmdArgs);
    // State first: a crash after it leaves an unprovisioned node whose storages the next
    // StartProvisioning clears anyway.
    await this.#d.node.setState("unprovisioned");
    await this.#d.certs.clearAll();
    await this.#d.owner.clear();
  }

  async pause(): Promise<void> {
    checkTransition("pause", this.#d.node.state);
    await this.#d.node.setState("paused");
  }

  async resume(): Promise<void> {
    checkTransition("resume", this.#d.node.state);
    await this.#d.node.setState("provisioned");
  }
}

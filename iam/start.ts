/**
 * Composition root of `iam`: builds the adapters from the resolved config, wires them in start
 * order and stops them in reverse.
 *
 * Start order: database → this node → identifier (+ subjects watcher) → cert handler (roots
 * from `caCert`) → permission handler (if enabled) → node registry (main node) → provision
 * manager → gRPC servers → client of the main IAM (secondary node).
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { StartContext } from "@aos/shared/component";
import { CleanupStack } from "@aos/shared/core";
import { type Certificate, parseCertificates } from "@aos/shared/crypto";
import { AosError } from "@aos/shared/errors";
import { DenoCommandRunner } from "@aos/shared/exec";
import { watchFile } from "@aos/shared/fswatch";
import type { ClientSecurity } from "@aos/shared/grpc";
import type { Logger } from "@aos/shared/logger";
import { FileCertStorage } from "./adapters/file_cert_storage.ts";
import { iamServices, IamStreams } from "./adapters/grpc_services.ts";
import { IamDatabase } from "./adapters/iam_db.ts";
import { SecondaryIamClient } from "./adapters/iam_client.ts";
import { IamServers, type IamServerSecurity } from "./adapters/iam_servers.ts";
import { type ForwardTimeouts, NodeController } from "./adapters/node_controller.ts";
import { ProvisioningRouter } from "./adapters/router.ts";
import { type IamConfig, isSecondaryIam } from "./config.ts";
import { CertHandler } from "./core/cert_handler.ts";
import { CurrentNode } from "./core/current_node.ts";
import { FileIdentifier, NoIdentifier } from "./core/identity.ts";
import { NodeManager } from "./core/node_manager.ts";
import { OwnerPassword } from "./core/owner.ts";
import { PermHandler } from "./core/perm_handler.ts";
import { ProvisionManager } from "./core/provision_manager.ts";
import type { IdentProvider } from "./core/types.ts";

/** Knobs for tests; production uses the upstream values. */
export interface IamStartOptions {
  /** Delay between a new IAM certificate and the server restart, ms (upstream 1 000). */
  certRestartDelayMs?: number;
  /** Timeouts of requests forwarded to secondary nodes. */
  forwardTimeouts?: Partial<ForwardTimeouts>;
}

/** A running IAM. */
export interface IamInstance extends AsyncDisposable {
  /** This node's ID. */
  readonly nodeId: string;
  /** Bound port of the public server (changes never: restarts keep it). */
  readonly publicPort: number;
  /** Bound port of the protected server. */
  readonly protectedPort: number;
}

/** The programs named by the provisioning commands (what `--allow-run` grants). */
export function commandPrograms(config: IamConfig): string[] {
  return [
    config.startProvisioningCmdArgs,
    config.diskEncryptionCmdArgs,
    config.finishProvisioningCmdArgs,
    config.deprovisionCmdArgs,
  ].map((argv) => argv[0] ?? "").filter((p) => p !== "");
}

async function loadRoots(path: string, provisioning: boolean, logger: Logger) {
  let roots: Certificate[] = [];
  try {
    roots = parseCertificates(await Deno.readTextFile(path));
  } catch (err) {
    if (!provisioning) {
      throw new AosError(
        "invalidArgument",
        `Cannot read caCert ${path}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    logger.warn("caCert unreadable", { path, error: err });
  }
  if (roots.length === 0) {
    if (!provisioning) {
      throw new AosError("invalidArgument", `caCert ${path} holds no certificate`);
    }
    logger.warn("caCert holds no certificate: every ApplyCert will be refused", { path });
  }
  return roots;
}

/** Starts `iam`; the result stops everything it started, in reverse order. */
export async function start(
  ctx: StartContext<IamConfig>,
  options: IamStartOptions = {},
): Promise<IamInstance> {
  const { config, logger } = ctx;
  const provisioning = ctx.args.provisioning;
  const stack = new CleanupStack();
  try {
    await Deno.mkdir(config.workingDir, { recursive: true, mode: 0o700 });
    const db = IamDatabase.open(join(config.workingDir, "iamanager.db"), logger);
    stack.add("database", () => db[Symbol.dispose]());
    logger.info("database opened", { workingDir: config.workingDir });

    const node = await CurrentNode.create(config, logger);
    const main = node.isMainNode;
    const secondary = isSecondaryIam(config);
    logger.info("node", {
      nodeId: node.nodeId,
      state: node.state,
      role: main ? "main" : secondary ? "secondary" : "standalone",
      mode: provisioning ? "provisioning" : "normal",
    });

    let ident: IdentProvider = new NoIdentifier();
    let fileIdent: FileIdentifier | undefined;
    if (config.identifier.plugin === "fileidentifier") {
      const p = config.identifier.params;
      fileIdent = new FileIdentifier({
        systemIdPath: p.systemIdPath!,
        unitModelPath: p.unitModelPath!,
        subjectsPath: p.subjectsPath!,
      }, logger);
      await fileIdent.init();
      ident = fileIdent;
      const idf = fileIdent;
      const watcher = watchFile(idf.subjectsPath, {
        logger,
        onChange: () =>
          idf.reload().then(
            () => {},
            (err) => logger.warn("cannot reload subjects", { error: err }),
          ),
      });
      stack.add("subjects watcher", () => watcher.close());
      stack.add("identifier", () => idf[Symbol.dispose]());
      logger.info("file identifier ready", { subjects: idf.subjectsPath });
    }

    const roots = await loadRoots(config.caCert, provisioning, logger);
    const certs = new CertHandler({
      modules: config.certModules,
      storageFor: (m) => new FileCertStorage(m.params.storagePath, logger),
      metadata: db,
      roots,
      logger,
    });
    await certs.init();
    logger.info("cert handler ready", { types: certs.allCertTypes().join(",") });

    const perm = config.enablePermissionsHandler ? new PermHandler() : undefined;

    let nodes: NodeManager | undefined;
    if (main) {
      const registry = new NodeManager(db, logger);
      registry.init();
      registry.setNodeInfo(node.info, true);
      stack.add("node registry feed", node.subscribe((info) => registry.setNodeInfo(info, true)));
      nodes = registry;
    }

    const programs = commandPrograms(config);
    const provisionManager = new ProvisionManager({
      config,
      certs,
      node,
      owner: new OwnerPassword(join(config.workingDir, ".owner")),
      ident,
      runner: new DenoCommandRunner({ allow: programs, logger }),
      logger,
    });
    logger.info("provision manager ready", { commands: programs.join(",") || "none" });

    const controller = nodes
      ? new NodeController({
        ownNodeId: node.nodeId,
        nodes,
        logger,
        ...(options.forwardTimeouts ? { timeouts: options.forwardTimeouts } : {}),
      })
      : undefined;
    const streams = new IamStreams({
      node,
      certs,
      logger,
      ...(nodes ? { nodes } : {}),
      ...(main && fileIdent ? { ident } : {}),
    });
    stack.add("subscription streams", () => streams[Symbol.dispose]());
    const router = new ProvisioningRouter({
      ownNodeId: node.nodeId,
      local: provisionManager,
      ident,
      logger,
      ...(nodes ? { nodes } : {}),
      ...(controller ? { remote: controller } : {}),
    });

    const ownCertFiles = async (what: string) => {
      const cert = await certs.getCert(config.certStorage, new Uint8Array(), "").catch((err) => {
        throw new AosError(
          "notFound",
          `No certificate of type "${config.certStorage}" for the ${what}: provision the node ` +
            `first (run iam with -p)`,
          { cause: err },
        );
      });
      return { cert: fileURLToPath(cert.certUrl), key: fileURLToPath(cert.keyUrl) };
    };
    const serverSecurity = async (): Promise<IamServerSecurity> => {
      if (provisioning) return { public: { mode: "insecure" }, protected: { mode: "insecure" } };
      const files = await ownCertFiles("IAM servers");
      return {
        public: { mode: "tls", ...files },
        protected: { mode: "mtls", ...files, ca: config.caCert },
      };
    };
    const servers = await IamServers.start({
      publicUrl: config.iamPublicServerUrl,
      protectedUrl: config.iamProtectedServerUrl,
      security: serverSecurity,
      services: (kind) =>
        iamServices({
          node,
          certs,
          router,
          streams,
          logger,
          ...(main && fileIdent ? { ident } : {}),
          ...(perm ? { perm } : {}),
          ...(nodes ? { nodes } : {}),
          ...(controller ? { controller } : {}),
        }, kind),
      endStreams: () => {
        streams.closeAll();
        controller?.closeAll();
      },
      logger,
    });
    stack.add("gRPC servers", () => servers[Symbol.asyncDispose]());

    const restartDelayMs = options.certRestartDelayMs ?? 1_000;
    let client: SecondaryIamClient | undefined;
    let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
    stack.add("client reconnect timer", () => clearTimeout(reconnectTimer));
    if (!provisioning) {
      // Upstream restarts the servers 1 s after IAM's own certificate changes.
      stack.add(
        "own certificate listener",
        certs.subscribeCertChanged(config.certStorage, (cert) => {
          logger.info("IAM certificate changed: restarting servers", { serial: cert.serial });
          servers.scheduleRestart(restartDelayMs);
          if (client) {
            clearTimeout(reconnectTimer);
            reconnectTimer = setTimeout(() => client?.reconnect(), restartDelayMs);
          }
        }),
      );
    }

    if (secondary) {
      const url = provisioning ? config.mainIamPublicServerUrl : config.mainIamProtectedServerUrl;
      const security = async (): Promise<ClientSecurity> =>
        provisioning
          ? { mode: "insecure" }
          : { mode: "mtls", ca: config.caCert, ...await ownCertFiles("main IAM client") };
      const c = SecondaryIamClient.start({
        url,
        security,
        node,
        provisioning: provisionManager,
        logger: logger.child({ module: "iamclient" }),
        reconnect: { maxMs: config.nodeReconnectInterval },
      });
      client = c;
      stack.add("main IAM client", () => c[Symbol.asyncDispose]());
      logger.info("dialling main IAM", { url });
    }

    const running = stack;
    return {
      nodeId: node.nodeId,
      publicPort: servers.publicPort,
      protectedPort: servers.protectedPort,
      async [Symbol.asyncDispose]() {
        logger.info("stopping IAM");
        const errors = await running.run((name, err) =>
          logger.error("stop step failed", { step: name, error: err })
        );
        if (errors.length) logger.warn("IAM stopped with errors", { count: errors.length });
      },
    };
  } catch (err) {
    await stack.run((name, e) => logger.error("cleanup failed", { step: name, error: e }));
    throw err;
  }
}

/**
 * Composition root of `cm`: IAM client → database → image manager and blob file server → node
 * info provider → SM controller and its gRPC server → unit config → launcher → update manager
 * → unit status → cloud link (the cloud connection last, as upstream starts it); stopped in
 * reverse.
 *
 * The SM server accepts streams before the launcher exists: node snapshots that arrive early
 * are kept and handed to the launcher once it has loaded its state, so instances that ran
 * before a CM restart are recognised at once.
 * @module
 */
import type { InstanceStatus } from "@aos/proto/servicemanager/v5/servicemanager.ts";
import type { StartContext } from "@aos/shared/component";
import { AosError, CleanupStack, type Logger, toCloudErrorInfo } from "@aos/shared/core";
import type { CloudToUnitMessage, Identity, WireData } from "@aos/shared/cloudprotocol";
import type { Database } from "@aos/shared/db";
import { startFileServer } from "@aos/shared/fileserver";
import { createGrpcServer } from "@aos/shared/grpc";
import { createIamClient, type IamClient, pathFromCertUrl } from "@aos/shared/iamclient";
import { createSpaceRegistry } from "@aos/shared/space";
import { splitHostPort } from "@aos/shared/config";
import { AlertSender } from "./adapters/alerts.ts";
import { ImageManifestSource } from "./adapters/manifests.ts";
import { NodeInfoProvider } from "./adapters/node_info.ts";
import { SmController } from "./adapters/sm_controller.ts";
import { UnitConfigFile } from "./adapters/unit_config_file.ts";
import { CloudLink, hostAllowed, parseHostPattern } from "./cloud/mod.ts";
import type { CmConfig } from "./config.ts";
import {
  type DesiredStatusBody,
  instanceStatusToCloud,
  itemStatusToCloud,
  Launcher,
  UnitConfigManager,
  UnitStatusHandler,
  UpdateManager,
} from "./core/mod.ts";
import { openCmDatabase, SqliteLauncherStore, SqliteUpdateStateStore } from "./db.ts";
import { ID_FILES, takenIds } from "./id_files.ts";
import { createImageManager, imageManagerPaths } from "./image/mod.ts";

/** The digest a blob URL names (`…/sha256/<hex>`), for alerts; `""` when it names none. */
function digestOfUrl(url: URL): string {
  const m = /\/(sha256|sha384|sha512)\/([0-9a-f]{32,128})$/.exec(url.pathname);
  return m ? `${m[1]}:${m[2]}` : "";
}

/** The unit status' `subjects` section. */
function subjectIdentities(subjects: readonly string[]): Identity[] {
  return subjects.map((codename) => ({ codename }));
}

/** Starts `cm`; the result stops everything it started. */
export async function start(ctx: StartContext<CmConfig>): Promise<AsyncDisposable> {
  const { config: cfg, logger } = ctx;
  const stack = new CleanupStack();
  const stopAll = async () => {
    await stack.run((name, err) => logger.error(`stopping ${name} failed`, { error: err }));
  };
  try {
    const caPem = await Deno.readTextFile(cfg.caCert);

    // IAM: identity, node registry, subjects, certificates.
    const iam: IamClient = await createIamClient({
      publicUrl: cfg.iamPublicServerUrl,
      protectedUrl: cfg.iamProtectedServerUrl,
      caCert: cfg.caCert,
      certStorage: cfg.certStorage,
      insecure: cfg.insecure,
      logger: logger.child({ module: "iamclient" }),
      signal: ctx.signal,
    });
    stack.add("iam client", () => iam.close());
    const system = await iam.getSystemInfo();
    logger.info("unit identified", { systemId: system.systemId, unitModel: system.unitModel });

    // Database.
    await Deno.mkdir(cfg.workingDir, { recursive: true });
    const db: Database = openCmDatabase({ workingDir: cfg.workingDir, logger });
    stack.add("database", () => db.close());

    // Modules created later, reached by earlier ones (events may come before they exist).
    const late: {
      link?: CloudLink;
      launcher?: Launcher;
      unitConfig?: UnitConfigManager;
      status?: UnitStatusHandler;
    } = {};
    const alerts = new AlertSender({
      // Stored until acked: alerts a CM crash would lose otherwise (nothing supersedes them,
      // unlike unit statuses, which a full status on reconnect replaces). Batches go to the
      // durable outbox while the cloud is offline too (it delivers them on connect; its alerts
      // group is bounded), instead of waiting in memory, where a crash would lose them.
      send: (m) => late.link?.send(m, { persist: { group: "alerts" } }),
      sendPeriodMs: cfg.alerts.sendPeriod,
      connected: () => late.link !== undefined,
      logger: logger.child({ module: "alerts" }),
    });
    stack.add("alerts", () => alerts[Symbol.dispose]());

    // Image manager and the file server that hands its blobs to the SMs.
    const blobHosts = cfg.allowedHosts.map(parseHostPattern);
    const images = await createImageManager({
      database: db,
      ...imageManagerPaths(cfg.imageManager),
      blobInfo: {
        requestBlobUrls: async (digests, signal) => {
          if (!late.link) {
            throw new AosError("wrongState", "Cannot ask for blob URLs: no cloud link");
          }
          return (await late.link.requestBlobUrls(digests, signal ? { signal } : {})).items;
        },
      },
      caCert: caPem,
      space: createSpaceRegistry({ logger: logger.child({ module: "space" }) }),
      allowHost: (url) => {
        if (hostAllowed(url, blobHosts)) return true;
        const error = new AosError(
          "invalidArgument",
          `Blob host "${url.host}" is not in allowedHosts; the URL is not requested`,
        );
        logger.error("blob URL refused", { url: url.href.slice(0, 200) });
        alerts.add({
          tag: "downloadProgressAlert",
          timestamp: new Date(),
          digest: digestOfUrl(url),
          url: url.href.slice(0, 1024),
          downloadedBytes: 0,
          totalBytes: 0,
          state: "interrupted",
          reason: error.message,
          errorInfo: toCloudErrorInfo(error),
        });
        return false;
      },
      onAlert: (a) => alerts.add(a),
      logger: logger.child({ module: "images" }),
    });
    stack.add("image manager", () => images[Symbol.asyncDispose]());
    const fileAddr = splitHostPort(cfg.fileServerUrl);
    const files = await startFileServer({
      root: images.blobRoot,
      hostname: fileAddr.host === "localhost" ? "127.0.0.1" : fileAddr.host,
      port: fileAddr.port,
      logger: logger.child({ module: "fileserver" }),
    });
    stack.add("file server", () => files.close());

    // Nodes: IAM's registry merged with the SMs' announcements.
    const nodeInfo = new NodeInfoProvider({
      iam,
      smConnectionTimeoutMs: cfg.nodeInfoProvider.smConnectionTimeout,
      logger: logger.child({ module: "nodeinfo" }),
    });
    stack.add("node info provider", () => nodeInfo[Symbol.dispose]());
    await nodeInfo.init();

    const snapshots = new Map<string, InstanceStatus[]>();

    const fileBase = `http://${
      cfg.fileServerUrl.startsWith(":") ? `localhost${cfg.fileServerUrl}` : cfg.fileServerUrl
    }/blobs`;
    const sm = new SmController({
      blobBaseUrl: fileBase,
      hasBlob: (d) => images.hasBlob(d),
      logger: logger.child({ module: "smcontroller" }),
      listener: {
        smInfo: (nodeId, info) => {
          if (!info) snapshots.delete(nodeId);
          nodeInfo.smChanged(nodeId, info);
          if (info && late.unitConfig) {
            void late.unitConfig.nodeConnected({ nodeId, nodeType: nodeInfo.nodeType(nodeId) });
          }
        },
        nodeInstancesStatus: (nodeId, list) => {
          snapshots.set(nodeId, list);
          late.launcher?.nodeInstancesStatus(nodeId, list);
        },
        updateInstancesStatus: (nodeId, list) => late.launcher?.updateInstancesStatus(nodeId, list),
        other: (nodeId, msg) =>
          logger.debug("SM message not handled yet", {
            nodeId,
            kind: msg.SMOutgoingMessage?.$case ?? "?",
          }),
      },
    });
    nodeInfo.onChange((ids) => {
      late.launcher?.nodesChanged();
      late.status?.nodesChanged(nodeInfo.cloudNodes(ids));
    });
    const grpc = await createGrpcServer({
      // `localhost` is bound as 127.0.0.1: grpc-js would resolve the name, which needs a grant.
      address: cfg.cmServerUrl.replace(/^localhost:(\d+)$/i, "127.0.0.1:$1"),
      security: cfg.insecure ? { mode: "insecure" } : iam.serverCredentials(),
      services: [sm.service],
      logger: logger.child({ module: "smserver" }),
    });
    stack.add("SM server", async () => {
      sm.close();
      await grpc.shutdown();
    });
    iam.onCredentialsChanged(() =>
      logger.warn("cm certificate changed: SMs keep the old one until CM restarts")
    );

    // Unit config.
    const uc = new UnitConfigManager({
      store: new UnitConfigFile(cfg.unitConfigFile),
      sm,
      connectedNodes: () => nodeInfo.configTargets(),
      logger: logger.child({ module: "unitconfig" }),
    });
    await uc.init();
    late.unitConfig = uc;
    for (const t of nodeInfo.configTargets()) void uc.nodeConnected(t);

    // Subjects of the unit (IAM); instances of unit subjects run only while IAM lists them.
    let subjects: string[] = [];
    try {
      subjects = await iam.getSubjects();
    } catch (err) {
      logger.warn("cannot read unit subjects", { error: err });
    }
    const unsubscribeSubjects = iam.subscribeSubjectsChanged((s) => {
      subjects = s.slice(0, 1024);
      late.status?.subjectsChanged();
      late.launcher?.nodesChanged();
    });
    stack.add("subjects subscription", () => unsubscribeSubjects());

    // Launcher.
    const [uids, gids] = await Promise.all([
      takenIds(ID_FILES.passwd, logger),
      takenIds(ID_FILES.group, logger),
    ]);
    const launcherStore = new SqliteLauncherStore(db);
    const makeLauncher = () =>
      new Launcher({
        nodes: {
          nodes: () =>
            nodeInfo.placementNodes().map((n) => ({
              ...n,
              config: uc.placementConfig({ nodeId: n.nodeId, nodeType: n.nodeType ?? "" }),
            })),
        },
        manifests: new ImageManifestSource(images),
        sm: {
          updateInstances: (nodeId, update) => {
            // A node without an SM counts as connected (nothing to wait for): it runs nothing.
            if (
              !nodeInfo.hasSm(nodeId) && update.startInstances.length === 0 &&
              update.stopInstances.length === 0
            ) return Promise.resolve([]);
            return sm.updateInstances(nodeId, update);
          },
        },
        store: launcherStore,
        isUidTaken: (id) => uids.has(id),
        isGidTaken: (id) => gids.has(id),
        unitSubjects: () => subjects,
        logger: logger.child({ module: "launcher" }),
        nodesConnectionTimeoutMs: cfg.launcher.nodesConnectionTimeout,
      });
    let l = makeLauncher();
    try {
      await l.init();
    } catch (err) {
      // A state this build cannot read must not keep CM down: start empty, the next desired
      // status places everything again.
      logger.error("stored launcher state is unusable; starting without it", { error: err });
      await l[Symbol.asyncDispose]();
      launcherStore.save({
        version: 1,
        requests: [],
        instances: [],
        uids: undefined,
        gids: undefined,
      });
      l = makeLauncher();
      await l.init();
    }
    late.launcher = l;
    stack.add("launcher", () => l[Symbol.asyncDispose]());
    for (const [nodeId, list] of snapshots) l.nodeInstancesStatus(nodeId, list);
    l.nodesChanged();

    // Update manager.
    const manager = new UpdateManager({
      store: new SqliteUpdateStateStore(db),
      images,
      launcher: l,
      unitConfig: uc,
      nodeControl: {
        pauseNode: (id) => iam.pauseNode(id),
        resumeNode: (id) => iam.resumeNode(id),
      },
      logger: logger.child({ module: "updatemanager" }),
    });

    // Unit status.
    const unitStatus = new UnitStatusHandler({
      providers: {
        unitConfig: () => uc.status(),
        nodes: () => {
          const errors = manager.nodeErrors();
          return nodeInfo.cloudNodes().map((n) => {
            const e = errors.get(n.identity.codename ?? "");
            return e && !n.errorInfo ? { ...n, errorInfo: toCloudErrorInfo(e) } : n;
          });
        },
        items: () => images.statuses().map(itemStatusToCloud),
        instances: () => l.statuses().map(instanceStatusToCloud),
        subjects: () => subjectIdentities(subjects),
      },
      send: (m: WireData) => {
        // Stored until acked: a full status replaces every older one.
        late.link?.send(m, {
          persist: { group: "unitStatus", supersede: m.isDeltaInfo === false },
        });
      },
      sendTimeoutMs: cfg.unitStatusSendTimeout,
      logger: logger.child({ module: "unitstatus" }),
    });
    late.status = unitStatus;
    stack.add("unit status", () => unitStatus[Symbol.dispose]());
    const offs = [
      images.onStatusChange((s) => unitStatus.itemsChanged([itemStatusToCloud(s)])),
      l.onStatusChange((c) => unitStatus.instancesChanged(c.map(instanceStatusToCloud))),
      uc.onStatusChange(() => unitStatus.unitConfigChanged()),
      manager.onFinished(() => unitStatus.sendFullStatus()),
    ];
    stack.add("status listeners", () => offs.forEach((off) => off()));
    await manager.init();
    stack.add("update manager", () => manager[Symbol.asyncDispose]());

    // Cloud link, last: everything it feeds is ready.
    const cloud = new CloudLink({
      systemId: system.systemId,
      config: {
        serviceDiscoveryUrl: cfg.serviceDiscoveryUrl,
        overrideServiceDiscoveryUrl: cfg.overrideServiceDiscoveryUrl,
        allowedHosts: cfg.allowedHosts,
        cloudResponseWaitTimeout: cfg.cloudResponseWaitTimeout,
      },
      credentials: async () => {
        const cert = await iam.getCert("online");
        return {
          cert: await Deno.readTextFile(pathFromCertUrl(cert.certUrl, "online certificate")),
          key: await Deno.readTextFile(pathFromCertUrl(cert.keyUrl, "online key")),
          ca: caPem,
        };
      },
      db,
      logger,
    });
    late.link = cloud;
    cloud.on("connect", ({ url }) => {
      logger.info("cloud connected", { url });
      unitStatus.setCloudConnected(true);
      sm.setCloudConnected(true);
      alerts.flush();
    });
    cloud.on("disconnect", ({ reason }) => {
      logger.info("cloud disconnected", { reason });
      unitStatus.setCloudConnected(false);
      sm.setCloudConnected(false);
    });
    cloud.on("refusedHost", (e) => logger.error("cloud host refused: not in allowedHosts", e));
    cloud.on("dropped", (e) => logger.warn("cloud message given up without ack", e));
    cloud.onMessage((msg) => handleCloudMessage(msg, manager, logger));
    cloud.start();
    stack.add("cloud link", () => cloud.close());

    logger.debug("cm wired", { cmServer: grpc.address, fileServer: files.baseUrl });
    return { [Symbol.asyncDispose]: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Dispatches a cloud message to the module that handles it. */
async function handleCloudMessage(
  msg: CloudToUnitMessage,
  manager: UpdateManager,
  logger: Logger,
): Promise<void> {
  switch (msg.messageType) {
    case "desiredStatus": {
      const { messageType: _, ...body } = msg;
      await manager.handleDesiredStatus(body as DesiredStatusBody);
      return;
    }
    default:
      logger.info("cloud message not handled yet", { messageType: msg.messageType });
  }
}

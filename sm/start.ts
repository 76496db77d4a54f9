/**
 * Composition root of `sm`: IAM client → database → node config → runtime (orphans cleaned) →
 * image manager → launcher → CM session; stopped in reverse.
 * @module
 */
import type { StartContext } from "@aos/shared/component";
import { AosError, CleanupStack, toErrorInfo } from "@aos/shared/core";
import { Downloader } from "@aos/shared/download";
import { DenoCommandRunner } from "@aos/shared/exec";
import { createIamClient } from "@aos/shared/iamclient";
import type { ClientSecurity } from "@aos/shared/grpc";
import { commandSymlink } from "@aos/shared/layer";
import { createSpaceRegistry } from "@aos/shared/space";
import { CmSession } from "./adapters/cm_session.ts";
import { SqliteInstanceStore } from "./adapters/instance_store.ts";
import { imagePort, runtimePort } from "./adapters/launcher_ports.ts";
import { SM_HELPER_PROGRAMS, type SmConfig } from "./config.ts";
import { Launcher } from "./core/launcher.ts";
import { NodeConfigManager } from "./core/node_config.ts";
import { openSmDatabase } from "./db.ts";
import { createImageManager } from "./image/mod.ts";
import {
  DenoProcessSpawner,
  instanceId,
  loadResourcesConfig,
  RuncRuntime,
  runtimeId,
} from "./runtime/mod.ts";

/** The host part of a `host:port` address. */
function hostOf(addr: string): string {
  return addr.slice(0, addr.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1") || "localhost";
}

/** Starts `sm`; the result stops everything it started. */
export async function start(ctx: StartContext<SmConfig>): Promise<AsyncDisposable> {
  const { config: cfg, logger } = ctx;
  const stack = new CleanupStack();
  try {
    const rt = cfg.runtimes[0];
    if (!rt) {
      throw new AosError("invalidArgument", "sm.cfg: no runtime configured (runtimes[] is empty)");
    }

    const iam = await createIamClient({
      publicUrl: cfg.iamPublicServerUrl,
      protectedUrl: cfg.iamProtectedServerUrl,
      caCert: cfg.caCert,
      certStorage: cfg.certStorage,
      insecure: cfg.insecure,
      logger: logger.child({ module: "iamclient" }),
      signal: ctx.signal,
    });
    stack.add("iam client", () => iam.close());
    const node = await iam.getCurrentNodeInfo();
    logger.info("node identified", { nodeId: node.nodeId, nodeType: node.nodeType });

    await Deno.mkdir(cfg.workingDir, { recursive: true });
    const db = openSmDatabase({ workingDir: cfg.workingDir, logger });
    stack.add("database", () => db.close());

    const nodeConfig = new NodeConfigManager(
      cfg.nodeConfigFile,
      logger.child({ module: "nodeconfig" }),
    );
    await nodeConfig.load();

    const totalCores = node.cpus.reduce((n, c) => n + Number(c.numCores), 0) || 1;
    const runtime = await RuncRuntime.create({
      config: rt.config,
      runner: new DenoCommandRunner({
        allow: [rt.config.crunExecutable, ...SM_HELPER_PROGRAMS],
        logger,
      }),
      spawner: new DenoProcessSpawner({ allow: [rt.config.crunExecutable] }),
      logger: logger.child({ module: "runtime" }),
      node: { maxDmips: Number(node.maxDmips), totalCores },
      resources: await loadResourcesConfig(cfg.resourcesConfigFile),
      resourcesFile: cfg.resourcesConfigFile,
    });
    stack.add("runtime", () => runtime[Symbol.asyncDispose]());
    const orphans = await runtime.cleanupOrphans();
    if (orphans.containers.length || orphans.mounts.length) {
      logger.warn("removed orphans of an earlier run", { ...orphans });
    }

    const blobHost = hostOf(cfg.cmFileServerUrl);
    const blobPort = cfg.cmFileServerUrl.slice(cfg.cmFileServerUrl.lastIndexOf(":") + 1);
    const downloader = new Downloader({
      logger,
      schemes: ["http:"],
      allowHost: (url) => {
        const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
        const sameHost = host === blobHost || (blobHost === "localhost" && host === "127.0.0.1");
        return sameHost && (url.port || "80") === blobPort;
      },
    });
    stack.add("downloader", () => downloader[Symbol.asyncDispose]());

    const security = (): ClientSecurity => {
      const files = iam.tlsFiles();
      if (cfg.insecure || !files) return { mode: "insecure" };
      return { mode: "mtls", ca: files.caFile, cert: files.certFile, key: files.keyFile };
    };
    // The session's handlers use the launcher, created below; they run only after start().
    const session = new CmSession({
      address: cfg.cmServerUrl,
      security,
      logger: logger.child({ module: "cmsession" }),
      reconnectMs: cfg.cmReconnectTimeout,
      handlers: {
        smInfo: () => ({
          nodeId: node.nodeId,
          runtimes: [{
            runtimeId: runtimeId(rt.type, node.nodeId),
            type: rt.type,
            maxDmips: node.maxDmips,
            allowedDmips: 0n,
            totalRam: node.totalRam,
            allowedRam: 0n,
            maxInstances: 0n,
            osInfo: node.osInfo,
            archInfo: node.cpus[0]?.archInfo,
          }],
          resources: [],
        }),
        instancesStatus: () => launcher.statuses(),
        updateInstances: async (u) => {
          session.sendUpdateInstancesStatus(await launcher.update(u));
        },
        nodeConfigStatus: () => {
          const st = nodeConfig.status;
          return {
            state: st.state,
            version: st.version,
            error: st.error ? toErrorInfo(st.error) : undefined,
          };
        },
        checkNodeConfig: (text, version) => {
          nodeConfig.check(text, version);
          return { state: "installed", version, error: undefined };
        },
        setNodeConfig: async (text, version) => {
          await nodeConfig.set(text, version);
          return { state: "installed", version, error: undefined };
        },
      },
    });
    iam.onCredentialsChanged(() =>
      logger.info("sm certificate changed: the next CM connection uses it")
    );

    const images = await createImageManager({
      imagePath: cfg.imageManager.imagePath,
      db,
      downloader,
      space: createSpaceRegistry({ logger }),
      limitPercent: cfg.imageManager.imagesPartLimit,
      // SM has path-scoped grants only: symlinks in layers are made by `ln`.
      extract: { symlink: commandSymlink() },
      updateItemTtlMs: cfg.imageManager.updateItemTtl,
      removeOutdatedPeriodMs: cfg.imageManager.removeOutdatedPeriod,
      logger: logger.child({ module: "images" }),
      blobSource: {
        getBlobsInfos: async (digests) => {
          const urls = await session.getBlobsInfos(digests);
          return new Map(digests.map((d, i) => [d, [urls[i]!]]));
        },
      },
    });
    stack.add("image manager", () => images[Symbol.asyncDispose]());

    const launcher = new Launcher({
      store: new SqliteInstanceStore(db),
      runtime: runtimePort(runtime, images),
      images: imagePort(images),
      instanceIdOf: (i) => instanceId(i),
      runtimeId: runtimeId(rt.type, node.nodeId),
      logger: logger.child({ module: "launcher" }),
    });
    stack.add(
      "status forwarding",
      runtime.subscribe((s) => {
        const status = launcher.statusOf(s.instanceId, s.state, s.error);
        if (status) session.sendUpdateInstancesStatus([status]);
      }),
    );

    session.start();
    stack.add("CM session", () => session[Symbol.asyncDispose]());
    // Instances stored before a restart are started again; the CM sees them on connect.
    void launcher.restore().then(
      () => session.sendNodeInstancesStatus(),
      (err) => logger.error("restoring instances failed", { error: err }),
    );
    return stack;
  } catch (err) {
    await stack.run((name, e) => logger.error(`stopping ${name} failed`, { error: e }));
    throw err;
  }
}

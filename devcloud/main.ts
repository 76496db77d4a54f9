/**
 * Entry point of `devcloud`, the local stand-in for AosCloud: `serve` runs it (the default when
 * no command is given), `deploy`/`remove`/`status`/`alerts` talk to a running one.
 * @module
 */
import { runComponent } from "@aos/shared/component";
import { loadConfigFile, splitHostPort } from "@aos/shared/config";
import { CleanupStack } from "@aos/shared/core";
import { isClientCommand, runClient, USAGE } from "./cli.ts";
import {
  type DevcloudConfig,
  devcloudConfigSchema,
  devcloudManifest,
  devcloudPaths,
} from "./config.ts";

/** Runs `devcloud <command> …`; resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const args = argv[0] === "--" ? argv.slice(1) : [...argv];
  const [command] = args;
  if (command === "help" || (args.length === 1 && (command === "-h" || command === "--help"))) {
    console.log(USAGE);
    return 0;
  }
  if (isClientCommand(command)) return await runClient(args);
  const serveArgs = command === "serve" ? args.slice(1) : args;
  return await runComponent<DevcloudConfig>({
    cli: { name: "devcloud serve", defaultConfig: "devcloud.cfg" },
    loadConfig: (a) => loadConfigFile(a.config, devcloudConfigSchema),
    manifest: (config, a) => devcloudManifest(config, a.config, "serve"),
    start: async ({ config, logger }) => {
      // Loaded here, so the client commands never load the servers (nor `ws`).
      const { startDevcloud } = await import("./cloud.ts");
      const { ensureAdminToken, startAdminServer } = await import("./admin.ts");
      const { startDashboard } = await import("./dashboard.ts");
      const stack = new CleanupStack();
      try {
        const cloud = await startDevcloud({
          workingDir: config.workingDir,
          ...(config.servicesDir ? { servicesDir: config.servicesDir } : {}),
          cloudListen: config.cloudUrl,
          blobsListen: config.blobsUrl,
          tar: config.tar,
          logger,
        });
        stack.add("devcloud", () => cloud.close());
        const admin = splitHostPort(config.adminUrl);
        const server = await startAdminServer({
          devcloud: cloud,
          hostname: admin.host,
          port: admin.port,
          token: await ensureAdminToken(devcloudPaths(config).adminToken),
          logger,
        });
        stack.add("admin", () => server.close());
        const dashboardAddr = splitHostPort(config.dashboardUrl);
        const dashboard = await startDashboard({
          devcloud: cloud,
          hostname: dashboardAddr.host,
          port: dashboardAddr.port,
          logger,
        });
        stack.add("dashboard", () => dashboard.close());
        logger.info("devcloud ready", {
          discovery: cloud.discoveryUrl,
          blobs: cloud.blobsUrl,
          admin: server.url,
          dashboard: dashboard.url,
          caCert: cloud.pki.files.caCert,
        });
        return stack;
      } catch (err) {
        await stack[Symbol.asyncDispose]();
        throw err;
      }
    },
  }, serveArgs);
}

if (import.meta.main) Deno.exit(await main(Deno.args));

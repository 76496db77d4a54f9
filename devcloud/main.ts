/**
 * Entry point of `devcloud`, the local stand-in for AosCloud.
 * @module
 */
import { runComponent } from "@aos/shared/component";
import { loadConfigFile } from "@aos/shared/config";
import { CleanupStack } from "@aos/shared/core";
import { type DevcloudConfig, devcloudConfigSchema, devcloudManifest } from "./config.ts";

if (import.meta.main) {
  Deno.exit(
    await runComponent<DevcloudConfig>({
      cli: { name: "devcloud", defaultConfig: "devcloud.cfg" },
      loadConfig: (args) => loadConfigFile(args.config, devcloudConfigSchema),
      manifest: (config, args) => devcloudManifest(config, args.config),
      start: (ctx) => {
        ctx.logger.info("devcloud configuration loaded", { workingDir: ctx.config.workingDir });
        return Promise.resolve(new CleanupStack());
      },
    }, Deno.args),
  );
}

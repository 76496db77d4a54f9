/**
 * Entry point of `mp`. Run it through `deno task mp -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runComponent } from "@aos/shared/component";
import { resolveManifest } from "../permissions/mod.ts";
import type { MpConfig } from "./config.ts";
import { start } from "./start.ts";

const component = "mp";

if (import.meta.main) {
  let manifest: Awaited<ReturnType<typeof resolveManifest>>["manifest"] | undefined;
  Deno.exit(
    await runComponent<MpConfig>({
      cli: {
        name: component,
        defaultConfig: "/etc/aos/mp.cfg",
        provisioning: false,
        iamConfig: true,
      },
      loadConfig: async (args) => {
        const resolved = await resolveManifest(component, args);
        manifest = resolved.manifest;
        return resolved.config as MpConfig;
      },
      manifest: () => manifest!,
      start,
    }, Deno.args),
  );
}

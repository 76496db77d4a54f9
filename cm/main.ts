/**
 * Entry point of `cm`. Run it through `deno task cm -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runComponent } from "@aos/shared/component";
import { resolveManifest } from "../permissions/mod.ts";
import type { CmConfig } from "./config.ts";
import { start } from "./start.ts";

const component = "cm";

if (import.meta.main) {
  let manifest: Awaited<ReturnType<typeof resolveManifest>>["manifest"] | undefined;
  Deno.exit(
    await runComponent<CmConfig>({
      cli: {
        name: component,
        defaultConfig: "/etc/aos/cm.cfg",
        provisioning: false,
        iamConfig: true,
      },
      loadConfig: async (args) => {
        const resolved = await resolveManifest(component, args);
        manifest = resolved.manifest;
        return resolved.config as CmConfig;
      },
      manifest: () => manifest!,
      start,
    }, Deno.args),
  );
}

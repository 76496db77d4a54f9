/**
 * Entry point of `sm`. Run it through `deno task sm -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runComponent } from "@aos/shared/component";
import { resolveManifest } from "../permissions/mod.ts";
import type { SmConfig } from "./config.ts";
import { start } from "./start.ts";

const component = "sm";

if (import.meta.main) {
  let manifest: Awaited<ReturnType<typeof resolveManifest>>["manifest"] | undefined;
  Deno.exit(
    await runComponent<SmConfig>({
      cli: {
        name: component,
        defaultConfig: "/etc/aos/sm.cfg",
        provisioning: false,
        iamConfig: true,
      },
      loadConfig: async (args) => {
        const resolved = await resolveManifest(component, args);
        manifest = resolved.manifest;
        return resolved.config as SmConfig;
      },
      manifest: () => manifest!,
      start,
    }, Deno.args),
  );
}

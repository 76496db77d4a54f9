/**
 * Entry point of `iam`. Run it through `deno task iam -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runComponent } from "@aos/shared/component";
import { resolveManifest } from "../permissions/mod.ts";
import type { IamConfig } from "./config.ts";
import { start } from "./start.ts";

const component = "iam";

if (import.meta.main) {
  let manifest: Awaited<ReturnType<typeof resolveManifest>>["manifest"] | undefined;
  Deno.exit(
    await runComponent<IamConfig>({
      cli: {
        name: component,
        defaultConfig: "/etc/aos/iam.cfg",
        provisioning: true,
        iamConfig: false,
      },
      loadConfig: async (args) => {
        const resolved = await resolveManifest(component, args);
        manifest = resolved.manifest;
        return resolved.config as IamConfig;
      },
      manifest: () => manifest!,
      start,
    }, Deno.args),
  );
}

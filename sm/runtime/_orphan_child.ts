/**
 * Test fixture: starts one instance with a {@link RuncRuntime} and then idles, so the test can
 * SIGKILL this process and leave an orphaned container behind (a lost SM). Argument: JSON of
 * `{ config, layer }`.
 * @module
 */
import { nullLogger } from "@aos/shared/core";
import { DenoCommandRunner } from "@aos/shared/exec";
import { DenoProcessSpawner } from "./spawn.ts";
import { RuncRuntime, type RuncRuntimeConfig } from "./container_runtime.ts";

const { config, layer } = JSON.parse(Deno.args[0]!) as { config: RuncRuntimeConfig; layer: string };
const rt = await RuncRuntime.create({
  config,
  runner: new DenoCommandRunner({ allow: [config.crunExecutable, "mount", "umount"] }),
  spawner: new DenoProcessSpawner({ allow: [config.crunExecutable] }),
  logger: nullLogger,
  node: { maxDmips: 10000, totalCores: 1 },
});
const st = await rt.startInstance({
  ident: { itemId: "orphan", subjectId: "subj", instance: 0 },
  uid: 0,
  gid: 0,
  layers: [layer],
  imageConfig: { Cmd: ["sleep", "1000"] },
});
console.log(`ready ${st.instanceId} ${st.state}`);
// Keep running until the test kills us.
setInterval(() => {}, 1_000_000);

/**
 * Entry point of `mp`. Run it through `deno task mp -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runManaged } from "../permissions/run.ts";
import type { MpConfig } from "./config.ts";

if (import.meta.main) Deno.exit(await runManaged<MpConfig>("mp", () => import("./start.ts")));

/**
 * Entry point of `cm`. Run it through `deno task cm -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runManaged } from "../permissions/run.ts";
import type { CmConfig } from "./config.ts";

if (import.meta.main) Deno.exit(await runManaged<CmConfig>("cm", () => import("./start.ts")));

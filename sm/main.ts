/**
 * Entry point of `sm`. Run it through `deno task sm -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runManaged } from "../permissions/run.ts";
import type { SmConfig } from "./config.ts";

if (import.meta.main) Deno.exit(await runManaged<SmConfig>("sm", () => import("./start.ts")));

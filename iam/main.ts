/**
 * Entry point of `iam`. Run it through `deno task iam -- -c <config>`, which grants exactly
 * the permissions its config needs.
 * @module
 */
import { runManaged } from "../permissions/run.ts";
import type { IamConfig } from "./config.ts";

if (import.meta.main) Deno.exit(await runManaged<IamConfig>("iam", () => import("./start.ts")));

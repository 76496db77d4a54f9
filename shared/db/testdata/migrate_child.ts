/**
 * Child process for the kill test: opens the database given as the first argument and
 * migrates it to the latest fixture version (step 2 never finishes on its own).
 * @module
 */
import { openDatabase } from "../database.ts";
import { KILL_MIGRATIONS } from "./kill_migrations.ts";

const path = Deno.args[0];
if (!path) throw new Error("usage: migrate_child.ts <db path>");
using _db = openDatabase({ path, migrations: KILL_MIGRATIONS });

/**
 * Loads a JSON config file through a zod schema, with one-line errors naming file and key.
 * @module
 */
import * as z from "zod/mini";
import { AosError } from "../core/errors.ts";
import "../core/zod_en.ts";

/** Largest config file accepted (bytes). */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.map(String).join(".");
  let problem = issue.message;
  if (issue.code === "invalid_type") {
    problem = `expected ${issue.expected}, got ${describeInput(issue.input)}`;
  }
  return key ? `key "${key}": ${problem}` : problem;
}

function describeInput(v: unknown): string {
  if (v === undefined) return "nothing (missing)";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `string ${JSON.stringify(v.slice(0, 60))}`;
  return `${typeof v} ${typeof v === "object" ? "" : String(v)}`.trim();
}

/** Parses already-read JSON text with `schema`; errors name `file` and the key. */
export function parseConfigText<S extends z.core.$ZodType>(
  file: string,
  text: string,
  schema: S,
): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AosError("invalidArgument", `${file}: malformed JSON: ${(err as Error).message}`);
  }
  const result = z.safeParse(schema, json, { reportInput: true });
  if (!result.success) {
    const issues = result.error.issues;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : "";
    throw new AosError("invalidArgument", `${file}: ${describeIssue(issues[0]!)}${more}`);
  }
  return result.data;
}

/** Reads and parses a config file. */
export async function loadConfigFile<S extends z.core.$ZodType>(
  file: string,
  schema: S,
): Promise<z.output<S>> {
  let text: string;
  try {
    const info = await Deno.stat(file);
    if (info.size > MAX_CONFIG_BYTES) {
      throw new AosError("outOfRange", `${file}: too large (${info.size} bytes)`);
    }
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof AosError) throw err;
    const why = err instanceof Deno.errors.NotFound ? "file not found" : (err as Error).message;
    throw new AosError("notFound", `${file}: cannot read config: ${why}`, { cause: err });
  }
  return parseConfigText(file, text, schema);
}

/**
 * Lenient zod building blocks for received cloud messages, matching how the C++ reader behaves:
 * keys case-insensitive, `null` same as absent, unknown keys dropped, missing scalars defaulted.
 * @module
 */
import * as z from "zod/mini";
import "../core/zod_en.ts";
import { ciObject } from "../config/schema.ts";
import { parseAosTime } from "../core/time.ts";

/**
 * Drops `null` values and keys that match no known key (case-insensitively) before `ciObject`
 * renames the rest. Dropping unknown keys first also keeps a received `"__proto__"` key from
 * ever being assigned to the renamed object (`ciObject` copies unknown keys as they are).
 */
function pickKnown(keys: readonly string[]) {
  const known = new Set(keys.map((k) => k.toLowerCase()));
  return (value: unknown): unknown => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (v === null || !known.has(key.toLowerCase())) continue;
      out[key] = v;
    }
    return out;
  };
}

/** A received JSON object: keys matched case-insensitively, `null` = absent, unknown keys ignored. */
export function wobj<T extends z.core.$ZodLooseShape>(shape: T) {
  return z.pipe(z.transform(pickKnown(Object.keys(shape))), ciObject(shape));
}

/** A string; absent reads as `""` (the C++ reader's default). */
export const str = () => z._default(z.string(), "");
/** An optional string. */
export const optStr = () => z.optional(z.string());
/** A non-negative integer; absent reads as 0. */
export const uint = () => z._default(z.number().check(z.int(), z.gte(0)), 0);
/** An optional non-negative integer. */
export const optUint = () => z.optional(z.number().check(z.int(), z.gte(0)));
/** An integer (may be negative); absent reads as 0. */
export const int = () => z._default(z.number().check(z.int()), 0);
/** A boolean; absent reads as `false`. */
export const bool = () => z._default(z.boolean(), false);
/** A number; absent reads as 0. */
export const num = () => z._default(z.number(), 0);

/** Default upper bound of a received list. */
export const MAX_LIST = 4096;

/** A list bounded to `max` elements; absent reads as `[]`. */
export function list<T extends z.ZodMiniType>(element: T, max = MAX_LIST) {
  return z._default(z.array(element).check(z.maxLength(max)), []);
}

/** An optional list bounded to `max` elements (absent stays absent: it means "no change"). */
export function optList<T extends z.ZodMiniType>(element: T, max = MAX_LIST) {
  return z.optional(z.array(element).check(z.maxLength(max)));
}

/** An RFC 3339 timestamp, parsed to a `Date`. */
export const time = () =>
  z.pipe(
    z.string(),
    z.transform((s, ctx) => {
      try {
        return parseAosTime(s);
      } catch {
        ctx.issues.push({
          code: "custom",
          message: `expected an RFC 3339 timestamp, got "${s.slice(0, 40)}"`,
          input: s,
        });
        return z.NEVER;
      }
    }),
  );

/** A string enum whose received value is matched case-insensitively. */
export function ienum<const T extends readonly [string, ...string[]]>(values: T) {
  const byLower = new Map(values.map((v) => [v.toLowerCase(), v]));
  return z.pipe(
    z.transform((v) => (typeof v === "string" ? byLower.get(v.toLowerCase()) ?? v : v)),
    z.enum(values),
  );
}

/** Looks a key up case-insensitively in a received object. */
export function getKey(value: Record<string, unknown>, key: string): unknown {
  if (key in value) return value[key];
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(value)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

/**
 * A union selected by a string field (`tag` of an alert): the field value is matched
 * case-insensitively (and through `aliases`), and errors keep the path inside the chosen branch.
 */
export function tagged<
  const F extends string,
  M extends Record<string, z.ZodMiniType<Record<string, unknown>>>,
>(
  field: F,
  branches: M,
  aliases: Record<string, keyof M & string> = {},
) {
  const byLower = new Map<string, keyof M & string>();
  for (const name of Object.keys(branches)) byLower.set(name.toLowerCase(), name);
  for (const [alias, name] of Object.entries(aliases)) byLower.set(alias.toLowerCase(), name);
  type Out = { [K in keyof M]: { [P in F]: K } & z.output<M[K]> }[keyof M];
  return z.pipe(
    z.unknown(),
    z.transform((value, ctx): Out => {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        ctx.issues.push({ code: "custom", message: "expected object", input: value });
        return z.NEVER;
      }
      const raw = getKey(value as Record<string, unknown>, field);
      const name = typeof raw === "string" ? byLower.get(raw.toLowerCase()) : undefined;
      if (name === undefined) {
        ctx.issues.push({
          code: "custom",
          path: [field],
          message: `unknown ${field} ${JSON.stringify(raw)}`,
          input: raw,
        });
        return z.NEVER;
      }
      const result = branches[name]!.safeParse(value);
      if (!result.success) {
        for (const issue of result.error.issues) {
          ctx.issues.push({ ...issue, input: value } as z.core.$ZodRawIssue);
        }
        return z.NEVER;
      }
      return { ...result.data, [field]: name } as Out;
    }),
  );
}

/** Formats zod issues as `where: what` lines, e.g. `items[2].version: expected string`. */
export function formatIssues(prefix: string, issues: readonly z.core.$ZodIssue[]): string {
  return issues.slice(0, 5).map((issue) => {
    let where = prefix;
    for (const p of issue.path) {
      where += typeof p === "number" ? `[${p}]` : where ? `.${String(p)}` : String(p);
    }
    const what = issue.message.replace(/^Invalid (input|option): /, "");
    return `${where || "message"}: ${what}`;
  }).join("; ") + (issues.length > 5 ? ` (+${issues.length - 5} more)` : "");
}

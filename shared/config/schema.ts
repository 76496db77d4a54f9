/**
 * zod building blocks for upstream-compatible config files: case-insensitive keys, durations,
 * host:port addresses.
 * @module
 */
import * as z from "zod/mini";
import { parseDuration } from "./duration.ts";

function renameKeys(value: unknown, canonical: readonly string[]): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const byLower = new Map(canonical.map((k) => [k.toLowerCase(), k]));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const name = byLower.get(key.toLowerCase()) ?? key;
    // An exact-case key wins over a differently cased duplicate.
    if (name in out && key !== name) continue;
    out[name] = v;
  }
  return out;
}

/**
 * An object schema whose keys match case-insensitively (`maxDmips` = `maxDMIPS`).
 * Unknown keys are accepted and dropped, so upstream-only keys do not break loading.
 */
export function ciObject<T extends z.core.$ZodLooseShape>(shape: T) {
  return z.pipe(
    z.transform((v) => renameKeys(v, Object.keys(shape))),
    z.object(shape),
  );
}

/** A duration (Go string, ISO-8601 or seconds) resolved to milliseconds. */
export const duration = z.pipe(
  z.union([z.number(), z.string()]),
  z.transform((v: number | string, ctx) => {
    try {
      return parseDuration(v);
    } catch (err) {
      ctx.issues.push({ code: "custom", message: (err as Error).message, input: v });
      return z.NEVER;
    }
  }),
);

/** A duration with a default given as text, e.g. `durationOr("10s")`. */
export function durationOr(text: string) {
  return z._default(duration, parseDuration(text));
}

/** A `host:port` address; a leading `:` means all interfaces upstream. Empty allowed. */
export const hostPort = z.string().check(z.refine(
  (s) => s === "" || /^(\[[0-9a-fA-F:.]+\]|[^\s:/]*):\d{1,5}$/.test(s),
  { message: 'expected "host:port" or ":port"' },
));

/** A non-empty path string. */
export const path = z.string().check(z.minLength(1, { message: "must be a non-empty path" }));

/** Splits `host:port` (leading `:` → `0.0.0.0`). */
export function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, "$1") || "0.0.0.0";
  return { host, port: Number(addr.slice(i + 1)) };
}

/** A `host:port` address for a client dialing it (`:8090` → `localhost:8090`). */
export function dialAddress(addr: string): string {
  return addr.startsWith(":") ? `localhost${addr}` : addr;
}

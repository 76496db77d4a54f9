/**
 * Time helpers: the upstream timestamp format and a clock port.
 * @module
 */

/** Clock port so tests can control time. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

/** The system clock. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * Formats a time as upstream C++ does: UTC, microseconds, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
 * `micros` adds sub-millisecond precision when known (0..999).
 */
export function formatAosTime(t: Date | number, micros = 0): string {
  const d = typeof t === "number" ? new Date(t) : t;
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  const us = String(Math.trunc(micros) % 1000).padStart(3, "0");
  return `${iso.slice(0, 23)}${us}Z`;
}

/** Parses an RFC 3339 timestamp (any fraction length, `Z` or offset); throws on garbage. */
export function parseAosTime(s: string): Date {
  const m = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/
    .exec(s);
  if (!m) throw new RangeError(`Invalid timestamp "${s}": expected RFC 3339`);
  const frac = (m[3] ?? "").padEnd(3, "0").slice(0, 3);
  const zone = m[4] === "z" ? "Z" : m[4];
  const d = new Date(`${m[1]}T${m[2]}.${frac}${zone}`);
  if (Number.isNaN(d.getTime())) throw new RangeError(`Invalid timestamp "${s}"`);
  return d;
}

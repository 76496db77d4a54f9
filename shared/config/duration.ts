/**
 * Duration parsing as upstream configs write them.
 * @module
 */

const GO_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a duration to milliseconds: Go-like strings (`"10s"`, `"1m30s"`, `"24h"`, `"30d"`,
 * `"100ms"`), ISO-8601 (`"PT10S"`, `"P1DT2H"`), or plain seconds (number or numeric string).
 * Throws a `RangeError` with the offending text otherwise.
 */
export function parseDuration(input: string | number): number {
  if (typeof input === "number") {
    if (!Number.isFinite(input) || input < 0) {
      throw new RangeError(`invalid duration ${input}: seconds must be a finite number ≥ 0`);
    }
    return input * 1000;
  }
  const s = input.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const iso =
    /^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i
      .exec(s);
  if (iso && s.length > 1 && !/T$/i.test(s)) {
    const [, w, d, h, m, sec] = iso.map((x) => Number(x ?? 0));
    return (((w! * 7 + d!) * 24 + h!) * 60 + m!) * 60_000 + sec! * 1000;
  }
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * GO_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (s.length === 0 || pos !== s.length) {
    throw new RangeError(
      `invalid duration "${input}": expected e.g. "10s", "1m30s", "24h", "PT10S" or seconds`,
    );
  }
  return total;
}

/** Formats milliseconds as a Go-like duration string (`"1m30s"`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    const n = Math.floor(rest / size);
    if (n) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  if (rest) parts.push(`${rest}ms`);
  return parts.join("");
}

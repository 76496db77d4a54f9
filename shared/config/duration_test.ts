import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "durations: Go strings, ISO-8601 and seconds",
  ...pure,
  fn() {
    const cases: [string | number, number][] = [
      ["10s", 10_000],
      ["1m30s", 90_000],
      ["24h", 86_400_000],
      ["30d", 30 * 86_400_000],
      ["100ms", 100],
      ["1.5h", 5_400_000],
      ["PT10S", 10_000],
      ["PT1M30S", 90_000],
      ["P1DT2H", 93_600_000],
      ["pt0.5s", 500],
      [35, 35_000],
      ["35", 35_000],
      [0, 0],
    ];
    for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, String(input));
  },
});

Deno.test({
  name: "bad durations are rejected with the offending text",
  ...pure,
  fn() {
    for (const bad of ["", "10x", "s", "1m 30s", "P", "PT", "-5s", "ten seconds"]) {
      assert.throws(() => parseDuration(bad), (e: Error) => e.message.includes(`"${bad}"`), bad);
    }
    assert.throws(() => parseDuration(-1), RangeError);
    assert.throws(() => parseDuration(Number.NaN), RangeError);
  },
});

Deno.test({
  name: "formatDuration is the inverse for whole units",
  ...pure,
  fn() {
    assert.equal(formatDuration(90_000), "1m30s");
    assert.equal(formatDuration(0), "0s");
    assert.equal(parseDuration(formatDuration(3_723_004)), 3_723_004);
  },
});

import assert from "node:assert/strict";
import { formatAosTime, parseAosTime } from "./time.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "upstream time format: UTC with microseconds",
  ...pure,
  fn() {
    assert.deepEqual(
      formatAosTime(Date.UTC(2024, 0, 2, 3, 4, 5, 678)),
      "2024-01-02T03:04:05.678000Z",
    );
    assert.deepEqual(
      formatAosTime(new Date(Date.UTC(2024, 0, 2)), 42),
      "2024-01-02T00:00:00.000042Z",
    );
  },
});

Deno.test({
  name: "RFC 3339 parsing accepts fractions and offsets, rejects garbage",
  ...pure,
  fn() {
    assert.deepEqual(
      parseAosTime("2024-01-02T03:04:05.678901Z").toISOString(),
      "2024-01-02T03:04:05.678Z",
    );
    assert.deepEqual(
      parseAosTime("2024-01-02T03:04:05Z").toISOString(),
      "2024-01-02T03:04:05.000Z",
    );
    assert.deepEqual(
      parseAosTime("2024-01-02T05:04:05+02:00").toISOString(),
      "2024-01-02T03:04:05.000Z",
    );
    assert.throws(() => parseAosTime("yesterday"), RangeError);
    assert.throws(() => parseAosTime("2024-13-45T99:00:00Z"), RangeError);
  },
});

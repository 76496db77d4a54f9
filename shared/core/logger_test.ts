import assert from "node:assert/strict";
import { createLogger, formatJson, formatText, type LogRecord, memoryLogger } from "./logger.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "logger filters by level and merges child fields",
  ...pure,
  fn() {
    const records: LogRecord[] = [];
    const log = createLogger({ level: "info", sink: (r) => records.push(r), fields: { a: 1 } });
    log.debug("hidden");
    log.child({ module: "x" }).warn("shown", { b: 2 });
    assert.deepEqual(records.length, 1);
    assert.deepEqual(records[0]!.level, "warn");
    assert.deepEqual(records[0]!.fields, { a: 1, module: "x", b: 2 });
  },
});

Deno.test({
  name: "text and JSON-lines formats",
  ...pure,
  fn() {
    const r: LogRecord = {
      time: new Date("2026-01-02T03:04:05.678Z"),
      level: "error",
      msg: "Cannot apply cert",
      fields: { type: "cm", reason: "chain does not end", err: new Error("bad"), n: 10n },
    };
    assert.deepEqual(
      formatText(r),
      '2026-01-02T03:04:05.678Z ERROR Cannot apply cert type=cm reason="chain does not end" err=bad n=10',
    );
    const json = JSON.parse(formatJson(r));
    assert.deepEqual(json.level, "error");
    assert.deepEqual(json.err, "bad");
    assert.deepEqual(json.n, "10");
    assert.deepEqual(json.time, "2026-01-02T03:04:05.678Z");
  },
});

Deno.test({
  name: "memory logger keeps records",
  ...pure,
  fn() {
    const log = memoryLogger();
    log.debug("d");
    assert.ok(log.records.some((r) => r.msg === "d"));
  },
});

import assert from "node:assert/strict";
import * as z from "zod/mini";
import { ciObject, dialAddress, durationOr, hostPort, splitHostPort } from "./schema.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "keys match case-insensitively, unknown keys are dropped, defaults apply",
  ...pure,
  fn() {
    const schema = ciObject({
      maxDmips: z._default(z.number(), 0),
      nodeIdPath: z.string(),
      monitoring: z.prefault(ciObject({ pollPeriod: durationOr("35s") }), {}),
    });
    const cfg = schema.parse({ MAXDMIPS: 1000, nodeIDPath: "/x", migration: { a: 1 } });
    assert.deepEqual(cfg, { maxDmips: 1000, nodeIdPath: "/x", monitoring: { pollPeriod: 35_000 } });
    const nested = schema.parse({ nodeIdPath: "/x", Monitoring: { POLLPERIOD: "1m" } });
    assert.equal(nested.monitoring.pollPeriod, 60_000);
  },
});

Deno.test({
  name: "exact-case key wins over a differently cased duplicate",
  ...pure,
  fn() {
    const schema = ciObject({ workingDir: z.string() });
    assert.equal(schema.parse({ WORKINGDIR: "/a", workingDir: "/b" }).workingDir, "/b");
    assert.equal(schema.parse({ workingDir: "/b", WORKINGDIR: "/a" }).workingDir, "/b");
  },
});

Deno.test({
  name: "host:port addresses",
  ...pure,
  fn() {
    for (const ok of [":8090", "localhost:8089", "127.0.0.1:1", "[::1]:8093", ""]) {
      assert.ok(hostPort.safeParse(ok).success, ok);
    }
    for (const bad of ["localhost", "http://x:1", "a b:1", "x:port"]) {
      assert.ok(!hostPort.safeParse(bad).success, bad);
    }
    assert.deepEqual(splitHostPort(":8090"), { host: "0.0.0.0", port: 8090 });
    assert.deepEqual(splitHostPort("[::1]:8093"), { host: "::1", port: 8093 });
    assert.equal(dialAddress(":8090"), "localhost:8090");
  },
});

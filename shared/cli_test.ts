import assert from "node:assert/strict";
import { type CliSpec, parseCli, usage } from "./cli.ts";

const spec: CliSpec = { name: "iam", defaultConfig: "/etc/aos/iam.cfg", provisioning: true };
const pure = { permissions: "none" } as const;

Deno.test({
  name: "upstream flags parse in short, long and --x=y forms",
  ...pure,
  fn() {
    assert.deepEqual(parseCli([], spec), {
      config: "/etc/aos/iam.cfg",
      logLevel: "info",
      logFormat: "text",
      provisioning: false,
      version: false,
      help: false,
    });
    const a = parseCli(["--", "-c", "x.cfg", "-p", "-v"], spec);
    assert.equal(a.config, "x.cfg");
    assert.equal(a.provisioning, true);
    assert.equal(a.logLevel, "debug");
    const b = parseCli(["--config=y.cfg", "--verbose", "warn", "--log-format", "json"], spec);
    assert.equal(b.config, "y.cfg");
    assert.equal(b.logLevel, "warn");
    assert.equal(b.logFormat, "json");
    assert.equal(parseCli(["--version"], spec).version, true);
    assert.equal(parseCli(["-h"], spec).help, true);
  },
});

Deno.test({
  name: "bad command lines are rejected with one clear message",
  ...pure,
  fn() {
    assert.throws(() => parseCli(["-c"], spec), /option -c needs a value/);
    assert.throws(() => parseCli(["--bogus"], spec), /unknown option "--bogus"/);
    assert.throws(() => parseCli(["-p"], { ...spec, provisioning: false }), /no provisioning mode/);
    assert.throws(() => parseCli(["--iam-config", "x"], spec), /unknown option/);
    assert.equal(
      parseCli(["--iam-config", "/etc/aos/iam.cfg"], { ...spec, iamConfig: true }).iamConfig,
      "/etc/aos/iam.cfg",
    );
    assert.match(usage(spec), /--provisioning/);
  },
});

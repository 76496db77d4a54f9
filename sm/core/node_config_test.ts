import assert from "node:assert/strict";
import { nullLogger } from "@aos/shared/logger";
import { compareSemver } from "@aos/shared/core";
import { NodeConfigManager } from "./node_config.ts";

const cfg = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ nodeGroupSubject: { codename: "main" }, labels: ["x"], priority: 1, ...extra });

Deno.test({
  name: "semver ordering",
  permissions: "none",
  fn() {
    assert.equal(compareSemver("1.0.0", "1.0.1"), -1);
    assert.equal(compareSemver("2.0.0", "1.9.9"), 1);
    assert.equal(compareSemver("1.0.0-rc1", "1.0.0"), -1);
    assert.equal(compareSemver("1.0.0", "1.0.0"), 0);
    assert.throws(() => compareSemver("one", "1.0.0"), /not a semantic version/);
  },
});

Deno.test("node config: check/set with strictly increasing versions, persisted, reloaded", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/aos_node.cfg`;
    const m = new NodeConfigManager(file, nullLogger);
    await m.load();
    assert.equal(m.status.state, "absent");
    assert.throws(() => m.check("{bad", "1.0.0"), /Node config is not JSON/);
    assert.throws(() => m.check(JSON.stringify({ labels: [] }), "1.0.0"), /key "nodeGroupSubject"/);
    assert.throws(() => m.check(cfg(), "one"), /not a semantic version/);
    const seen: string[][] = [];
    m.subscribe((c) => seen.push(c.labels));
    await m.set(cfg(), "1.0.0");
    assert.equal(m.status.state, "installed");
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    await assert.rejects(() => m.set(cfg(), "1.0.0"), /already installed/);
    await assert.rejects(() => m.set(cfg(), "0.9.0"), /wrong version/);
    assert.equal(m.status.version, "1.0.0");
    await m.set(cfg({ labels: ["y"] }), "1.1.0");
    assert.deepEqual(seen, [["x"], ["y"]]);

    const again = new NodeConfigManager(file, nullLogger);
    await again.load();
    assert.equal(again.status.version, "1.1.0");
    assert.deepEqual(again.config?.labels, ["y"]);

    await Deno.writeTextFile(file, "garbage");
    const broken = new NodeConfigManager(file, nullLogger);
    await broken.load();
    assert.equal(broken.status.state, "failed");
    assert.throws(() => broken.check(cfg(), "2.0.0"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

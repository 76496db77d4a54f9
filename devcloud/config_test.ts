import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { manifestToFlags } from "@aos/shared/permissions";
import { devcloudConfigSchema, devcloudManifest } from "./config.ts";

Deno.test({
  name: "devcloud.cfg defaults and its narrow grant",
  permissions: "none",
  fn() {
    const cfg = parseConfigText("devcloud.cfg", '{"WorkingDir": "/tmp/dc"}', devcloudConfigSchema);
    assert.equal(cfg.cloudUrl, "localhost:9000");
    const flags = manifestToFlags(devcloudManifest(cfg, "/etc/devcloud.cfg"));
    assert.ok(flags.includes("--allow-net=localhost:9000,localhost:9001,localhost:9080"));
    assert.ok(!flags.some((f) => f.startsWith("--allow-run")));
  },
});

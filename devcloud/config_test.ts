import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { manifestToFlags } from "@aos/shared/permissions";
import { devcloudConfigSchema, devcloudManifest, devcloudPaths } from "./config.ts";

Deno.test({
  name: "devcloud.cfg defaults and its narrow grants",
  permissions: "none",
  fn() {
    const cfg = parseConfigText("devcloud.cfg", '{"WorkingDir": "/tmp/dc"}', devcloudConfigSchema);
    assert.equal(cfg.cloudUrl, "localhost:9000");
    assert.equal(cfg.adminUrl, "localhost:9081");
    assert.equal(devcloudPaths(cfg).services, "/tmp/dc/services");
    const flags = manifestToFlags(devcloudManifest(cfg, "/etc/devcloud.cfg"));
    assert.ok(
      flags.includes(
        "--allow-net=127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9080,127.0.0.1:9081," +
          "localhost:9000,localhost:9001,localhost:9080,localhost:9081",
      ),
      flags.join(" "),
    );
    assert.ok(flags.includes("--allow-run=tar"));
    assert.ok(flags.includes("--allow-write=/tmp/dc"));

    const client = manifestToFlags(devcloudManifest(cfg, "/etc/devcloud.cfg", "client"));
    assert.ok(client.includes("--allow-net=127.0.0.1:9081,localhost:9081"), client.join(" "));
    assert.ok(client.includes("--allow-read=/etc/devcloud.cfg,/tmp/dc/admin-token"));
    assert.ok(!client.some((f) => f.startsWith("--allow-write") || f.startsWith("--allow-run")));
  },
});

import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { smConfigSchema } from "./config.ts";

Deno.test({
  name: "the shipped sm.cfg template loads; paths default under workingDir",
  permissions: "none",
  fn() {
    const text = JSON.stringify({
      caCert: "/usr/share/ca-certificates/aos/AosRootCA.crt",
      certStorage: "sm",
      iamProtectedServerUrl: "localhost:8089",
      iamPublicServerUrl: "localhost:8090",
      cmServerUrl: "localhost:8093",
      workingDir: "/var/aos/workdirs/sm",
      stateDir: "/var/aos/states",
      storageDir: "/var/aos/storages",
      runtimes: [{
        plugin: "container",
        type: "crun",
        config: {
          stateDir: "/var/aos/states",
          storageDir: "/var/aos/storages",
          crunExecutable: "/usr/bin/crun",
        },
      }],
      migration: { migrationPath: "/usr/share/aos/sm/migration" },
    });
    const cfg = parseConfigText("sm.cfg", text, smConfigSchema);
    assert.equal(cfg.cmReconnectTimeout, 10_000);
    assert.equal(cfg.nodeConfigFile, "/var/aos/workdirs/sm/aos_node.cfg");
    assert.equal(cfg.imageManager.imagePath, "/var/aos/workdirs/sm/images");
    assert.equal(cfg.imageManager.updateItemTtl, 30 * 86_400_000);
    assert.equal(cfg.monitoring.pollPeriod, 35_000);
    assert.equal(cfg.logging.maxPartSize, 262144);
    const rt = cfg.runtimes[0]!;
    assert.equal(rt.config.stateDir, "/var/aos/states");
    assert.equal(rt.config.hostWhiteoutsDir, "/var/aos/workdirs/sm/whiteouts");
    assert.equal(rt.config.crunExecutable, "/usr/bin/crun");
    assert.equal(rt.config.runtimeDir, "/run/aos/runtime");
  },
});

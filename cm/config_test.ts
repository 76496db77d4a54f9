import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { cmConfigSchema } from "./config.ts";

Deno.test({
  name: "cm.cfg loads with upstream defaults and an egress allow-list",
  permissions: "none",
  fn() {
    const cfg = parseConfigText(
      "cm.cfg",
      JSON.stringify({
        caCert: "/ca.pem",
        serviceDiscoveryUrl: "https://aoscloud.io:9000/sd/v7/",
        workingDir: "/var/aos/workdirs/cm",
        allowedHosts: ["*.aoscloud.io", "blobs.example.com:443"],
        UnitStatusSendTimeout: "PT10S",
      }),
      cmConfigSchema,
    );
    assert.equal(cfg.cmServerUrl, ":8093");
    assert.equal(cfg.fileServerUrl, "localhost:8094");
    assert.equal(cfg.unitStatusSendTimeout, 10_000);
    assert.equal(cfg.launcher.nodesConnectionTimeout, 600_000);
    assert.equal(cfg.imageManager.installPath, "/var/aos/workdirs/cm/install");
    assert.equal(cfg.unitConfigFile, "/var/aos/workdirs/cm/aos_unit.cfg");
    assert.throws(
      () =>
        parseConfigText(
          "cm.cfg",
          JSON.stringify({
            caCert: "/c",
            serviceDiscoveryUrl: "https://x/",
            workingDir: "/w",
            allowedHosts: ["http://x"],
          }),
          cmConfigSchema,
        ),
      /key "allowedHosts\.0"/,
    );
  },
});

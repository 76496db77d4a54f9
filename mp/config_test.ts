import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { mpConfigSchema } from "./config.ts";

Deno.test({
  name: "mp.cfg loads with the shipped defaults",
  permissions: "none",
  fn() {
    const cfg = parseConfigText(
      "mp.cfg",
      JSON.stringify({
        CACert: "/ca.pem",
        WorkingDir: "/var/aos/workdirs/mp",
        IAMConfig: { IAMPublicServerURL: ":8090" },
        VChan: { XsRxPath: "tmp/vchan/aos/rx" },
      }),
      mpConfigSchema,
    );
    assert.equal(cfg.certStorage, "sm");
    assert.equal(cfg.iamConfig.iamMainProtectedServerUrl, "localhost:8089");
    assert.equal(cfg.cmConfig.securePort, 4);
    assert.equal(cfg.imageStoreDir, "/var/aos/workdirs/mp/images");
    assert.equal(cfg.downloader.downloadDir, "/var/aos/workdirs/mp/downloads");
    assert.equal(cfg.logProvider.maxPartCount, 10);
  },
});

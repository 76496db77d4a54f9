import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { iamConfigSchema, isSecondaryIam } from "./config.ts";

// The shipped upstream iam.cfg shape, with only the cert-module plugin changed.
const upstreamLike = {
  CACert: "/usr/share/ca-certificates/aos/AosRootCA.crt",
  CertStorage: "iam",
  IAMPublicServerURL: ":8090",
  IAMProtectedServerURL: ":8089",
  WorkingDir: "/var/aos/iam",
  NodeReconnectInterval: "10s",
  FinishProvisioningCmdArgs: ["/usr/bin/provfinish.sh"],
  DeprovisionCmdArgs: ["/usr/bin/deprovision.sh", "async"],
  Identifier: {
    Plugin: "fileidentifier",
    Params: {
      SystemIDPath: "/etc/aos/sid",
      UnitModelPath: "/etc/aos/model",
      SubjectsPath: "/etc/aos/subj",
    },
  },
  NodeInfo: {
    NodeIDPath: "/etc/machine-id",
    NodeName: "main",
    NodeType: "aos-core-main",
    MaxDMIPS: 10000,
    Attrs: { MainNode: "", AosComponents: "cm,iam,sm" },
    Partitions: [{ Name: "aos", Types: ["generic"], Path: "/var/aos" }],
  },
  CertModules: [
    {
      ID: "online",
      Plugin: "filemodule",
      Algorithm: "ecc",
      MaxItems: 2,
      Params: { StoragePath: "/var/aos/crypt/online" },
    },
    {
      ID: "iam",
      Plugin: "filemodule",
      Algorithm: "ecc",
      MaxItems: 2,
      ExtendedKeyUsage: ["serverAuth", "clientAuth"],
      AlternativeNames: ["localhost"],
      Params: { StoragePath: "/var/aos/crypt/iam" },
    },
  ],
  Migration: {
    MigrationPath: "/usr/share/aos/iam/migration",
    MergedMigrationPath: "/var/aos/iam/migration",
  },
};

Deno.test({
  name: "an upstream-shaped iam.cfg loads with upstream defaults",
  permissions: "none",
  fn() {
    const cfg = parseConfigText("iam.cfg", JSON.stringify(upstreamLike), iamConfigSchema);
    assert.equal(cfg.iamPublicServerUrl, ":8090");
    assert.equal(cfg.nodeInfo.maxDmips, 10000);
    assert.equal(cfg.nodeInfo.provisioningStatePath, "/var/aos/.provisionstate");
    assert.equal(cfg.nodeInfo.memInfoPath, "/proc/meminfo");
    assert.equal(cfg.identifier.plugin, "fileidentifier");
    assert.equal(cfg.identifier.params.subjectsPath, "/etc/aos/subj");
    assert.equal(cfg.certModules[1]!.extendedKeyUsage.length, 2);
    assert.equal(cfg.certModules[0]!.disabled, false);
    assert.equal(cfg.nodeReconnectInterval, 10_000);
    assert.equal(isSecondaryIam(cfg), false);
  },
});

Deno.test({
  name: "iam.cfg rejects duplicate modules and a fileidentifier without paths",
  permissions: "none",
  fn() {
    const dup = {
      ...upstreamLike,
      CertModules: [upstreamLike.CertModules[0], upstreamLike.CertModules[0]],
    };
    assert.throws(
      () => parseConfigText("iam.cfg", JSON.stringify(dup), iamConfigSchema),
      /key "certModules\.1\.id": duplicate id/,
    );
    const ident = { ...upstreamLike, Identifier: { Plugin: "fileidentifier", Params: {} } };
    assert.throws(
      () => parseConfigText("iam.cfg", JSON.stringify(ident), iamConfigSchema),
      /key "identifier\.params\.systemIdPath": required by the fileidentifier plugin/,
    );
  },
});

import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { RecordingRunner } from "@aos/shared/exec";
import { nullLogger } from "@aos/shared/logger";
import { FileCertStorage } from "../adapters/file_cert_storage.ts";
import { IamDatabase } from "../adapters/iam_db.ts";
import { iamConfigSchema } from "../config.ts";
import { CertHandler } from "./cert_handler.ts";
import { CurrentNode } from "./current_node.ts";
import { OwnerPassword } from "./owner.ts";
import { ProvisionManager } from "./provision_manager.ts";
import type { IdentProvider } from "./types.ts";

const ident: IdentProvider = {
  getSystemInfo: () => Promise.resolve({ systemId: "sys-1", unitModel: "m", version: "1" }),
  getSubjects: () => Promise.resolve([]),
  subscribeSubjects: () => () => {},
};

Deno.test("provisioning: start, keys, finish, pause/resume, deprovision with password checks", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = parseConfigText(
    "iam.cfg",
    JSON.stringify({
      caCert: `${dir}/ca.pem`,
      workingDir: dir,
      startProvisioningCmdArgs: ["/bin/start", "a"],
      finishProvisioningCmdArgs: ["/bin/finish"],
      deprovisionCmdArgs: ["/bin/deprov", "async"],
      nodeInfo: { nodeId: "node0", provisioningStatePath: `${dir}/.provisionstate` },
      certModules: [
        { id: "iam", plugin: "filemodule", params: { storagePath: `${dir}/iam` } },
        {
          id: "self",
          plugin: "filemodule",
          selfSigned: true,
          params: { storagePath: `${dir}/self` },
        },
      ],
    }),
    iamConfigSchema,
  );
  const db = IamDatabase.open(`${dir}/iamanager.db`);
  try {
    const certs = new CertHandler({
      modules: cfg.certModules,
      storageFor: (m) => new FileCertStorage(m.params.storagePath, nullLogger),
      metadata: db,
      roots: [],
      logger: nullLogger,
    });
    await certs.init();
    const node = await CurrentNode.create(cfg, nullLogger);
    const runner = new RecordingRunner();
    const pm = new ProvisionManager({
      config: cfg,
      certs,
      node,
      owner: new OwnerPassword(`${dir}/.owner`),
      ident,
      runner,
      logger: nullLogger,
    });
    assert.deepEqual(pm.getCertTypes(), ["iam"]);
    await assert.rejects(() => pm.createKey("iam", "", "pw"), /no owner password is set/);
    await pm.startProvisioning("pw");
    assert.deepEqual(runner.calls.map((c) => c.program), ["/bin/start"]);
    assert.equal(db.certsOfType("self").length, 1);
    await assert.rejects(() => pm.createKey("iam", "", "bad"), /wrong password/);
    const csr = await pm.createKey("iam", "", "pw");
    assert.match(csr, /BEGIN CERTIFICATE REQUEST/);
    await assert.rejects(() => pm.pause(), /Cannot pause: node is unprovisioned/);
    await assert.rejects(() => pm.finishProvisioning("bad"), /wrong password/);
    assert.equal(node.state, "unprovisioned");
    await pm.finishProvisioning("pw");
    assert.equal(node.state, "provisioned");
    assert.equal((await Deno.readTextFile(`${dir}/.provisionstate`)).trim(), "provisioned");
    await assert.rejects(
      () => pm.startProvisioning("pw"),
      /Cannot startProvisioning: node is provisioned/,
    );
    await pm.pause();
    assert.equal(node.state, "paused");
    await pm.resume();
    await pm.deprovision("pw");
    assert.equal(node.state, "unprovisioned");
    assert.deepEqual(runner.calls.map((c) => [c.program, ...c.args]), [["/bin/start", "a"], [
      "/bin/finish",
    ], [
      "/bin/deprov",
      "async",
    ]]);
    assert.equal(db.certsOfType("self").length, 0);
    await assert.rejects(() => pm.createKey("iam", "", "pw"), /no owner password/);
  } finally {
    db[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failing provisioning command is reported and the state is kept", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = parseConfigText(
    "iam.cfg",
    JSON.stringify({
      caCert: `${dir}/ca.pem`,
      workingDir: dir,
      finishProvisioningCmdArgs: ["/bin/finish"],
      nodeInfo: { nodeId: "node0", provisioningStatePath: `${dir}/.provisionstate` },
      certModules: [{ id: "iam", plugin: "filemodule", params: { storagePath: `${dir}/iam` } }],
    }),
    iamConfigSchema,
  );
  const db = IamDatabase.open(`${dir}/iamanager.db`);
  try {
    const certs = new CertHandler({
      modules: cfg.certModules,
      storageFor: (m) => new FileCertStorage(m.params.storagePath, nullLogger),
      metadata: db,
      roots: [],
      logger: nullLogger,
    });
    await certs.init();
    const node = await CurrentNode.create(cfg, nullLogger);
    const runner = new RecordingRunner({ respond: () => ({ code: 3, stderr: "disk full" }) });
    const pm = new ProvisionManager({
      config: cfg,
      certs,
      node,
      owner: new OwnerPassword(`${dir}/.owner`),
      ident,
      runner,
      logger: nullLogger,
    });
    await pm.startProvisioning("");
    await assert.rejects(() => pm.finishProvisioning(""), /finish provisioning command failed/);
    assert.equal(node.state, "unprovisioned");
  } finally {
    db[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

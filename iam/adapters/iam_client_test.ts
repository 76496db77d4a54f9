import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { RecordingRunner } from "@aos/shared/exec";
import { nullLogger } from "@aos/shared/logger";
import { iamConfigSchema } from "../config.ts";
import { CertHandler } from "../core/cert_handler.ts";
import { CurrentNode } from "../core/current_node.ts";
import { NoIdentifier } from "../core/identity.ts";
import { OwnerPassword } from "../core/owner.ts";
import { ProvisionManager } from "../core/provision_manager.ts";
import { answerMainRequest } from "./iam_client.ts";
import { FileCertStorage } from "./file_cert_storage.ts";
import { IamDatabase } from "./iam_db.ts";
import type { IncomingMessage, OutgoingMessage } from "./node_controller.ts";

function errorOf(m: OutgoingMessage): string | undefined {
  const payload = (m as Record<string, unknown>)[m.$case] as { error?: { message: string } };
  return payload.error?.message;
}

Deno.test("secondary: answers main's requests locally, enforces transitions, node info after pause/resume", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = parseConfigText(
    "iam.cfg",
    JSON.stringify({
      caCert: `${dir}/ca.pem`,
      workingDir: dir,
      nodeInfo: { nodeId: "sec", provisioningStatePath: `${dir}/.provisionstate` },
      certModules: [{ id: "iam", plugin: "filemodule", params: { storagePath: `${dir}/iam` } }],
    }),
    iamConfigSchema,
  );
  using db = IamDatabase.open(`${dir}/iamanager.db`);
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
    const provisioning = new ProvisionManager({
      config: cfg,
      certs,
      node,
      owner: new OwnerPassword(`${dir}/.owner`),
      ident: new NoIdentifier(),
      runner: new RecordingRunner(),
      logger: nullLogger,
    });
    const ask = (m: IncomingMessage) => answerMainRequest(m, { node, provisioning });

    const types = await ask({ $case: "getCertTypesRequest", getCertTypesRequest: { nodeId: "" } });
    assert.deepEqual(types, [{
      $case: "certTypesResponse",
      certTypesResponse: { types: ["iam"] },
    }]);
    const other = await ask({
      $case: "getCertTypesRequest",
      getCertTypesRequest: { nodeId: "else" },
    });
    assert.deepEqual(other[0], { $case: "certTypesResponse", certTypesResponse: { types: [] } });

    // Requests for another node, or out of bounds, are refused with an error.
    const wrong = await ask({
      $case: "startProvisioningRequest",
      startProvisioningRequest: { nodeId: "else", password: "pw" },
    });
    assert.match(errorOf(wrong[0]!)!, /for node else reached node sec/);
    const long = await ask({
      $case: "startProvisioningRequest",
      startProvisioningRequest: { nodeId: "sec", password: "p".repeat(41) },
    });
    assert.match(errorOf(long[0]!)!, /password longer than 40/);

    const started = await ask({
      $case: "startProvisioningRequest",
      startProvisioningRequest: { nodeId: "sec", password: "pw" },
    });
    assert.deepEqual(started, [{
      $case: "startProvisioningResponse",
      startProvisioningResponse: { error: undefined },
    }]);
    const key = await ask({
      $case: "createKeyRequest",
      createKeyRequest: { nodeId: "sec", type: "iam", subject: "sys", password: "pw" },
    });
    assert.equal(key[0]!.$case, "createKeyResponse");
    if (key[0]!.$case === "createKeyResponse") {
      assert.match(key[0]!.createKeyResponse.csr, /BEGIN CERTIFICATE REQUEST/);
      assert.equal(key[0]!.createKeyResponse.nodeId, "sec");
    }
    const apply = await ask({
      $case: "applyCertRequest",
      applyCertRequest: { nodeId: "sec", type: "iam", cert: "garbage" },
    });
    assert.match(errorOf(apply[0]!)!, /Cannot apply cert "iam"/);

    // Pause before provisioning is finished: refused, no node info.
    const early = await ask({ $case: "pauseNodeRequest", pauseNodeRequest: { nodeId: "sec" } });
    assert.equal(early.length, 1);
    assert.match(errorOf(early[0]!)!, /Cannot pause: node is unprovisioned/);

    await ask({
      $case: "finishProvisioningRequest",
      finishProvisioningRequest: { nodeId: "sec", password: "pw" },
    });
    assert.equal(node.state, "provisioned");
    const paused = await ask({ $case: "pauseNodeRequest", pauseNodeRequest: { nodeId: "" } });
    assert.deepEqual(paused.map((m) => m.$case), ["nodeInfo", "pauseNodeResponse"]);
    if (paused[0]!.$case === "nodeInfo") assert.equal(paused[0]!.nodeInfo.state, "paused");
    const resumed = await ask({ $case: "resumeNodeRequest", resumeNodeRequest: { nodeId: "sec" } });
    assert.deepEqual(resumed.map((m) => m.$case), ["nodeInfo", "resumeNodeResponse"]);
    const again = await ask({
      $case: "finishProvisioningRequest",
      finishProvisioningRequest: { nodeId: "sec", password: "pw" },
    });
    assert.match(errorOf(again[0]!)!, /Cannot finishProvisioning: node is provisioned/);
    const gone = await ask({
      $case: "deprovisionRequest",
      deprovisionRequest: { nodeId: "sec", password: "pw" },
    });
    assert.equal(errorOf(gone[0]!), undefined);
    assert.equal(node.state, "unprovisioned");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

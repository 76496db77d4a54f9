/**
 * The provisioning helper against a real `iam -p` process started under its permission
 * manifest: every cert type gets a key and a certificate of the dev CA; the online certificate
 * points at the cloud.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseCertificates, verifyChain } from "@aos/shared/crypto";
import { discoveryHintsFromCert } from "../cm/cloud/discovery.ts";
import { IamProcess, writeIamNode } from "../tests/iam_support.ts";
import { DevPki } from "./pki.ts";
import { provisionNode } from "./provision.ts";

Deno.test("provision: a real iam in provisioning mode gets every certificate from the dev CA", async () => {
  const root = await Deno.makeTempDir({ prefix: "devcloud_provision_" });
  try {
    const pki = await DevPki.open(join(root, "pki"));
    const node = await writeIamNode(
      root,
      { dir: join(root, "pki"), name: "devcloud", cert: pki.files.caCert, key: pki.files.caKey },
      {
        nodeId: "main0",
        main: true,
        modules: [
          { id: "online" },
          { id: "offline", algorithm: "rsa" },
          { id: "iam" },
          { id: "sm" },
          { id: "cm" },
        ],
      },
    );
    {
      await using _iam = await IamProcess.start(node, true);
      const certs = await provisionNode({
        iamUrl: node.protectedUrl,
        pki,
        password: "owner-secret",
        discoveryUrl: "https://localhost:9000",
      });
      assert.deepEqual(certs.map((c) => c.type), ["online", "offline", "iam", "sm", "cm"]);
      for (const c of certs) {
        assert.match(c.serial, /^[0-9a-f]+$/);
        const pem = await Deno.readTextFile(fileURLToPath(c.certUrl));
        const [leaf, ...rest] = parseCertificates(pem);
        assert.ok(leaf);
        await verifyChain(leaf, { roots: [pki.root], intermediates: rest });
        assert.equal(leaf.serial, c.serial);
        assert.equal(leaf.publicKeyAlgorithm, c.type === "offline" ? "RSA" : "EC");
        assert.deepEqual(
          discoveryHintsFromCert(pem).uris,
          c.type === "online" ? ["https://localhost:9000"] : [],
        );
      }
      // A second run is refused by IAM (already provisioned) and says which step failed.
      await assert.rejects(
        provisionNode({ iamUrl: node.protectedUrl, pki, password: "owner-secret" }),
        /StartProvisioning failed: .*node is provisioned/,
      );
    }
    assert.equal(
      (await Deno.readTextFile(join(node.workingDir, ".provisionstate"))).trim(),
      "provisioned",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

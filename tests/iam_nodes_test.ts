/**
 * Main and secondary IAM on loopback, both real processes under their manifests: the
 * secondary registers over `RegisterNode`, the main node lists it and provisions it through
 * forwarded requests, and the stream comes back after either side is killed, in provisioning
 * mode (plaintext, public server) and in normal mode (mutual TLS, protected server).
 */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import type { NodeInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import { parseCsr } from "@aos/shared/crypto";
import type { ClientSecurity } from "@aos/shared/grpc";
import { issueTestCert } from "@aos/shared/testing";
import {
  call,
  iamClients,
  IamProcess,
  makeUnit,
  ok,
  provisionNode,
  signCsr,
  until,
  writeIamNode,
} from "./iam_support.ts";

const PASSWORD = "unit-secret";
const decoder = new TextDecoder();

function registrations(p: IamProcess, nodeId: string): number {
  return p.log.split("\n").filter((l) => l.includes("node registered") && l.includes(nodeId))
    .length;
}

Deno.test("iam: secondary node registers, is provisioned through main, survives restarts", async (t) => {
  await using unit = await makeUnit();
  const main = await writeIamNode(unit.root, unit.ca, { nodeId: "main0", main: true });
  const sec = await writeIamNode(unit.root, unit.ca, {
    nodeId: "sec0",
    main: false,
    mainPublicUrl: main.publicUrl,
    mainProtectedUrl: main.protectedUrl,
  });

  {
    await using mainIam = await IamProcess.start(main, true);
    using c = await iamClients(main.protectedUrl, { mode: "insecure" });
    const changes: NodeInfo[] = [];
    const feed = c.publicNodes.subscribeNodeChanged({});
    feed.on("data", (info: NodeInfo) => changes.push(info));
    feed.on("error", () => {});
    let secIam = await IamProcess.start(sec, true);
    try {
      await t.step("the secondary registers; main lists both nodes", async () => {
        await mainIam.waitFor(/node registered .*nodeId=sec0/);
        const { ids } = await call(c.publicNodes, c.publicNodes.getAllNodeIDs, {});
        assert.deepEqual(ids.sort(), ["main0", "sec0"]);
        const info = await call(c.publicNodes, c.publicNodes.getNodeInfo, { nodeId: "sec0" });
        assert.equal(info.nodeType, "secondary");
        assert.equal(info.state, "unprovisioned");
        assert.equal(info.title, "sec0");
        await until("node change feed", () => changes.some((n) => n.nodeId === "sec0"));
        // A secondary has no provisioning services of its own.
        using s = await iamClients(sec.protectedUrl, { mode: "insecure" });
        await assert.rejects(call(s.provisioning, s.provisioning.getCertTypes, { nodeId: "" }));
        const own = await call(s.currentNode, s.currentNode.getCurrentNodeInfo, {});
        assert.equal(own.nodeId, "sec0");
      });

      await t.step(
        "forwarded StartProvisioning, CreateKey, ApplyCert provision the secondary",
        async () => {
          const { types } = await call(c.provisioning, c.provisioning.getCertTypes, {
            nodeId: "sec0",
          });
          assert.deepEqual(types, ["iam", "sm"]);
          ok(
            await call(c.provisioning, c.provisioning.startProvisioning, {
              nodeId: "sec0",
              password: PASSWORD,
            }),
          );
          for (const type of types) {
            const key = ok(
              await call(c.certificate, c.certificate.createKey, {
                nodeId: "sec0",
                type,
                subject: "",
                password: PASSWORD,
              }),
            );
            assert.equal(key.nodeId, "sec0");
            // Main fills an empty subject with its own system ID before forwarding.
            assert.equal((await parseCsr(key.csr)).subject, "CN=system-main0");
            const applied = ok(
              await call(c.certificate, c.certificate.applyCert, {
                nodeId: "sec0",
                type,
                cert: await signCsr(unit.ca, key.csr),
              }),
            );
            assert.ok(applied.certInfo!.certUrl.startsWith(pathToFileURL(sec.certsDir).href));
            // The secondary itself serves the new certificate.
            using s = await iamClients(sec.publicUrl, { mode: "insecure" });
            const own = await call(s.cert, s.cert.getCert, {
              type,
              issuer: new Uint8Array(),
              serial: "",
            });
            assert.equal(decoder.decode(own.serial), decoder.decode(applied.certInfo!.serial));
          }
          // A business error on the secondary comes back in the response.
          const bad = await call(c.certificate, c.certificate.createKey, {
            nodeId: "sec0",
            type: "iam",
            subject: "",
            password: "wrong",
          });
          assert.match(bad.error?.message ?? "", /wrong password/);
        },
      );

      await t.step("a killed secondary comes back and registers again", async () => {
        const before = registrations(mainIam, "sec0");
        await secIam.stop("SIGKILL");
        await mainIam.waitFor(/node stream closed .*nodeId=sec0/);
        secIam = await IamProcess.start(sec, true);
        await until("re-registration", () => registrations(mainIam, "sec0") > before);
        assert.deepEqual(
          (await call(c.provisioning, c.provisioning.getCertTypes, {
            nodeId: "sec0",
          })).types,
          ["iam", "sm"],
        );
      });

      await t.step("forwarded finish, pause and resume update both sides", async () => {
        ok(
          await call(c.provisioning, c.provisioning.finishProvisioning, {
            nodeId: "sec0",
            password: PASSWORD,
          }),
        );
        const state = async () =>
          (await call(c.publicNodes, c.publicNodes.getNodeInfo, { nodeId: "sec0" })).state;
        assert.equal(await state(), "provisioned");
        ok(await call(c.nodes, c.nodes.pauseNode, { nodeId: "sec0" }));
        assert.equal(await state(), "paused");
        // The secondary enforces transitions: a second pause is refused.
        const again = await call(c.nodes, c.nodes.pauseNode, { nodeId: "sec0" });
        assert.match(again.error?.message ?? "", /Cannot pause: node is paused/);
        ok(await call(c.nodes, c.nodes.resumeNode, { nodeId: "sec0" }));
        assert.equal(await state(), "provisioned");
        using s = await iamClients(sec.publicUrl, { mode: "insecure" });
        const own = await call(s.currentNode, s.currentNode.getCurrentNodeInfo, {});
        assert.equal(own.state, "provisioned");
      });

      await t.step("main provisions itself", async () => {
        await provisionNode(c, unit.ca, "", PASSWORD);
        const own = await call(c.currentNode, c.currentNode.getCurrentNodeInfo, {});
        assert.equal(own.state, "provisioned");
      });
    } finally {
      feed.cancel();
      await secIam.stop("SIGTERM");
    }
    assert.equal((await mainIam.stop("SIGTERM")).code, 0, mainIam.log);
  }

  const client = await issueTestCert(unit.ca.dir, unit.ca, {
    commonName: "cm",
    san: ["DNS:localhost"],
  });
  const mtls: ClientSecurity = { mode: "mtls", ca: unit.ca.cert, ...client };

  await t.step(
    "normal mode: mTLS registration on the protected server, restarts of either side",
    async () => {
      let mainIam = await IamProcess.start(main, false);
      let secIam = await IamProcess.start(sec, false);
      try {
        await mainIam.waitFor(/node registered .*nodeId=sec0 state=provisioned server=protected/);
        const types = async () => {
          using c = await iamClients(main.protectedUrl, mtls);
          return (await call(c.provisioning, c.provisioning.getCertTypes, { nodeId: "sec0" }))
            .types;
        };
        assert.deepEqual(await types(), ["iam", "sm"]);

        // Main dies hard and comes back: the secondary dials again.
        const secLog = secIam.log.length;
        await mainIam.stop("SIGKILL");
        await secIam.waitFor(/disconnected from main IAM/, 15_000, secLog);
        mainIam = await IamProcess.start(main, false);
        await mainIam.waitFor(/node registered .*nodeId=sec0/);
        assert.deepEqual(await types(), ["iam", "sm"]);
        {
          using c = await iamClients(main.protectedUrl, mtls);
          const info = await call(c.publicNodes, c.publicNodes.getNodeInfo, { nodeId: "sec0" });
          assert.equal(info.state, "provisioned");
        }

        // The secondary dies hard and comes back.
        const before = registrations(mainIam, "sec0");
        await secIam.stop("SIGKILL");
        await mainIam.waitFor(/node stream closed .*nodeId=sec0/);
        secIam = await IamProcess.start(sec, false);
        await until("re-registration", () => registrations(mainIam, "sec0") > before);
        assert.deepEqual(await types(), ["iam", "sm"]);
      } finally {
        await secIam.stop("SIGTERM");
        await mainIam.stop("SIGTERM");
      }
    },
  );
});

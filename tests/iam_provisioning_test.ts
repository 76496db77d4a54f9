/**
 * End to end: a real `iam` process under its permission manifest is provisioned over gRPC in
 * provisioning mode (plaintext), refuses bad input without changing its state, then restarts in
 * normal mode with public TLS and protected mutual TLS on the certificate it was given, hands
 * out working key pairs, and moves its servers to a new certificate without a restart.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ErrorInfo } from "@aos/proto/common/v2/common.ts";
import type { CertInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import { parseCsr } from "@aos/shared/crypto";
import { AosError } from "@aos/shared/errors";
import type { ClientSecurity } from "@aos/shared/grpc";
import { issueTestCert } from "@aos/shared/testing";
import {
  call,
  iamClients,
  IamProcess,
  makeUnit,
  ok,
  serialOf,
  signCsr,
  writeIamNode,
} from "./iam_support.ts";

const PASSWORD = "owner-secret";
const decoder = new TextDecoder();

async function storedFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) out.push(e.name);
  return out.sort();
}

/** The serial of the certificate a TLS server presents. */
async function presentedSerial(hostPort: string): Promise<string> {
  const child = new Deno.Command("openssl", {
    args: ["s_client", "-connect", hostPort, "-servername", "localhost", "-alpn", "h2"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  });
  const out = decoder.decode((await child.output()).stdout);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0];
  assert.ok(pem, `no certificate from ${hostPort}`);
  return await serialOf(pem);
}

Deno.test("iam: provisioning, bad input, TLS/mTLS, key pairs and cert rotation", async (t) => {
  await using unit = await makeUnit();
  const node = await writeIamNode(unit.root, unit.ca, {
    nodeId: "main0",
    main: true,
    modules: [{ id: "iam" }, { id: "sm" }, { id: "offline", algorithm: "rsa", maxItems: 3 }],
    // Run under the manifest, the finish command proves the run grant is sufficient.
    extra: { finishProvisioningCmdArgs: ["/bin/true", "finish"] },
  });
  const serials = new Map<string, string>();

  {
    await using iam = await IamProcess.start(node, true);
    using c = await iamClients(node.protectedUrl, { mode: "insecure" });
    using pub = await iamClients(node.publicUrl, { mode: "insecure" });

    await t.step(
      "API version 6 on both servers; provisioning only on the protected one",
      async () => {
        for (const x of [c, pub]) {
          const v = await call(x.version, x.version.getApiVersion, {});
          assert.equal(v.version, 6n);
        }
        await assert.rejects(
          call(pub.provisioning, pub.provisioning.getCertTypes, { nodeId: "" }),
          (e) => e instanceof AosError && e.code === "notSupported",
        );
        const info = await call(pub.currentNode, pub.currentNode.getCurrentNodeInfo, {});
        assert.equal(info.nodeId, "main0");
        assert.equal(info.state, "unprovisioned");
      },
    );

    await t.step(
      "GetCertTypes, StartProvisioning, CreateKey, ApplyCert for every type",
      async () => {
        const { types } = await call(c.provisioning, c.provisioning.getCertTypes, { nodeId: "" });
        assert.deepEqual(types, ["iam", "sm", "offline"]);
        ok(
          await call(c.provisioning, c.provisioning.startProvisioning, {
            nodeId: "main0",
            password: PASSWORD,
          }),
        );
        for (const type of types) {
          const res = ok(
            await call(c.certificate, c.certificate.createKey, {
              nodeId: "",
              type,
              subject: "",
              password: PASSWORD,
            }),
          );
          const csr = await parseCsr(res.csr);
          // An empty subject becomes the system ID.
          assert.equal(csr.subject, "CN=system-main0");
          assert.deepEqual(csr.dnsNames, ["localhost"]);
          const chain = await signCsr(unit.ca, res.csr, { withCa: true });
          const applied = ok(
            await call(c.certificate, c.certificate.applyCert, {
              nodeId: "",
              type,
              cert: chain,
            }),
          );
          const serial = decoder.decode(applied.certInfo!.serial);
          assert.equal(serial, await serialOf(chain));
          assert.match(applied.certInfo!.certUrl, /^file:\/\//);
          serials.set(type, serial);
        }
      },
    );

    await t.step("bad input gets an ErrorInfo and changes nothing", async () => {
      const smDir = join(node.certsDir, "sm");
      const before = await storedFiles(smDir);
      const current = async () =>
        decoder.decode(
          (await call(c.cert, c.cert.getCert, {
            type: "sm",
            issuer: new Uint8Array(),
            serial: "",
          })).serial,
        );
      assert.equal(await current(), serials.get("sm"));
      const apply = (cert: string, type = "sm") =>
        call(c.certificate, c.certificate.applyCert, { nodeId: "", type, cert });
      const createKey = (o: { type?: string; subject?: string; password?: string }) =>
        call(c.certificate, c.certificate.createKey, {
          nodeId: "",
          type: o.type ?? "sm",
          subject: o.subject ?? "",
          password: o.password ?? PASSWORD,
        });
      const expectError = (res: { error: ErrorInfo | undefined }, re: RegExp) => {
        assert.ok(res.error, "no error reported");
        assert.ok(res.error.aosCode > 0, "no error code");
        assert.match(res.error.message, re);
      };

      expectError(await apply("hello"), /Cannot apply cert "sm": .*certificate/i);
      expectError(
        await apply("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        /Cannot apply cert "sm"/,
      );
      // A CA-signed certificate whose key IAM never created.
      const stray = await issueTestCert(unit.ca.dir, unit.ca, { commonName: "stray" });
      expectError(await apply(await Deno.readTextFile(stray.cert)), /no pending key/);
      // A chain that does not reach the root CA.
      const { csr } = ok(await createKey({}));
      expectError(await apply(await signCsr(unit.otherCa, csr)), /Cannot apply cert "sm"/);
      expectError(await createKey({ password: "wrong" }), /wrong password/);
      expectError(await createKey({ type: "nope" }), /Unknown cert type "nope"/);
      expectError(await apply(await signCsr(unit.ca, csr), "nope"), /Unknown cert type/);
      expectError(await createKey({ password: "x".repeat(41) }), /password longer than 40/);
      expectError(await createKey({ subject: "s".repeat(129) }), /subject longer than 128/);
      expectError(await apply("A".repeat(64 * 1024 + 1)), /cert larger than 65536 bytes/);
      expectError(
        await call(c.certificate, c.certificate.createKey, {
          nodeId: "../etc",
          type: "sm",
          subject: "",
          password: PASSWORD,
        }),
        /nodeId may hold only/,
      );
      // Larger than any accepted message: the transport refuses it, the process lives on.
      await assert.rejects(apply("A".repeat(2 * 1024 * 1024)), (e) => e instanceof AosError);
      await assert.rejects(
        call(c.cert, c.cert.getCert, { type: "nope", issuer: new Uint8Array(), serial: "" }),
        (e) => e instanceof AosError && e.code === "notFound",
      );

      assert.equal(await current(), serials.get("sm"));
      assert.deepEqual(await storedFiles(smDir), before);
      assert.equal((await call(c.version, c.version.getApiVersion, {})).version, 6n);
    });

    await t.step(
      "FinishProvisioning runs the configured command and persists the state",
      async () => {
        ok(
          await call(c.provisioning, c.provisioning.finishProvisioning, {
            nodeId: "",
            password: PASSWORD,
          }),
        );
        const info = await call(c.currentNode, c.currentNode.getCurrentNodeInfo, {});
        assert.equal(info.state, "provisioned");
        assert.match(iam.log, /running finish provisioning command/);
        const mainInfo = await call(c.publicNodes, c.publicNodes.getNodeInfo, { nodeId: "main0" });
        assert.equal(mainInfo.state, "provisioned");
      },
    );

    const status = await iam.stop("SIGTERM");
    assert.equal(status.code, 0, iam.log);
    assert.match(iam.log, /iam stopped/);
  }

  await using iam = await IamProcess.start(node, false, ["-v", "debug"]);
  const pkiDir = unit.ca.dir;
  const [good, selfSigned, otherCa, expired] = await Promise.all([
    issueTestCert(pkiDir, unit.ca, { commonName: "cm client", san: ["DNS:localhost"] }),
    issueTestCert(pkiDir, undefined, { commonName: "self signed", san: ["DNS:localhost"] }),
    issueTestCert(pkiDir, unit.otherCa, { commonName: "foreign", san: ["DNS:localhost"] }),
    issueTestCert(pkiDir, unit.ca, {
      commonName: "expired",
      san: ["DNS:localhost"],
      validity: { notBefore: "20200101000000Z", notAfter: "20200102000000Z" },
    }),
  ]);
  const mtls = (files: { cert: string; key: string }): ClientSecurity => ({
    mode: "mtls",
    ca: unit.ca.cert,
    ...files,
  });
  const certTypes = async (url: string, security: ClientSecurity) => {
    using x = await iamClients(url, security);
    return (await call(x.provisioning, x.provisioning.getCertTypes, { nodeId: "" })).types;
  };

  await t.step(
    "normal mode: public TLS on the iam cert; protected mTLS against caCert",
    async () => {
      assert.equal(await presentedSerial(node.publicUrl), serials.get("iam"));
      assert.equal(await presentedSerial(node.protectedUrl), serials.get("iam"));
      {
        using p = await iamClients(node.publicUrl, { mode: "tls", ca: unit.ca.cert });
        const info = await call(p.currentNode, p.currentNode.getCurrentNodeInfo, {});
        assert.equal(info.state, "provisioned");
        const subjects = await call(p.identity, p.identity.getSubjects, {});
        assert.deepEqual(subjects.subjects, ["subject1"]);
      }
      {
        using p = await iamClients(node.publicUrl, { mode: "insecure" });
        await assert.rejects(call(p.version, p.version.getApiVersion, {}));
      }
      assert.deepEqual(await certTypes(node.protectedUrl, mtls(good)), ["iam", "sm", "offline"]);
      const rejected: Record<string, ClientSecurity> = {
        "no client cert": { mode: "tls", ca: unit.ca.cert },
        "self-signed": mtls(selfSigned),
        "other CA": mtls(otherCa),
        "expired": mtls(expired),
      };
      for (const [name, security] of Object.entries(rejected)) {
        await assert.rejects(certTypes(node.protectedUrl, security), AosError, `${name} accepted`);
      }
    },
  );

  await t.step("GetCert returns file URLs of a working TLS key pair", async () => {
    using p = await iamClients(node.publicUrl, { mode: "tls", ca: unit.ca.cert });
    const sm = await call(p.cert, p.cert.getCert, {
      type: "sm",
      issuer: new Uint8Array(),
      serial: "",
    });
    assert.equal(sm.type, "sm");
    assert.equal(decoder.decode(sm.serial), serials.get("sm"));
    assert.ok(sm.issuer.length > 0);
    const files = { cert: fileURLToPath(sm.certUrl), key: fileURLToPath(sm.keyUrl) };
    assert.deepEqual(await certTypes(node.protectedUrl, mtls(files)), ["iam", "sm", "offline"]);
    // The exact certificate can be asked for by issuer and serial.
    const same = await call(p.cert, p.cert.getCert, {
      type: "sm",
      issuer: sm.issuer,
      serial: decoder.decode(sm.serial),
    });
    assert.equal(same.certUrl, sm.certUrl);
  });

  await t.step("a new iam cert moves both servers to it without a process restart", async () => {
    using c = await iamClients(node.protectedUrl, mtls(good));
    const changes: CertInfo[] = [];
    const stream = c.cert.subscribeCertChanged({ type: "iam" });
    const ended = new Promise<void>((resolve) => {
      stream.on("data", (info: CertInfo) => changes.push(info));
      stream.on("end", () => resolve());
      stream.on("error", () => resolve());
    });
    // The change must not race the subscription reaching the server.
    await iam.waitFor(/subscriber added .*stream=SubscribeCertChanged\(iam\)/);
    const { csr } = ok(
      await call(c.certificate, c.certificate.createKey, {
        nodeId: "",
        type: "iam",
        subject: "",
        password: PASSWORD,
      }),
    );
    const applied = ok(
      await call(c.certificate, c.certificate.applyCert, {
        nodeId: "",
        type: "iam",
        cert: await signCsr(unit.ca, csr),
      }),
    );
    const newSerial = decoder.decode(applied.certInfo!.serial);
    assert.notEqual(newSerial, serials.get("iam"));
    await iam.waitFor(/IAM servers restarted/);
    await ended;
    assert.deepEqual(changes.map((x) => decoder.decode(x.serial)), [newSerial]);
    assert.equal(await presentedSerial(node.publicUrl), newSerial);
    assert.equal(await presentedSerial(node.protectedUrl), newSerial);
    assert.deepEqual(await certTypes(node.protectedUrl, mtls(good)), ["iam", "sm", "offline"]);
    assert.doesNotMatch(iam.log, /iam stopping/);
  });

  const status = await iam.stop("SIGTERM");
  assert.equal(status.code, 0, iam.log);
});

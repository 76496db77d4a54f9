import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parseConfigText } from "@aos/shared/config";
import {
  type Certificate,
  createCertificate,
  generateKeyPair,
  type KeyPair,
  parseCertificate,
  parseCsr,
} from "@aos/shared/crypto";
import { nullLogger } from "@aos/shared/logger";
import { FileCertStorage } from "../adapters/file_cert_storage.ts";
import { IamDatabase } from "../adapters/iam_db.ts";
import { iamConfigSchema } from "../config.ts";
import { CertHandler } from "./cert_handler.ts";

interface Ca {
  keys: KeyPair;
  cert: Certificate;
}

async function makeCa(name: string): Promise<Ca> {
  const keys = await generateKeyPair("ecdsa-p256");
  const cert = await createCertificate({
    subject: `CN=${name}`,
    publicKey: keys.publicKey,
    signer: keys,
    isCA: true,
  });
  return { keys, cert };
}

async function sign(ca: Ca, csrPem: string, days = 365): Promise<string> {
  const csr = await parseCsr(csrPem);
  const leaf = await createCertificate({
    subject: csr.subject,
    publicKey: csr.publicKey,
    signer: ca.keys,
    issuer: ca.cert,
    notAfter: new Date(Date.now() + days * 86_400_000),
    extendedKeyUsage: csr.extendedKeyUsage,
    dnsNames: csr.dnsNames,
  });
  return leaf.pem + ca.cert.pem;
}

async function setup(dir: string, ca: Ca) {
  const cfg = parseConfigText(
    "iam.cfg",
    JSON.stringify({
      caCert: `${dir}/ca.pem`,
      workingDir: dir,
      nodeInfo: {},
      certModules: [
        {
          id: "iam",
          plugin: "filemodule",
          maxItems: 2,
          extendedKeyUsage: ["serverAuth", "clientAuth"],
          alternativeNames: ["localhost"],
          params: { storagePath: `${dir}/iam` },
        },
        {
          id: "offline",
          plugin: "filemodule",
          algorithm: "rsa",
          maxItems: 2,
          params: { storagePath: `${dir}/offline` },
        },
        {
          id: "local",
          plugin: "filemodule",
          selfSigned: true,
          maxItems: 1,
          params: { storagePath: `${dir}/local` },
        },
      ],
    }),
    iamConfigSchema,
  );
  const db = IamDatabase.open(`${dir}/iamanager.db`);
  const handler = new CertHandler({
    modules: cfg.certModules,
    storageFor: (m) => new FileCertStorage(m.params.storagePath, nullLogger),
    metadata: db,
    roots: [ca.cert],
    logger: nullLogger,
  });
  await handler.init();
  return { handler, db };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) out.push(e.name);
  return out.sort();
}

Deno.test("create key, apply a CA-signed chain, get it back; files and metadata agree", async () => {
  const dir = await Deno.makeTempDir();
  const ca = await makeCa("Aos Root");
  const { handler, db } = await setup(dir, ca);
  try {
    assert.deepEqual(handler.getCertTypes(), ["iam", "offline"]);
    const changes: string[] = [];
    handler.subscribeCertChanged("iam", (c) => changes.push(c.serial));
    const csr = await handler.createKey("iam", "unit-1");
    const info = await parseCsr(csr);
    assert.equal(info.subject, "CN=unit-1");
    assert.deepEqual(info.dnsNames, ["localhost"]);
    assert.deepEqual(info.extendedKeyUsage.sort(), ["clientAuth", "serverAuth"]);

    const applied = await handler.applyCert("iam", await sign(ca, csr));
    assert.deepEqual(changes, [applied.serial]);
    const got = await handler.getCert("iam", new Uint8Array(), "");
    assert.equal(got.serial, applied.serial);
    assert.equal(
      (await handler.getCert("iam", applied.issuer, applied.serial)).certUrl,
      applied.certUrl,
    );
    const keyPath = fileURLToPath(applied.keyUrl);
    assert.equal((await Deno.stat(keyPath)).mode! & 0o777, 0o600);
    const chain = await Deno.readTextFile(fileURLToPath(applied.certUrl));
    assert.equal(parseCertificate(chain).serial, applied.serial);

    const rsaCsr = await handler.createKey("offline", "unit-1");
    const rsa = await handler.applyCert("offline", await sign(ca, rsaCsr));
    assert.match(await Deno.readTextFile(fileURLToPath(rsa.keyUrl)), /BEGIN PRIVATE KEY/);
  } finally {
    db[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input leaves state unchanged with clear errors", async () => {
  const dir = await Deno.makeTempDir();
  const ca = await makeCa("Aos Root");
  const other = await makeCa("Other Root");
  const { handler, db } = await setup(dir, ca);
  try {
    const csr = await handler.createKey("iam", "unit-1");
    const good = await handler.applyCert("iam", await sign(ca, csr));
    const before = await listFiles(`${dir}/iam`);
    const rowsBefore = db.certsOfType("iam").length;

    await assert.rejects(
      () => handler.applyCert("iam", "garbage"),
      /Cannot apply cert "iam": no certificate/,
    );
    await assert.rejects(
      () =>
        handler.applyCert("iam", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
      /Cannot apply cert "iam": .*parse/i,
    );
    // A cert for a key that was never created here.
    const stranger = await generateKeyPair("ecdsa-p384");
    const foreign = await createCertificate({
      subject: "CN=x",
      publicKey: stranger.publicKey,
      signer: ca.keys,
      issuer: ca.cert,
    });
    await assert.rejects(
      () => handler.applyCert("iam", foreign.pem + ca.cert.pem),
      /no pending key matches/,
    );
    // A chain that does not reach the CA.
    const csr2 = await handler.createKey("iam", "unit-1");
    const otherChain = await sign(other, csr2);
    await assert.rejects(
      () => handler.applyCert("iam", otherChain),
      /Cannot apply cert "iam": .*verify/,
    );
    await assert.rejects(() => handler.applyCert("nope", "x"), /Unknown cert type "nope"/);
    await assert.rejects(
      () => handler.createKey("iam", "x".repeat(200)),
      /subject longer than 128/,
    );
    await assert.rejects(() => handler.applyCert("iam", "x".repeat(70_000)), /larger than/);

    assert.deepEqual(await listFiles(`${dir}/iam`), before);
    assert.equal(db.certsOfType("iam").length, rowsBefore);
    assert.equal((await handler.getCert("iam", new Uint8Array(), "")).serial, good.serial);
  } finally {
    db[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("maxItems trims the earliest notAfter; self-signed modules; clear", async () => {
  const dir = await Deno.makeTempDir();
  const ca = await makeCa("Aos Root");
  const { handler, db } = await setup(dir, ca);
  try {
    const serials: string[] = [];
    for (const days of [30, 60, 90]) {
      const csr = await handler.createKey("iam", "unit-1");
      serials.push((await handler.applyCert("iam", await sign(ca, csr, days))).serial);
    }
    const kept = db.certsOfType("iam").map((c) => c.serial);
    assert.deepEqual(kept, [serials[2], serials[1]]);
    assert.equal((await listFiles(`${dir}/iam`)).length, 4);

    const self = await handler.createSelfSignedCert("local");
    assert.equal(
      parseCertificate(await Deno.readTextFile(fileURLToPath(self.certUrl))).subject,
      "CN=Aos Core",
    );

    await handler.clear("iam");
    assert.deepEqual(await listFiles(`${dir}/iam`), []);
    assert.equal(db.certsOfType("iam").length, 0);
    await assert.rejects(
      () => handler.getCert("iam", new Uint8Array(), ""),
      /No certificate of type "iam"/,
    );
  } finally {
    db[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restart reconciles: interrupted apply and interrupted clear", async () => {
  const dir = await Deno.makeTempDir();
  const ca = await makeCa("Aos Root");
  let { handler, db } = await setup(dir, ca);
  try {
    const csr = await handler.createKey("iam", "unit-1");
    const applied = await handler.applyCert("iam", await sign(ca, csr));
    // Crash after the files were written but before the metadata row.
    db.removeCert(applied.issuer, applied.serial);
    // A half-written entry: a certificate whose key never arrived.
    await Deno.writeTextFile(`${dir}/iam/0123456789abcdef.cert.pem`, applied.certUrl);
    db[Symbol.dispose]();
    ({ handler, db } = await setup(dir, ca));
    assert.deepEqual(db.certsOfType("iam").map((c) => c.serial), [applied.serial]);
    assert.ok(!(await listFiles(`${dir}/iam`)).includes("0123456789abcdef.cert.pem"));

    // Crash in the middle of a clear: the marker makes the next start finish it.
    await Deno.writeTextFile(`${dir}/iam/.clearing`, "");
    db[Symbol.dispose]();
    ({ handler, db } = await setup(dir, ca));
    assert.deepEqual(await listFiles(`${dir}/iam`), []);
    assert.equal(db.certsOfType("iam").length, 0);
  } finally {
    db[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

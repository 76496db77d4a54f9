import assert from "node:assert/strict";
import { join } from "node:path";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { AosError } from "@aos/shared/core";
import { makeTestPki } from "@aos/shared/testing";
import { chooseDiscoveryUrl, discoveryResponseSchema, requestDiscovery } from "./discovery.ts";

async function selfSigned(dir: string, name: string, subj: string, ext: string[] = []) {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  const args = [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    subj,
    ...ext.flatMap((e) => ["-addext", e]),
  ];
  const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return Deno.readTextFile(cert);
}

Deno.test("chooseDiscoveryUrl: override, issuer alt name, subject O, config", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cm_sd_" });
  try {
    const withIan = await selfSigned(dir, "ian", "/CN=unit/O=org.example.com", [
      "issuerAltName=URI:https://sd.example.com:9443,URI:https://sd2.example.com",
    ]);
    const withOrg = await selfSigned(dir, "org", "/CN=unit/O=org.example.com");
    const bare = await selfSigned(dir, "bare", "/CN=unit");
    const config = "https://aoscloud.io:9000/sd/v7/";
    const base = { serviceDiscoveryUrl: config, overrideServiceDiscoveryUrl: "" };

    assert.deepEqual(chooseDiscoveryUrl({ ...base, onlineCertPem: withIan }), {
      url: "https://sd.example.com:9443/sd/v7/",
      source: "issuerAltName",
    });
    assert.deepEqual(chooseDiscoveryUrl({ ...base, onlineCertPem: withOrg }), {
      url: "https://org.example.com:9000/sd/v7/",
      source: "subjectOrganization",
    });
    assert.deepEqual(chooseDiscoveryUrl({ ...base, onlineCertPem: bare }), {
      url: config,
      source: "config",
    });
    assert.deepEqual(chooseDiscoveryUrl(base), { url: config, source: "config" });
    assert.deepEqual(chooseDiscoveryUrl({ ...base, onlineCertPem: "garbage" }), {
      url: config,
      source: "config",
    });
    // The override wins; without a path of its own it takes the configured one.
    assert.deepEqual(
      chooseDiscoveryUrl({
        ...base,
        overrideServiceDiscoveryUrl: "https://local.test:1234",
        onlineCertPem: withIan,
      }),
      { url: "https://local.test:1234/sd/v7/", source: "override" },
    );
    assert.equal(
      chooseDiscoveryUrl({ ...base, overrideServiceDiscoveryUrl: "https://l.test/custom/" }).url,
      "https://l.test/custom/",
    );
    assert.throws(
      () => chooseDiscoveryUrl({ serviceDiscoveryUrl: "nope", overrideServiceDiscoveryUrl: "" }),
      AosError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "discovery response: case-insensitive keys, defaults, bounds",
  permissions: "none",
  fn() {
    const r = discoveryResponseSchema.parse({
      Version: 7,
      SYSTEMID: "s",
      nextrequestdelay: 500,
      ConnectionInfo: ["wss://a/ws"],
      authToken: "t",
      errorCode: null,
      extra: 1,
    });
    assert.deepEqual(r, {
      version: 7,
      systemId: "s",
      nextRequestDelay: 500,
      connectionInfo: ["wss://a/ws"],
      authToken: "t",
      errorCode: 0,
    });
    assert.deepEqual(discoveryResponseSchema.parse({}).connectionInfo, []);
    assert.ok(!discoveryResponseSchema.safeParse({ connectionInfo: "wss://a" }).success);
    assert.ok(!discoveryResponseSchema.safeParse({ nextRequestDelay: -1 }).success);
    assert.ok(!discoveryResponseSchema.safeParse([]).success);
  },
});

Deno.test("requestDiscovery: mTLS POST, HTTP errors, bad and oversized bodies", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cm_sd_" });
  const pki = await makeTestPki(dir);
  const read = (f: string) => Deno.readTextFileSync(f);
  let answer: { status: number; body: string } = { status: 200, body: "{}" };
  const seen: { body: string; cn: string | undefined; type: string | undefined }[] = [];
  const server = https.createServer({
    cert: read(pki.server.cert),
    key: read(pki.server.key),
    ca: read(pki.ca.cert),
    requestCert: true,
    rejectUnauthorized: true,
  }, (req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (c) => body += c);
    req.on("end", () => {
      // deno-lint-ignore no-explicit-any
      const peer = (req.socket as any).getPeerCertificate();
      seen.push({ body, cn: peer?.subject?.CN, type: req.headers["content-type"] });
      if (answer.status === 0) return; // hang: the client's deadline must end it
      res.writeHead(answer.status, { connection: "close" });
      res.end(answer.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `https://localhost:${(server.address() as { port: number }).port}/sd/v7/`;
  const credentials = {
    cert: read(pki.client.cert),
    key: read(pki.client.key),
    ca: read(pki.ca.cert),
  };
  try {
    answer = {
      status: 200,
      body: JSON.stringify({ connectionInfo: ["wss://x/ws"], authToken: "tok", errorCode: 2 }),
    };
    const r = await requestDiscovery({ url, systemId: "sys", credentials, timeoutMs: 5000 });
    assert.deepEqual(r.connectionInfo, ["wss://x/ws"]);
    assert.equal(r.errorCode, 2);
    assert.deepEqual(JSON.parse(seen[0]!.body), {
      version: 7,
      systemId: "sys",
      supportedProtocols: ["wss"],
    });
    assert.equal(seen[0]!.cn, "client");
    assert.equal(seen[0]!.type, "application/json");

    for (
      const [a, pattern] of [
        [{ status: 503, body: "{}" }, /HTTP 503/],
        [{ status: 200, body: "<html>" }, /not JSON/],
        [{ status: 200, body: '{"connectionInfo": 5}' }, /invalid response \(connectionInfo/],
        [{ status: 200, body: `{"authToken":"${"x".repeat(70_000)}"}` }, /exceeds 65536 bytes/],
      ] as const
    ) {
      answer = a;
      await assert.rejects(
        requestDiscovery({ url, systemId: "sys", credentials, timeoutMs: 5000 }),
        (err: unknown) => err instanceof AosError && pattern.test(err.message),
      );
    }
    // A client certificate from another CA does not get through.
    await assert.rejects(
      requestDiscovery({
        url,
        systemId: "sys",
        credentials: {
          ...credentials,
          cert: read(pki.otherCaClient.cert),
          key: read(pki.otherCaClient.key),
        },
        timeoutMs: 5000,
      }),
      AosError,
    );
    answer = { status: 0, body: "" };
    await assert.rejects(
      requestDiscovery({ url, systemId: "sys", credentials, timeoutMs: 100 }),
      (err: unknown) => err instanceof AosError && err.code === "timeout",
    );
    assert.equal(seen.length, 6);
  } finally {
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
    await Deno.remove(dir, { recursive: true });
  }
});

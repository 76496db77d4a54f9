import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { AosError } from "../core/errors.ts";
import { makeTestPki, type TestPki } from "../testing/mod.ts";
import {
  callUnary,
  type ClientSecurity,
  createGrpcClient,
  createGrpcServer,
  type GrpcServer,
  readPem,
  type ServerSecurity,
  splitHost,
  tlsChannelOptions,
  unaryHandler,
} from "./mod.ts";
import { ECHO_SERVICE, EchoClient } from "./testdata/echo.ts";

function echoServer(security: ServerSecurity): Promise<GrpcServer> {
  return createGrpcServer({
    address: "127.0.0.1:0",
    security,
    services: [{
      definition: ECHO_SERVICE,
      implementation: { echo: unaryHandler((req: Buffer) => Buffer.concat([req, req])) },
    }],
  });
}

/** One call through a fresh client; resolves to the reply text or the error code. */
async function echo(host: string, port: number, security: ClientSecurity): Promise<string> {
  const client = await createGrpcClient(EchoClient, `${host}:${port}`, { security });
  try {
    const reply = await callUnary(client.echo.bind(client), Buffer.from("hi"), {
      timeoutMs: 5_000,
    });
    return reply.toString();
  } catch (err) {
    assert.ok(err instanceof AosError);
    return `error ${err.code}: ${err.message}`;
  } finally {
    client.close();
  }
}

async function withPki(fn: (pki: TestPki) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aos_grpc_test_" });
  try {
    await fn(await makeTestPki(dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("gRPC credentials: insecure, server TLS, mutual TLS", async (t) => {
  await withPki(async (pki) => {
    const { ca, server, client } = pki;

    await t.step("insecure call works", async () => {
      await using srv = await echoServer({ mode: "insecure" });
      assert.equal(await echo("127.0.0.1", srv.port, { mode: "insecure" }), "hihi");
    });

    await t.step("server TLS: a client without a certificate works", async () => {
      await using srv = await echoServer({ mode: "tls", ...server });
      assert.equal(await echo("127.0.0.1", srv.port, { mode: "tls", ca: ca.cert }), "hihi");
      assert.equal(await echo("localhost", srv.port, { mode: "tls", ca: ca.cert }), "hihi");
      // The chain is still verified: another CA does not vouch for this server.
      assert.match(
        await echo("127.0.0.1", srv.port, { mode: "tls", ca: pki.otherCa.cert }),
        /^error /,
      );
      // A plaintext client cannot talk to a TLS server.
      assert.match(await echo("127.0.0.1", srv.port, { mode: "insecure" }), /^error /);
    });

    await t.step(
      "host names are not checked unless asked (C++ check_call_host=false)",
      async () => {
        await using srv = await echoServer({ mode: "tls", ...pki.serverWrongName });
        const tls = { mode: "tls", ca: ca.cert } as const;
        assert.equal(await echo("127.0.0.1", srv.port, tls), "hihi");
        assert.match(
          await echo("127.0.0.1", srv.port, { ...tls, verifyHostname: true }),
          /^error .*altnames/,
        );
        // With verification on, an IP target is checked against the cert's IP SAN.
        await using good = await echoServer({ mode: "tls", ...server });
        assert.equal(await echo("127.0.0.1", good.port, { ...tls, verifyHostname: true }), "hihi");
        assert.equal(await echo("localhost", good.port, { ...tls, verifyHostname: true }), "hihi");
      },
    );

    await t.step("mutual TLS accepts a client cert from the CA", async () => {
      await using srv = await echoServer({ mode: "mtls", ...server, ca: ca.cert });
      const reply = await echo("127.0.0.1", srv.port, { mode: "mtls", ca: ca.cert, ...client });
      assert.equal(reply, "hihi");
    });

    await t.step("mutual TLS rejects no cert, self-signed, other CA, expired", async () => {
      await using srv = await echoServer({ mode: "mtls", ...server, ca: ca.cert });
      const rejected = {
        "no cert": { mode: "tls", ca: ca.cert },
        "self-signed": { mode: "mtls", ca: ca.cert, ...pki.selfSignedClient },
        "other CA": { mode: "mtls", ca: ca.cert, ...pki.otherCaClient },
        "expired": { mode: "mtls", ca: ca.cert, ...pki.expiredClient },
      } satisfies Record<string, ClientSecurity>;
      for (const [name, security] of Object.entries(rejected)) {
        const reply = await echo("127.0.0.1", srv.port, security);
        assert.match(reply, /^error /, `${name} was accepted`);
      }
      // The same server still serves a good client afterwards.
      const reply = await echo("127.0.0.1", srv.port, { mode: "mtls", ca: ca.cert, ...client });
      assert.equal(reply, "hihi");
    });

    await t.step("bad credential files fail with clear errors", async () => {
      await assert.rejects(
        echoServer({ mode: "tls", cert: join(pki.dir, "missing.crt"), key: server.key }),
        (e) => e instanceof AosError && e.code === "notFound" && e.message.includes("missing.crt"),
      );
      const notPem = join(pki.dir, "not.pem");
      await Deno.writeTextFile(notPem, "hello");
      await assert.rejects(
        readPem(notPem, "certificate"),
        (e) => e instanceof AosError && e.code === "invalidArgument" && /not a PEM/.test(e.message),
      );
    });
  });
});

Deno.test({
  name: "TLS target helpers: host split, IP targets send localhost as SNI",
  permissions: "none",
  fn() {
    assert.equal(splitHost("127.0.0.1:8089"), "127.0.0.1");
    assert.equal(splitHost("[::1]:8089"), "::1");
    assert.equal(splitHost("localhost:8089"), "localhost");
    assert.deepEqual(tlsChannelOptions("127.0.0.1:1"), {
      "grpc.ssl_target_name_override": "localhost",
    });
    assert.deepEqual(tlsChannelOptions("[::1]:1"), {
      "grpc.ssl_target_name_override": "localhost",
    });
    assert.deepEqual(tlsChannelOptions("localhost:1"), {});
  },
});

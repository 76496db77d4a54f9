import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { AosError } from "../core/errors.ts";
import { memoryLogger } from "../core/logger.ts";
import {
  callUnary,
  clientChannelOptions,
  createGrpcClient,
  createGrpcServer,
  normalizeListenAddress,
  serverChannelOptions,
  unaryHandler,
} from "./mod.ts";
import { ECHO_SERVICE, EchoClient } from "./testdata/echo.ts";
import { startFrameCountingProxy } from "./testdata/h2_frame_counter.ts";

const echoImpl = { echo: unaryHandler((req: Buffer) => req) };

async function until(what: string, cond: () => boolean, limitMs = 8_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("keepalive: 1 s client pings without calls get no GOAWAY; server pings are acked", async () => {
  await using srv = await createGrpcServer({
    address: "127.0.0.1:0",
    security: { mode: "insecure" },
    services: [{ definition: ECHO_SERVICE, implementation: echoImpl }],
    keepalive: { timeMs: 1_000, timeoutMs: 1_000 },
  });
  await using proxy = startFrameCountingProxy(srv.port);
  const client = await createGrpcClient(EchoClient, `127.0.0.1:${proxy.port}`, {
    security: { mode: "insecure" },
    keepalive: { timeMs: 1_000, timeoutMs: 1_000 },
  });
  try {
    const call = () =>
      callUnary(client.echo.bind(client), Buffer.from("ping"), { timeoutMs: 5_000 });
    assert.equal((await call()).toString(), "ping");
    // Idle connection: the client keeps pinging (permit without calls), the server keeps acking.
    await until(
      "3 client pings and 1 server ping",
      () =>
        proxy.fromClient.pings >= 3 && proxy.fromServer.pingAcks >= 3 &&
        proxy.fromServer.pings >= 1,
    );
    assert.equal((await call()).toString(), "ping");
    assert.deepEqual(proxy.fromServer.goawayData, [], "server sent GOAWAY");
    assert.equal(proxy.fromServer.goaways, 0);
    assert.ok(proxy.fromClient.pingAcks >= 1, "client did not ack the server's ping");
    assert.equal(proxy.connections, 1, "the client had to reconnect");
  } finally {
    client.close();
  }
});

Deno.test({
  name: "keepalive options: C++ client cadence, server accepts 10 s pings without strikes",
  permissions: "none",
  fn() {
    assert.deepEqual(clientChannelOptions(), {
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 3_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.initial_reconnect_backoff_ms": 1_000,
      "grpc.max_reconnect_backoff_ms": 3_000,
    });
    const server = serverChannelOptions();
    assert.equal(server["grpc.keepalive_time_ms"], 10_000);
    assert.equal(server["grpc.keepalive_timeout_ms"], 3_000);
    assert.equal(server["grpc.http2.max_ping_strikes"], 0);
    assert.ok(server["grpc.http2.min_ping_interval_without_data_ms"] <= 10_000);
    assert.equal(serverChannelOptions({ timeMs: 0 })["grpc.keepalive_time_ms"], undefined);
  },
});

Deno.test({
  name: "listen addresses: a leading colon means all IPv4 interfaces",
  permissions: "none",
  fn() {
    assert.equal(normalizeListenAddress(":8089"), "0.0.0.0:8089");
    assert.equal(normalizeListenAddress("localhost:8090"), "localhost:8090");
    assert.equal(normalizeListenAddress("[::1]:0"), "[::1]:0");
    for (const bad of ["8089", "host:", "host:99999", ":x", "a b:1", ""]) {
      assert.throws(
        () => normalizeListenAddress(bad),
        (e) => e instanceof AosError && e.code === "invalidArgument",
        bad,
      );
    }
  },
});

Deno.test("server binds ':0' on all interfaces and reports the port", async () => {
  const logger = memoryLogger();
  await using srv = await createGrpcServer({
    address: ":0",
    security: { mode: "insecure" },
    services: [{ definition: ECHO_SERVICE, implementation: echoImpl }],
    logger,
  });
  assert.ok(srv.port > 0);
  assert.equal(srv.address, `0.0.0.0:${srv.port}`);
  const client = await createGrpcClient(EchoClient, `:${srv.port}`, {
    security: grpc.credentials.createInsecure(),
  });
  try {
    assert.equal(
      (await callUnary(client.echo.bind(client), Buffer.from("a"), { timeoutMs: 5_000 }))
        .toString(),
      "a",
    );
  } finally {
    client.close();
  }
  assert.equal(logger.records[0]?.msg, "gRPC server listening");
});

Deno.test("binding a port in use fails with an AosError", async () => {
  await using first = await createGrpcServer({
    address: "127.0.0.1:0",
    security: { mode: "insecure" },
    services: [],
  });
  await assert.rejects(
    createGrpcServer({
      address: `127.0.0.1:${first.port}`,
      security: { mode: "insecure" },
      services: [],
    }),
    (e) => e instanceof AosError && e.code === "failed" && e.message.includes(`:${first.port}`),
  );
});

Deno.test("shutdown drops connections without GOAWAY: calls in flight fail, clients survive", async () => {
  const started = Promise.withResolvers<void>();
  const logger = memoryLogger();
  const srv = await createGrpcServer({
    address: "127.0.0.1:0",
    security: { mode: "insecure" },
    services: [{
      definition: ECHO_SERVICE,
      implementation: { echo: (_call: unknown, _cb: unknown) => started.resolve() },
    }],
    shutdownTimeoutMs: 5_000,
    logger,
  });
  const client = await createGrpcClient(EchoClient, `127.0.0.1:${srv.port}`, {
    security: { mode: "insecure" },
  });
  try {
    const hung = callUnary(client.echo.bind(client), Buffer.from("hang"));
    await started.promise;
    const stopping = srv.shutdown();
    assert.equal(srv.shutdown(), stopping, "shutdown is not idempotent");
    // The connection is dropped at once rather than waiting out the 5 s grace.
    await assert.rejects(hung, AosError);
    await stopping;
    assert.ok(!logger.records.some((r) => r.msg.includes("timed out")));
  } finally {
    client.close();
  }
});

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { AosError, type ErrorCode } from "../core/errors.ts";
import {
  aosErrorFromGrpc,
  callUnary,
  createGrpcClient,
  createGrpcServer,
  grpcErrorFrom,
  unaryHandler,
} from "./mod.ts";
import { ECHO_SERVICE, EchoClient } from "./testdata/echo.ts";

Deno.test({
  name: "grpcErrorFrom / aosErrorFromGrpc use the table in core/errors.ts",
  permissions: "none",
  fn() {
    const e = grpcErrorFrom(new AosError("notFound", "no cert sm"));
    assert.equal(e.code, grpc.status.NOT_FOUND);
    assert.equal(e.details, "no cert sm");
    assert.ok(e instanceof Error);
    assert.ok(e.metadata instanceof grpc.Metadata);
    assert.equal(grpcErrorFrom(new Error("boom")).code, grpc.status.INTERNAL);
    assert.equal(grpcErrorFrom("text").details, "text");
    // An error that already has a gRPC status keeps it.
    const upstream = Object.assign(new Error("14 UNAVAILABLE: down"), {
      code: grpc.status.UNAVAILABLE,
      details: "down",
    });
    assert.deepEqual([grpcErrorFrom(upstream).code, grpcErrorFrom(upstream).details], [
      grpc.status.UNAVAILABLE,
      "down",
    ]);

    const back = aosErrorFromGrpc({ code: grpc.status.FAILED_PRECONDITION, details: "paused" });
    assert.equal(back.code, "wrongState");
    assert.equal(back.message, "paused");
    assert.equal(aosErrorFromGrpc({ code: grpc.status.UNAVAILABLE, details: "" }).code, "failed");
    assert.equal(aosErrorFromGrpc(new Error("plain")).message, "plain");
    const same = new AosError("timeout", "t");
    assert.equal(aosErrorFromGrpc(same), same);
  },
});

Deno.test("a handler's AosError crosses the wire as a status and back", async () => {
  const codes: ErrorCode[] = ["notFound", "invalidArgument", "wrongState", "alreadyExist"];
  await using srv = await createGrpcServer({
    address: "127.0.0.1:0",
    security: { mode: "insecure" },
    services: [{
      definition: ECHO_SERVICE,
      implementation: {
        echo: unaryHandler(async (req: Buffer) => {
          if (req.toString() === "hang") await new Promise(() => {});
          const [code, message] = req.toString().split("|") as [ErrorCode, string];
          throw new AosError(code, message);
        }),
      },
    }],
  });
  const client = await createGrpcClient(EchoClient, `127.0.0.1:${srv.port}`, {
    security: { mode: "insecure" },
  });
  try {
    // Raw grpc-js view: the status code and details on the wire.
    const raw = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.echo(Buffer.from("notFound|x"), new grpc.Metadata(), {}, (err) => resolve(err))
    );
    assert.equal(raw?.code, grpc.status.NOT_FOUND);
    assert.equal(raw?.details, "x");

    for (const code of codes) {
      await assert.rejects(
        callUnary(client.echo.bind(client), Buffer.from(`${code}|msg ${code}`), {
          timeoutMs: 5_000,
        }),
        (e) => e instanceof AosError && e.code === code && e.message === `msg ${code}`,
      );
    }

    // Deadline and cancellation map to timeout and canceled.
    await assert.rejects(
      callUnary(client.echo.bind(client), Buffer.from("hang"), { timeoutMs: 100 }),
      (e) => e instanceof AosError && e.code === "timeout",
    );
    const abort = new AbortController();
    const pending = callUnary(client.echo.bind(client), Buffer.from("hang"), {
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), 50);
    await assert.rejects(pending, (e) => e instanceof AosError && e.code === "canceled");
    await assert.rejects(
      callUnary(client.echo.bind(client), Buffer.from("x"), { signal: abort.signal }),
      (e) => e instanceof AosError && e.code === "canceled",
    );
  } finally {
    client.close();
  }
});

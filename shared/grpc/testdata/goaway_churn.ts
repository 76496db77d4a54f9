/**
 * Churns gRPC sessions so that many of them receive GOAWAY while idle, the pattern that makes
 * Deno's node:http2 free an nghttp2 session still in use (denoland/deno#36788). Run as its own
 * process; it exits 0 after all rounds (printing whether the guard was armed), or dies by
 * SIGABRT/SIGSEGV.
 *
 *   deno run -A goaway_churn.ts <client-close|server-goaway> <rounds> <guard|noguard>
 *
 * - `client-close`: a unary call, the client closes (its GOAWAY reaches the server), the server
 *   shuts down a few ms later;
 * - `server-goaway`: a unary call, then the server shuts down gracefully (its GOAWAY reaches the
 *   idle client), then the client closes.
 *
 * Raw grpc-js on both sides, so the guard is exactly what the third argument says.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { goawayGuardArmed, installGoawayGuard } from "../goaway_guard.ts";
import { ECHO_SERVICE, type EchoClient } from "./echo.ts";

const [mode, roundsArg, guard] = Deno.args;
if (guard === "guard") installGoawayGuard();
const EchoClientCtor = grpc.makeGenericClientConstructor(ECHO_SERVICE, "Echo") as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => EchoClient;

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (let i = 0; i < Number(roundsArg); i++) {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    echo: (
      call: grpc.ServerUnaryCall<Buffer, Buffer>,
      cb: grpc.sendUnaryData<Buffer>,
    ) => cb(null, call.request),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
  const client = new EchoClientCtor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) =>
    client.echo(Buffer.from("hi"), new grpc.Metadata(), {}, (err) => err ? reject(err) : resolve())
  );
  if (mode === "client-close") {
    client.close();
    await wait(5);
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  } else {
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    await wait(5);
    client.close();
  }
}
console.log(`done, guard armed: ${goawayGuardArmed()}`);

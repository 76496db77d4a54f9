/**
 * gRPC plumbing shared by the components, on `@grpc/grpc-js`.
 *
 * - Credentials for the three upstream modes from PEM files: insecure, server-only TLS, mutual
 *   TLS ({@link loadServerCredentials}, {@link loadClientCredentials}). Clients verify the
 *   chain but, like the C++ clients (`check_call_host = false`), not the host name by default.
 * - {@link createGrpcServer}: binds (`":port"` = all IPv4 interfaces, port 0 = ephemeral),
 *   keepalive compatible with C++ clients (10 s pings without calls are never answered with
 *   GOAWAY `too_many_pings`), bounded graceful shutdown, `Symbol.asyncDispose`.
 * - {@link createGrpcClient}: the C++ clients' keepalive (10 s / 3 s, also idle) and
 *   reconnect backoff, optional client certificate.
 * - {@link installGoawayGuard}: keeps a session closed inside nghttp2's frame processing (a
 *   received GOAWAY) from crashing the process (denoland/deno#36788); the server and client
 *   constructors install it.
 * - Status mapping through the single table in `core/errors.ts`: {@link grpcErrorFrom} for
 *   handlers, {@link aosErrorFromGrpc} for callers, plus {@link unaryHandler} and
 *   {@link callUnary} to write both sides with promises.
 * @module
 */
export {
  type ClientSecurity,
  loadClientCredentials,
  loadServerCredentials,
  readPem,
  type ServerSecurity,
  splitHost,
  tlsChannelOptions,
} from "./credentials.ts";
export {
  createGrpcServer,
  DEFAULT_SERVER_KEEPALIVE,
  type GrpcServer,
  type GrpcServerOptions,
  type GrpcService,
  normalizeListenAddress,
  serverChannelOptions,
  type ServerKeepalive,
} from "./server.ts";
export {
  clientChannelOptions,
  type ClientKeepalive,
  createGrpcClient,
  DEFAULT_CLIENT_KEEPALIVE,
  type GrpcClientConstructor,
  type GrpcClientOptions,
  grpcTarget,
} from "./client.ts";
export {
  aosErrorFromGrpc,
  callUnary,
  type CallUnaryOptions,
  grpcErrorFrom,
  unaryHandler,
  type UnaryMethod,
} from "./status.ts";
export {
  deferTeardownWhile,
  goawayGuardArmed,
  guardSessionPrototype,
  installGoawayGuard,
  type SessionTeardown,
} from "./goaway_guard.ts";

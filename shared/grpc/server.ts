/**
 * grpc-js server construction with keepalive settings C++ peers get along with, binding,
 * and a bounded graceful shutdown.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { AosError } from "../core/errors.ts";
import { type Logger, nullLogger } from "../core/logger.ts";
import { loadServerCredentials, type ServerSecurity } from "./credentials.ts";
import { installGoawayGuard } from "./goaway_guard.ts";

/** One service to serve: a grpc-js definition and its handlers. */
export interface GrpcService {
  /** E.g. `IAMVersionServiceService` from the generated code. */
  // deno-lint-ignore no-explicit-any
  definition: grpc.ServiceDefinition<any>;
  /** Handlers keyed by method name. */
  implementation: grpc.UntypedServiceImplementation;
}

/** Keepalive pings a server sends to its clients. */
export interface ServerKeepalive {
  /** Interval between pings on an idle connection, ms (default 10 000; 0 disables). */
  timeMs: number;
  /** How long to wait for the ping ack before dropping the connection, ms (default 3 000). */
  timeoutMs: number;
}

/** Default server keepalive: the cadence C++ clients use towards us. */
export const DEFAULT_SERVER_KEEPALIVE: ServerKeepalive = { timeMs: 10_000, timeoutMs: 3_000 };

/** Options of {@link createGrpcServer}. */
export interface GrpcServerOptions {
  /** `host:port`; a leading `:` (`":8089"`) means all IPv4 interfaces; port 0 picks one. */
  address: string;
  /** Credentials, or the files to build them from. */
  security: ServerSecurity | grpc.ServerCredentials;
  /** Services to register. */
  services: readonly GrpcService[];
  /** Time granted to running calls on shutdown before they are cut, ms (default 5 000). */
  shutdownTimeoutMs?: number;
  /** Server-initiated keepalive (detects vanished clients). */
  keepalive?: Partial<ServerKeepalive>;
  /** Extra grpc-js server options; they win over the defaults here. */
  options?: grpc.ServerOptions;
  /** Receives start/stop records. */
  logger?: Logger;
}

/** A bound, running server. */
export interface GrpcServer extends AsyncDisposable {
  /** The grpc-js server. */
  readonly server: grpc.Server;
  /** The bound port (the chosen one when the address asked for port 0). */
  readonly port: number;
  /** The address it was bound to, with the port resolved. */
  readonly address: string;
  /**
   * Stops the server: the TCP connections are dropped (no HTTP/2 GOAWAY, see
   * {@link trackConnections}), then the server closes. Idempotent.
   */
  shutdown(): Promise<void>;
}

/**
 * Server options for keepalive. grpc-js 1.14 servers honour only `grpc.keepalive_time_ms` and
 * `grpc.keepalive_timeout_ms` (their own pings); they do not police client pings at all, so
 * they never answer a C++ client's 10 s pings with GOAWAY `too_many_pings`. The C-core
 * ping-policy options are still set to "accept pings every 10 s without calls, no strikes" so a
 * grpc-js release that starts honouring them keeps C++ clients connected.
 */
export function serverChannelOptions(keepalive: Partial<ServerKeepalive> = {}): grpc.ServerOptions {
  const { timeMs, timeoutMs } = { ...DEFAULT_SERVER_KEEPALIVE, ...keepalive };
  return {
    ...(timeMs > 0
      ? { "grpc.keepalive_time_ms": timeMs, "grpc.keepalive_timeout_ms": timeoutMs }
      : {}),
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
    "grpc.http2.min_time_between_pings_ms": 10_000,
    "grpc.http2.max_ping_strikes": 0,
  };
}

/** Normalizes a listen address: `":8089"` becomes `"0.0.0.0:8089"`; the port is validated. */
export function normalizeListenAddress(address: string): string {
  const full = address.startsWith(":") ? `0.0.0.0${address}` : address;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(full);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    throw new AosError(
      "invalidArgument",
      `Invalid gRPC listen address "${address}": expected host:port or :port`,
    );
  }
  return full;
}

type Socket = { destroy(): void; once(event: "close", fn: () => void): void };

/**
 * Tracks the TCP connections of a bound grpc-js server, so shutdown can drop them.
 *
 * Why: a graceful HTTP/2 shutdown sends GOAWAY, and a Deno session that receives GOAWAY can
 * crash the process inside nghttp2 (denoland/deno#36788; see `goaway_guard.ts`, which guards
 * our own sessions). Clients of other runtimes are spared a GOAWAY they do not need: servers
 * close their connections, the clients see the connection drop, as after a crash of the peer,
 * and reconnect. This reaches into grpc-js internals (`http2Servers`, 1.14); without them
 * shutdown stays graceful.
 */
function trackConnections(server: grpc.Server): Set<Socket> {
  const set = new Set<Socket>();
  const http2Servers = (server as unknown as {
    http2Servers?: Map<{ on(event: "connection", fn: (s: Socket) => void): void }, unknown>;
  }).http2Servers;
  for (const h of http2Servers?.keys() ?? []) {
    h.on("connection", (socket) => {
      set.add(socket);
      socket.once("close", () => set.delete(socket));
    });
  }
  return set;
}

/** Creates a server, registers `services`, and binds it; resolves once it accepts calls. */
export async function createGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const address = normalizeListenAddress(options.address);
  const logger = options.logger ?? nullLogger;
  installGoawayGuard(logger);
  const credentials = options.security instanceof grpc.ServerCredentials
    ? options.security
    : await loadServerCredentials(options.security);
  const server = new grpc.Server({
    ...serverChannelOptions(options.keepalive),
    ...options.options,
  });
  for (const service of options.services) {
    server.addService(service.definition, service.implementation);
  }
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, credentials, (err, p) => err ? reject(err) : resolve(p))
    );
  } catch (err) {
    server.forceShutdown();
    throw new AosError(
      "failed",
      `Cannot bind gRPC server to ${address}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const connections = trackConnections(server);
  const bound = address.replace(/:\d+$/, `:${port}`);
  const grace = options.shutdownTimeoutMs ?? 5_000;
  logger.info("gRPC server listening", { address: bound });

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= new Promise<void>((resolve) => {
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        logger.info("gRPC server stopped", { address: bound });
        resolve();
      };
      const timer = setTimeout(() => {
        logger.warn("gRPC server shutdown timed out, cancelling calls", {
          address: bound,
          timeoutMs: grace,
        });
        server.forceShutdown();
        finish();
      }, grace);
      for (const socket of connections) socket.destroy();
      server.tryShutdown(finish);
    });
  return {
    server,
    port,
    address: bound,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  };
}

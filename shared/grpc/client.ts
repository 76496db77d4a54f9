/**
 * grpc-js client construction with the keepalive and reconnect settings of the C++ clients.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { AosError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { type ClientSecurity, loadClientCredentials, tlsChannelOptions } from "./credentials.ts";
import { installGoawayGuard } from "./goaway_guard.ts";

/** Client keepalive. */
export interface ClientKeepalive {
  /** Ping interval, ms. */
  timeMs: number;
  /** Ping ack timeout, ms. */
  timeoutMs: number;
  /** Ping also while no call is active (keeps long idle streams' connections checked). */
  permitWithoutCalls: boolean;
}

/** What every C++ AosCore client uses: ping every 10 s, 3 s ack timeout, also when idle. */
export const DEFAULT_CLIENT_KEEPALIVE: ClientKeepalive = {
  timeMs: 10_000,
  timeoutMs: 3_000,
  permitWithoutCalls: true,
};

/** A grpc-js client class, e.g. `IAMPublicCertServiceClient` from the generated code. */
export type GrpcClientConstructor<C extends grpc.Client> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => C;

/** Options of {@link createGrpcClient}. */
export interface GrpcClientOptions {
  /** Credentials, or the files to build them from (`mtls` presents a client certificate). */
  security: ClientSecurity | grpc.ChannelCredentials;
  /** Overrides of {@link DEFAULT_CLIENT_KEEPALIVE}. */
  keepalive?: Partial<ClientKeepalive>;
  /** Extra grpc-js channel options; they win over the defaults here. */
  options?: Partial<grpc.ClientOptions>;
  /** Where a process-wide problem of the gRPC stack is reported (see `installGoawayGuard`). */
  logger?: Logger;
}

/** Channel options for keepalive plus the C++ clients' 1–3 s reconnect backoff. */
export function clientChannelOptions(
  keepalive: Partial<ClientKeepalive> = {},
): grpc.ChannelOptions {
  const k = { ...DEFAULT_CLIENT_KEEPALIVE, ...keepalive };
  return {
    "grpc.keepalive_time_ms": k.timeMs,
    "grpc.keepalive_timeout_ms": k.timeoutMs,
    "grpc.keepalive_permit_without_calls": k.permitWithoutCalls ? 1 : 0,
    "grpc.initial_reconnect_backoff_ms": 1_000,
    "grpc.max_reconnect_backoff_ms": 3_000,
  };
}

/**
 * The grpc-js target for a config address: a leading `:` means the local host, and `localhost`
 * is dialled as `127.0.0.1` — grpc-js resolves names through node:dns, which Deno allows only
 * with a port-less net grant for the name, while our manifests grant `host:port`.
 */
export function grpcTarget(address: string): string {
  return (address.startsWith(":") ? `localhost${address}` : address).replace(
    /^localhost:/,
    "127.0.0.1:",
  );
}

/**
 * Creates a client of class `ctor` for `address` (`host:port`; a leading `:` means
 * `localhost`). The connection is made lazily on the first call; close it with
 * `client.close()`.
 */
export async function createGrpcClient<C extends grpc.Client>(
  ctor: GrpcClientConstructor<C>,
  address: string,
  options: GrpcClientOptions,
): Promise<C> {
  installGoawayGuard(options.logger);
  const target = grpcTarget(address);
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):\d{1,5}$/.test(target)) {
    throw new AosError("invalidArgument", `Invalid gRPC server address "${address}"`);
  }
  const { security } = options;
  const credentials = security instanceof grpc.ChannelCredentials
    ? security
    : await loadClientCredentials(security, target);
  return new ctor(target, credentials, {
    ...clientChannelOptions(options.keepalive),
    ...(credentials._isSecure() ? tlsChannelOptions(target) : {}),
    ...options.options,
  });
}

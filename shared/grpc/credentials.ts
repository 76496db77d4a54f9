/**
 * gRPC credentials for the three upstream modes (insecure, server-only TLS, mutual TLS), built
 * from PEM files.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { AosError } from "../core/errors.ts";

/** How a server authenticates itself and its clients. Paths are PEM files. */
export type ServerSecurity =
  | { mode: "insecure" }
  /** The server presents `cert`/`key`; clients send no certificate. */
  | { mode: "tls"; cert: string; key: string }
  /** As `tls`, and every client must present a certificate issued by `ca`. */
  | { mode: "mtls"; cert: string; key: string; ca: string };

/** How a client authenticates the server (and itself). Paths are PEM files. */
export type ClientSecurity =
  | { mode: "insecure" }
  /** Verifies the server's chain against `ca`; sends no certificate. */
  | { mode: "tls"; ca: string; verifyHostname?: boolean }
  /** As `tls`, and presents `cert`/`key` to the server. */
  | { mode: "mtls"; ca: string; cert: string; key: string; verifyHostname?: boolean };

/** Largest PEM file accepted; real certificate chains are a few KiB. */
const MAX_PEM_BYTES = 1 << 20;

/** Reads a PEM file as the `Buffer` grpc-js requires (it rejects plain `Uint8Array`). */
export async function readPem(path: string, what: string): Promise<Buffer> {
  let data: Uint8Array;
  try {
    const stat = await Deno.stat(path);
    if (!stat.isFile) throw new Error("not a regular file");
    if (stat.size > MAX_PEM_BYTES) throw new Error(`${stat.size} bytes is over ${MAX_PEM_BYTES}`);
    data = await Deno.readFile(path);
  } catch (err) {
    const code = err instanceof Deno.errors.NotFound ? "notFound" : "failed";
    throw new AosError(code, `Cannot read gRPC ${what} ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!new TextDecoder().decode(data.subarray(0, 4096)).includes("-----BEGIN ")) {
    throw new AosError("invalidArgument", `Cannot use gRPC ${what} ${path}: not a PEM file`);
  }
  return Buffer.from(data);
}

/** Builds server credentials for `security`. */
export async function loadServerCredentials(
  security: ServerSecurity,
): Promise<grpc.ServerCredentials> {
  if (security.mode === "insecure") return grpc.ServerCredentials.createInsecure();
  const [cert, key, ca] = await Promise.all([
    readPem(security.cert, "certificate"),
    readPem(security.key, "private key"),
    security.mode === "mtls" ? readPem(security.ca, "CA certificate") : undefined,
  ]);
  // Never pass null roots: grpc-js would then load GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, and Deno's
  // TLS server appends every root it is given to the chain it sends (a system bundle makes the
  // handshake message too large for clients). An empty buffer means "no roots".
  return grpc.ServerCredentials.createSsl(
    ca ?? Buffer.alloc(0),
    [{ cert_chain: cert, private_key: key }],
    security.mode === "mtls",
  );
}

/**
 * Builds client credentials for `security`.
 *
 * Host names are not verified unless `verifyHostname` is set, like the C++ clients
 * (`check_call_host = false`): Aos certs name `localhost`, while peers may dial an IP. The chain
 * is always verified against `ca`. `target` (`host:port`) is the address the host name is
 * checked against when verification is on (needed when dialing an IP, see
 * {@link tlsChannelOptions}).
 */
export async function loadClientCredentials(
  security: ClientSecurity,
  target?: string,
): Promise<grpc.ChannelCredentials> {
  if (security.mode === "insecure") return grpc.credentials.createInsecure();
  const [ca, cert, key] = await Promise.all([
    readPem(security.ca, "CA certificate"),
    security.mode === "mtls" ? readPem(security.cert, "certificate") : null,
    security.mode === "mtls" ? readPem(security.key, "private key") : null,
  ]);
  const host = target === undefined ? undefined : splitHost(target);
  const verify: grpc.VerifyOptions = security.verifyHostname
    ? {
      checkServerIdentity: (name: string, peer: PeerCertificate) =>
        checkServerIdentity(host ?? name, peer),
    }
    : { checkServerIdentity: () => undefined };
  return grpc.credentials.createSsl(ca, key, cert, verify);
}

/** The host part of `host:port`, without IPv6 brackets. */
export function splitHost(target: string): string {
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(target);
  if (bracket) return bracket[1]!;
  const colon = target.lastIndexOf(":");
  return colon < 0 ? target : target.slice(0, colon);
}

/**
 * Channel options a TLS client needs for `target`: TLS forbids an IP address as the SNI server
 * name (Deno's `node:tls` refuses it outright), so for IP targets the name sent is `localhost`,
 * the name Aos certs carry. Certificate checks are unaffected (see
 * {@link loadClientCredentials}).
 */
export function tlsChannelOptions(target: string): grpc.ChannelOptions {
  return isIP(splitHost(target)) ? { "grpc.ssl_target_name_override": "localhost" } : {};
}

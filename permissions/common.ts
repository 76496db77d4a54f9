/**
 * Pieces shared by the per-component manifests.
 * @module
 */
import type { IamConfig } from "../iam/config.ts";
import { splitHostPort } from "@aos/shared/config";

/**
 * Environment variables that our libraries probe at import or call time. They read as
 * `undefined` (`--ignore-env`) instead of being granted: no component needs their values.
 */
export const LIBRARY_ENV = [
  // @grpc/grpc-js
  "GRPC_TRACE",
  "GRPC_VERBOSITY",
  "GRPC_NODE_TRACE",
  "GRPC_NODE_VERBOSITY",
  "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
  "GRPC_NODE_USE_ALTERNATIVE_RESOLVER",
  "GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION",
  "GRPC_SSL_CIPHER_SUITES",
  "grpc_proxy",
  "https_proxy",
  "http_proxy",
  "no_grpc_proxy",
  "no_proxy",
  // ws
  "WS_NO_BUFFER_UTIL",
  "WS_NO_UTF_8_VALIDATE",
  // node compat
  "NODE_DEBUG",
  "NODE_EXTRA_CA_CERTS",
];

/** The address a server binds for a config URL (`:8090` → `0.0.0.0:8090`). */
export function listenEntry(url: string): string {
  const { host, port } = splitHostPort(url);
  return `${host}:${port}`;
}

/**
 * Entries a client needs to dial a config URL. `localhost` is also granted as `127.0.0.1`
 * (our gRPC clients dial it so). Any other host name is also granted without a port, because
 * name resolution through node:dns (grpc-js) is checked against the bare name.
 */
export function dialEntries(url: string): string[] {
  if (!url) return [];
  const { host, port } = splitHostPort(url.startsWith(":") ? `localhost${url}` : url);
  const out = [`${host}:${port}`];
  if (host === "localhost") out.push(`127.0.0.1:${port}`);
  else if (!/^[\d.]+$/.test(host) && !host.includes(":")) out.push(host);
  return out;
}

/** A config as loaded from a file. */
export interface LoadedConfig<C> {
  config: C;
  path: string;
}

/**
 * The storage directories of the given IAM cert types: a component that uses IAM-issued
 * credentials reads its own key and certificate files there, and nothing else of IAM's.
 */
export function certStorageDirs(iam: IamConfig | undefined, certTypes: string[]): string[] {
  if (!iam) return [];
  return iam.certModules
    .filter((m) => certTypes.includes(m.id) && !m.disabled)
    .map((m) => m.params.storagePath);
}

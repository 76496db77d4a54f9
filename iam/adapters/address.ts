/**
 * Addresses handed to grpc-js.
 *
 * grpc-js resolves host names with `node:dns`, which under Deno needs a net grant for the bare
 * host (every port), while the manifest grants exactly `host:port`. `localhost` is therefore
 * replaced by `127.0.0.1`, which needs no resolution and is granted as `127.0.0.1:port`.
 * @module
 */

/** A listen address: `localhost:port` → `127.0.0.1:port` (`:port` stays all interfaces). */
export function listenAddress(address: string): string {
  return address.replace(/^localhost:(\d+)$/i, "127.0.0.1:$1");
}

/** A dial address: `localhost:port` and `:port` → `127.0.0.1:port`. */
export function dialAddress(address: string): string {
  return address.replace(/^(localhost)?:(\d+)$/i, "127.0.0.1:$2");
}

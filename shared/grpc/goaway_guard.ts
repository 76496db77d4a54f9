/**
 * Works around a use-after-free in Deno's `node:http2` (denoland/deno#36788, Deno 2.9.5 and
 * 2.9.6): when a session receives GOAWAY, the binding emits `goaway` and then calls the
 * session's `close()` (code NO_ERROR) or `destroy()` while `nghttp2_session_mem_recv` is still
 * on the stack. With no stream left open that frees the nghttp2 session, nghttp2 goes on walking
 * its streams, and the process aborts (`find_stream_on_goaway_func: Assertion
 * stream->closed_next == NULL`) or segfaults. No JavaScript can catch it.
 *
 * It is common for us: every grpc-js `client.close()` sends GOAWAY, so each of our servers
 * receives one whenever a client goes away (CI's test process aborted on it), and each client
 * receives one when a peer server (a C++ CM or IAM, or grpc-js's graceful shutdown) shuts down.
 *
 * The guard makes that one `close()`/`destroy()` run on the next macrotask, after nghttp2 has
 * returned: `goaway` is emitted just before the call, so for that synchronous turn the session's
 * own `close`/`destroy` are shadowed by deferring versions, removed again in a microtask. It is
 * installed on every session `node:http2` makes, client (`connect`) and server (`createServer`,
 * `createSecureServer`), which is where grpc-js gets its sessions.
 * @module
 */
import http2 from "node:http2";

/** The part of an `Http2Session` the guard touches. */
export interface GoawaySession {
  on(event: "goaway", listener: () => void): unknown;
  close(...args: unknown[]): unknown;
  destroy(...args: unknown[]): unknown;
}

/** Defers a `close()`/`destroy()` made synchronously after `session` emits `goaway`. */
export function deferCloseOnGoaway(session: GoawaySession): void {
  session.on("goaway", () => {
    const own = session as unknown as Record<string, unknown>;
    if (Object.hasOwn(own, "close")) return; // already shadowed in this turn
    const { close, destroy } = session;
    own.close = (...args: unknown[]) => setTimeout(() => close.apply(session, args), 0);
    own.destroy = (...args: unknown[]) => setTimeout(() => destroy.apply(session, args), 0);
    queueMicrotask(() => {
      delete own.close;
      delete own.destroy;
    });
  });
}

let installed = false;

/**
 * Installs {@link deferCloseOnGoaway} on every session `node:http2` creates from now on, in this
 * process (grpc-js calls `connect`/`createServer`/`createSecureServer` on the same module
 * object). Idempotent; called by our gRPC client and server constructors.
 */
export function installGoawayGuard(): void {
  if (installed) return;
  installed = true;
  const h2 = http2 as unknown as Record<string, (...args: unknown[]) => unknown>;
  const connect = h2.connect!;
  h2.connect = function (this: unknown, ...args: unknown[]) {
    const session = connect.apply(this, args) as GoawaySession;
    deferCloseOnGoaway(session);
    return session;
  };
  for (const name of ["createServer", "createSecureServer"]) {
    const create = h2[name]!;
    h2[name] = function (this: unknown, ...args: unknown[]) {
      const server = create.apply(this, args) as {
        on(event: "session", listener: (s: GoawaySession) => void): unknown;
      };
      server.on("session", deferCloseOnGoaway);
      return server;
    };
  }
}

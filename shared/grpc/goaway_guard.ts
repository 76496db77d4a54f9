/**
 * Works around a use-after-free in Deno's `node:http2` (denoland/deno#36788, Deno 2.9.5 and
 * 2.9.6): the native handle's `receive()` runs `nghttp2_session_mem_recv`, which calls back into
 * JavaScript for each frame; when such a callback closes or destroys the session and it has no
 * stream left, the binding frees the nghttp2 session while `mem_recv` is still using it, and the
 * process aborts (`find_stream_on_goaway_func: Assertion stream->closed_next == NULL`) or
 * segfaults. No JavaScript can catch it. The usual trigger is a received GOAWAY: `node:http2`
 * emits `goaway` (grpc-js closes its transport from its listener) and then calls `close()`
 * itself, whose graceful-close path destroys the idle session at once.
 *
 * It is common for us: every grpc-js `client.close()` sends GOAWAY to our servers, and our clients
 * receive one whenever a peer server (a C++ CM or IAM, or grpc-js's graceful shutdown) shuts down.
 *
 * The guard counts the native `receive()` calls on the stack and, while there is one, makes
 * `Http2Session#close()`/`destroy()` run once the JavaScript turn is over, after nghttp2 has
 * returned; whoever calls them (the binding, grpc-js, us). It patches prototypes rather than
 * adding `goaway` listeners, because grpc-js drops every listener of a client session once its
 * settings arrive (`removeAllListeners()`), which silently disarmed a per-session listener on
 * the client side. It relies on two internals of Deno's binding: the session's `kHandle` symbol
 * and the `receive` method of the handle's prototype; where they are missing (Node, or another
 * Deno) the guard does nothing.
 * @module
 */
import http2 from "node:http2";
import process from "node:process";
import { type Logger, nullLogger } from "../core/logger.ts";

/** The teardown methods of an `Http2Session` the guard defers. */
export interface SessionTeardown {
  close(...args: unknown[]): unknown;
  destroy(...args: unknown[]): unknown;
}

/**
 * Replaces `close` and `destroy` of `target` (a session prototype) by versions that, while
 * `busy()` is true, run the original once the current JavaScript turn is over and return nothing.
 *
 * The deferred call is a `process.nextTick`: queued from inside the native `receive()`, it runs
 * right after it and before the tick `node:http2` queues itself when a receive leaves nothing to
 * send (that tick closes the session: a later deferral, e.g. a timer, would find it closed and
 * drop `close(callback)`'s callback or `destroy(error)`'s error). Should it still be busy then,
 * the call waits for a timer.
 */
export function deferTeardownWhile(
  target: SessionTeardown,
  busy: () => boolean,
): void {
  for (const name of ["close", "destroy"] as const) {
    const original = target[name];
    target[name] = function (this: unknown, ...args: unknown[]) {
      if (!busy()) return original.apply(this, args);
      const run = () => {
        if (busy()) setTimeout(run, 0);
        else original.apply(this, args);
      };
      process.nextTick(run);
      return undefined;
    };
  }
}

/** How many native `receive()` calls are on the stack, over all sessions. */
let receiving = 0;
/** Whether the native `receive()` is wrapped, i.e. the guard can see GOAWAY handling. */
let armed = false;

/**
 * True once the guard counts native `receive()` calls (after the first session of the process
 * was set up); false where Deno's internals differ and the guard does nothing.
 */
export function goawayGuardArmed(): boolean {
  return armed;
}

/** What looking for the native `receive()` through one session found. */
type ProbeResult = "armed" | "no handle yet" | "unsupported";

/** Wraps the `receive` of the native handle's prototype, found through `session`. */
function countReceives(session: object): ProbeResult {
  const own = session as Record<symbol, unknown>;
  const key = Object.getOwnPropertySymbols(own).find((s) => s.description === "kHandle");
  const handle = key === undefined ? undefined : own[key];
  if (typeof handle !== "object" || handle === null) return "no handle yet";
  const proto = Object.getPrototypeOf(handle) as Record<string, unknown> | null;
  const receive = proto?.receive;
  if (proto === null || typeof receive !== "function") return "unsupported";
  proto.receive = function (this: unknown, ...args: unknown[]) {
    receiving++;
    try {
      return receive.apply(this, args);
    } finally {
      receiving--;
    }
  };
  armed = true;
  return "armed";
}

/** Session events looked at for a native handle before the guard gives up. */
const MAX_PROBES = 1000;

/**
 * Arms the guard on `proto`, the `Http2Session` prototype: its `close`/`destroy` are deferred
 * while a native `receive()` runs. The native prototype is reachable only through a live handle;
 * a session emits (`newListener`, `connect`) as soon as its handle exists, so the first emit that
 * finds one wraps `receive`, and the shadowing `emit` removes itself. Bytes already buffered on
 * the very first session's socket may reach one `receive()` before that: the process's first
 * session can see one unguarded receive, as its very first frames (SETTINGS). When the handle has no `receive`, or none shows up in {@link MAX_PROBES}
 * emits, `unsupported` is called once and the shadowing `emit` is removed as well.
 */
export function guardSessionPrototype(
  proto: SessionTeardown & { emit(...args: unknown[]): boolean },
  unsupported: (why: string) => void,
): void {
  deferTeardownWhile(proto, () => receiving > 0);
  const hadOwnEmit = Object.hasOwn(proto, "emit");
  const emit = proto.emit;
  let probes = 0;
  const restore = () => {
    if (hadOwnEmit) proto.emit = emit;
    else delete (proto as Partial<typeof proto>).emit;
  };
  const probe = function (this: object, ...args: unknown[]): boolean {
    if (proto.emit === probe) {
      const found = countReceives(this);
      if (found === "armed") restore();
      else if (found === "unsupported" || ++probes >= MAX_PROBES) {
        restore();
        unsupported(
          found === "unsupported"
            ? "the native session handle has no receive()"
            : `no native session handle in ${MAX_PROBES} session events`,
        );
      }
    }
    return emit.apply(this, args);
  };
  proto.emit = probe;
}

let installed = false;

/**
 * Installs the guard for every `node:http2` session of this process, client and server (grpc-js
 * uses the same module). Idempotent; called by our gRPC client and server constructors. Where
 * this Deno's internals differ, it does nothing and says so once through `logger`.
 */
export function installGoawayGuard(logger: Logger = nullLogger): void {
  if (installed) return;
  installed = true;
  const warn = (why: string) =>
    logger.warn(
      "GOAWAY crash guard inactive (denoland/deno#36788): this Deno's node:http2 differs",
      { why },
    );
  const session = (http2 as unknown as { Http2Session?: { prototype: unknown } })
    .Http2Session;
  if (typeof session?.prototype !== "object" || session.prototype === null) {
    warn("node:http2 exports no Http2Session");
    return;
  }
  guardSessionPrototype(
    session.prototype as SessionTeardown & { emit(...args: unknown[]): boolean },
    warn,
  );
}

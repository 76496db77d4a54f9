/** A blob server for the downloader tests, with switches for misbehaviour. */
import { createHash } from "node:crypto";

/** What the server saw of one request. */
export interface SeenRequest {
  method: string;
  path: string;
  range: string | null;
  ifRange: string | null;
}

/** A deterministic test blob of `size` bytes and its digest. */
export function makeBlob(size: number, seed = 1): { bytes: Uint8Array; digest: string } {
  const bytes = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return { bytes, digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}` };
}

/** The ETag the helper {@link rangeResponse} uses. */
export const ETAG = `"v1"`;

/** Honours `Range` and `If-Range` like an ordinary server; `body` may replace the bytes sent. */
export function rangeResponse(
  req: Request,
  bytes: Uint8Array,
  opts: { ignoreRange?: boolean; body?: (start: number) => BodyInit } = {},
): Response {
  const headers = new Headers({ etag: ETAG, "accept-ranges": "bytes" });
  const range = req.headers.get("range");
  const ifRange = req.headers.get("if-range");
  let start = 0;
  const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
  if (m && !opts.ignoreRange && (ifRange === null || ifRange === ETAG)) {
    start = Number(m[1]);
    if (start >= bytes.length) {
      headers.set("content-range", `bytes */${bytes.length}`);
      return new Response(null, { status: 416, headers });
    }
    headers.set("content-range", `bytes ${start}-${bytes.length - 1}/${bytes.length}`);
  }
  headers.set("content-length", String(bytes.length - start));
  return new Response(opts.body ? opts.body(start) : bytes.slice(start), {
    status: start > 0 ? 206 : 200,
    headers,
  });
}

/** A body that sends `first`, then waits for `release` (or the client leaving) before `rest`. */
export function gatedBody(
  first: Uint8Array,
  rest: Uint8Array,
  release: Promise<unknown>,
  onFirstSent?: () => void,
): ReadableStream<Uint8Array> {
  let step = 0;
  let cancel: () => void = () => {};
  const canceled = new Promise<void>((r) => cancel = r);
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (step === 0) {
        step = 1;
        c.enqueue(first);
        onFirstSent?.();
        return;
      }
      const which = await Promise.race([release.then(() => "go"), canceled.then(() => "stop")]);
      if (which === "stop") return;
      if (rest.length) c.enqueue(rest);
      c.close();
    },
    cancel() {
      cancel();
    },
  }, { highWaterMark: 0 });
}

/** A body that sends `first` and then breaks the connection. */
export function droppingBody(first: Uint8Array): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (!sent) {
        sent = true;
        c.enqueue(first);
        return;
      }
      c.error(new Error("test server drops the connection"));
    },
  }, { highWaterMark: 0 });
}

/** Starts a server on 127.0.0.1:0 that records requests and answers with `handler`. */
export async function startServer(
  handler: (req: Request, index: number) => Response | Promise<Response>,
): Promise<
  { url: (path?: string) => string; seen: SeenRequest[]; port: number } & AsyncDisposable
> {
  const seen: SeenRequest[] = [];
  const { promise, resolve } = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => resolve(),
    // Broken streams are the point of some tests: keep the output quiet.
    onError: () => new Response("error", { status: 500 }),
  }, (req) => {
    const u = new URL(req.url);
    seen.push({
      method: req.method,
      path: u.pathname,
      range: req.headers.get("range"),
      ifRange: req.headers.get("if-range"),
    });
    return handler(req, seen.length - 1);
  });
  await promise;
  const port = (server.addr as Deno.NetAddr).port;
  return {
    port,
    seen,
    url: (path = "/blob") => `http://127.0.0.1:${port}${path}`,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

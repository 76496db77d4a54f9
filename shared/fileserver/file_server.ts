import { realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import { AosError } from "../core/errors.ts";
import { type Logger, nullLogger } from "../core/logger.ts";

/** Hash algorithms a blob path may name, with the hex length of their digest. */
export const BLOB_ALGORITHMS: Readonly<Record<string, number>> = Object.freeze({
  sha256: 64,
  sha384: 96,
  sha512: 128,
});

/** Options of {@link startFileServer}. */
export interface FileServerOptions {
  /** Directory served: a request for `<prefix>/<alg>/<hex>` reads `<root>/<alg>/<hex>`. */
  root: string;
  /** URL path prefix without a trailing slash (default `/blobs`). */
  prefix?: string;
  /** Listen address (default `127.0.0.1`). */
  hostname?: string;
  /** Listen port (default 8094; 0 picks a free one). */
  port?: number;
  /** Logger (default drops everything). */
  logger?: Logger;
}

/** A running blob file server. */
export interface FileServer extends AsyncDisposable {
  /** The bound address. */
  readonly addr: { hostname: string; port: number };
  /** Base URL of the blobs, e.g. `http://127.0.0.1:8094/blobs`. */
  readonly baseUrl: string;
  /** The URL of a blob given as `sha256:<hex>`. */
  urlFor(digest: string): string;
  /** Stops accepting and waits for open responses to end. */
  close(): Promise<void>;
}

/** One byte range, both ends included. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Reads a `Range` header against a file of `size` bytes.
 *
 * Returns `undefined` when the header is absent, malformed or asks for several ranges (the
 * server then answers the whole file, which RFC 9110 allows), `"unsatisfiable"` for a range
 * that starts past the end.
 */
export function parseRange(
  header: string | null,
  size: number,
): ByteRange | "unsatisfiable" | undefined {
  if (header === null) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, a = "", b = ""] = m;
  if (a === "" && b === "") return undefined;
  if (a === "") {
    // Suffix form: the last N bytes.
    const n = Number(b);
    if (!Number.isSafeInteger(n)) return undefined;
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === "" ? Number.MAX_SAFE_INTEGER : Number(b);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) {
    return undefined;
  }
  if (start >= size) return "unsatisfiable";
  return { start, end: Math.min(end, size - 1) };
}

const CHUNK = 64 * 1024;

function fileBody(file: Deno.FsFile, start: number, length: number): ReadableStream<Uint8Array> {
  let remaining = length;
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      file.close();
    }
  };
  return new ReadableStream<Uint8Array>({
    async start() {
      if (start > 0) await file.seek(start, Deno.SeekMode.Start);
    },
    async pull(controller) {
      if (remaining <= 0) {
        close();
        controller.close();
        return;
      }
      const buf = new Uint8Array(Math.min(CHUNK, remaining));
      let n: number | null;
      try {
        n = await file.read(buf);
      } catch (err) {
        close();
        throw err;
      }
      if (n === null) {
        // The file shrank under us: end early rather than hang; the client sees a short body.
        close();
        controller.error(new Error("blob file shrank while it was being served"));
        return;
      }
      remaining -= n;
      controller.enqueue(buf.subarray(0, n));
      if (remaining <= 0) {
        close();
        controller.close();
      }
    },
    cancel() {
      close();
    },
  }, { highWaterMark: 0 });
}

function plain(status: number, text: string, headers: Record<string, string> = {}): Response {
  return new Response(text + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/**
 * Starts a read-only HTTP server for content-addressed blobs (CM serves its install directory
 * this way so that SMs fetch `http://<host>:8094/blobs/sha256/<hex>`).
 *
 * Only `<prefix>/<alg>/<hex>` paths with a known algorithm and a lowercase hex digest of the
 * right length are served; the path is matched on the raw request target, so percent-encoded
 * dots or slashes never reach the filesystem, and a file whose real path leaves the root
 * (a symlink) is treated as absent.
 */
export async function startFileServer(options: FileServerOptions): Promise<FileServer> {
  const prefix = (options.prefix ?? "/blobs").replace(/\/+$/, "");
  if (prefix !== "" && !/^(\/[A-Za-z0-9._-]+)+$/.test(prefix)) {
    throw new AosError("invalidArgument", `Cannot start file server: bad prefix "${prefix}"`);
  }
  const log = options.logger ?? nullLogger;
  const rootReal = await realpath(options.root).catch((cause) => {
    throw new AosError(
      "notFound",
      `Cannot start file server: root "${options.root}" is not accessible`,
      { cause },
    );
  });
  const rootPrefix = rootReal.endsWith(sep) ? rootReal : rootReal + sep;
  const pathRe = new RegExp(
    `^${prefix.replace(/[.]/g, "\\.")}/([a-z0-9]{1,16})/([0-9a-f]{1,256})$`,
  );

  const handler = async (req: Request): Promise<Response> => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return plain(405, "method not allowed", { allow: "GET, HEAD" });
    }
    // The raw target, not URL.pathname: the URL parser folds "/../" away, which would let a
    // crafted path land on another route.
    const target = req.url.replace(/^[a-z]+:\/\/[^/]*/i, "").replace(/\?.*$/, "");
    const m = pathRe.exec(target);
    if (!m) return plain(404, "not found");
    const [, alg = "", hex = ""] = m;
    if (BLOB_ALGORITHMS[alg] !== hex.length) return plain(404, "not found");

    let real: string;
    try {
      real = await realpath(join(rootReal, alg, hex));
    } catch {
      return plain(404, "not found");
    }
    if (!real.startsWith(rootPrefix)) {
      log.warn("blob path escapes the served root", { path: target });
      return plain(404, "not found");
    }
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(real);
    } catch {
      return plain(404, "not found");
    }
    if (!info.isFile()) return plain(404, "not found");

    const size = Number(info.size);
    const etag = `"${alg}:${hex}"`;
    const lastModified = info.mtime.toUTCString();
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "accept-ranges": "bytes",
      etag,
      "last-modified": lastModified,
      // Content-addressed: the bytes behind a name never change.
      "cache-control": "public, max-age=31536000, immutable",
    };

    let range = parseRange(req.headers.get("range"), size);
    const ifRange = req.headers.get("if-range");
    if (range !== undefined && ifRange !== null && ifRange !== etag && ifRange !== lastModified) {
      range = undefined;
    }
    if (range === "unsatisfiable") {
      return new Response(null, {
        status: 416,
        headers: { ...headers, "content-range": `bytes */${size}` },
      });
    }
    const start = range?.start ?? 0;
    const length = range ? range.end - range.start + 1 : size;
    const status = range ? 206 : 200;
    headers["content-length"] = String(length);
    if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
    if (req.method === "HEAD" || length === 0) {
      return new Response(null, { status, headers });
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(real, { read: true });
    } catch {
      return plain(404, "not found");
    }
    return new Response(fileBody(file, start, length), { status, headers });
  };

  const { promise: listening, resolve: onListen } = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 8094,
    onListen: () => onListen(),
    onError: (err) => {
      log.error("file server request failed", { error: err });
      return plain(500, "internal error");
    },
  }, handler);
  await listening;
  const addr = server.addr as Deno.NetAddr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const baseUrl = `http://${host}:${addr.port}${prefix}`;
  log.info("file server listening", { url: baseUrl, root: rootReal });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= server.shutdown().then(() => server.finished);
    return closing;
  };
  return {
    addr: { hostname: addr.hostname, port: addr.port },
    baseUrl,
    urlFor(digest: string) {
      const m = /^([a-z0-9]+):([0-9a-f]+)$/.exec(digest);
      if (!m || BLOB_ALGORITHMS[m[1] ?? ""] !== m[2]?.length) {
        throw new AosError("invalidArgument", `Cannot build blob URL: bad digest "${digest}"`);
      }
      return `${baseUrl}/${m[1]}/${m[2]}`;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

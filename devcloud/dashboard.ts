/**
 * The devcloud dashboard: a read-only web page on loopback HTTP showing units, nodes, items,
 * instances, recent alerts and a live chart of node CPU and RAM.
 *
 * - `GET /` the page, `GET /app.js`, `GET /style.css` (all served from here: no CDN)
 * - `GET /api/state` → {@link DashboardState}
 * - `GET /api/events` → Server-Sent Events: an `event: state` with the whole state on connect
 *   and after every change devcloud reports (coalesced), `: ping` comments to keep it open
 *
 * Unit strings are untrusted: the page builds its DOM with `textContent` only, the JSON escapes
 * `<`, `>` and `&`, and a Content-Security-Policy allows only this origin's script and style.
 * @module
 */
import { type Logger, nullLogger } from "@aos/shared/core";
import type { Devcloud, DevcloudEvent } from "./cloud.ts";
import {
  buildDashboardState,
  type DashboardState,
  type DashboardStateLimits,
  MonitoringHistory,
} from "./dashboard_state.ts";
import { APP_JS, INDEX_HTML, STYLE_CSS } from "./dashboard/assets.ts";

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** The devcloud to show. */
  devcloud: Devcloud;
  /** Listen host (`localhost` = 127.0.0.1). */
  hostname: string;
  /** Listen port (0: ephemeral). */
  port: number;
  /** Logger. */
  logger?: Logger;
  /** Monitoring points kept per node (default 120). */
  maxPoints?: number;
  /** Bounds of the state. */
  limits?: DashboardStateLimits;
  /** Coalesce changes for this long before pushing the state (default 200 ms). */
  pushDelayMs?: number;
  /** Keep-alive comment period of the event stream (default 15 s). */
  heartbeatMs?: number;
  /** Concurrent event streams (default 16); more are refused with 503. */
  maxClients?: number;
}

/** A running dashboard. */
export interface Dashboard extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:9080`. */
  readonly url: string;
  /** Open event streams. */
  readonly clients: number;
  /** The state as `GET /api/state` answers it now. */
  state(): DashboardState;
  /** Stops the server and ends every event stream. */
  close(): Promise<void>;
}

/** Events that change what the page shows. */
function changes(e: DevcloudEvent): boolean {
  switch (e.type) {
    case "connected":
    case "disconnected":
    case "deployed":
    case "removed":
      return true;
    case "message":
      return e.message.messageType === "unitStatus" || e.message.messageType === "alerts" ||
        e.message.messageType === "monitoringData";
    default:
      return false;
  }
}

/** JSON that stays inert even if someone pastes it into HTML. */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

function reply(status: number, type: string, body: string): Response {
  return new Response(body, { status, headers: { ...SECURITY_HEADERS, "content-type": type } });
}

interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
  closed: boolean;
}

/** Starts the dashboard on `hostname:port`. */
export function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { devcloud } = options;
  const log = (options.logger ?? nullLogger).child({ module: "dashboard" });
  const history = new MonitoringHistory(
    options.maxPoints === undefined ? {} : { maxPoints: options.maxPoints },
  );
  // devcloud keeps the latest monitoring per unit: start the series with it.
  for (const u of devcloud.units()) if (u.monitoring) history.add(u.systemId, u.monitoring);

  const state = (): DashboardState =>
    buildDashboardState({
      status: devcloud.status(),
      alerts: devcloud.alerts(),
      history,
      now: new Date(),
    }, options.limits ?? {});

  const enc = new TextEncoder();
  const clients = new Set<Client>();
  const maxClients = options.maxClients ?? 16;
  let pushTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const write = (c: Client, chunk: string) => {
    if (c.closed) return;
    try {
      c.controller.enqueue(enc.encode(chunk));
    } catch {
      c.closed = true;
      clients.delete(c);
    }
  };
  const end = (c: Client) => {
    clients.delete(c);
    if (c.closed) return;
    c.closed = true;
    try {
      c.controller.close();
    } catch {
      // Already closed by the reader going away.
    }
  };
  const stateEvent = () => `event: state\ndata: ${safeJson(state())}\n\n`;
  const push = () => {
    pushTimer = undefined;
    if (clients.size === 0) return;
    let chunk: string;
    try {
      chunk = stateEvent();
    } catch (err) {
      log.error("Cannot build the dashboard state", { error: String(err) });
      return;
    }
    for (const c of [...clients]) write(c, chunk);
  };
  const unsubscribe = devcloud.subscribe((e) => {
    if (e.type === "message" && e.message.messageType === "monitoringData") {
      history.add(e.systemId, e.message);
    }
    if (!changes(e) || closed || pushTimer !== undefined || clients.size === 0) return;
    pushTimer = setTimeout(push, options.pushDelayMs ?? 200);
  });
  const heartbeat = setInterval(() => {
    for (const c of [...clients]) write(c, ": ping\n\n");
  }, options.heartbeatMs ?? 15_000);

  const events = (): Response => {
    if (clients.size >= maxClients) {
      return reply(503, "text/plain; charset=utf-8", "too many dashboard streams\n");
    }
    let client: Client | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        client = { controller, closed: false };
        clients.add(client);
        // The client retries after 2 s when the stream drops; the page polls meanwhile.
        write(client, `retry: 2000\n${stateEvent()}`);
      },
      cancel() {
        if (client) {
          client.closed = true;
          clients.delete(client);
        }
      },
    });
    return new Response(body, {
      headers: {
        ...SECURITY_HEADERS,
        "content-type": "text/event-stream; charset=utf-8",
        "x-accel-buffering": "no",
      },
    });
  };

  const handler = (req: Request): Response => {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return reply(405, "text/plain; charset=utf-8", "read-only dashboard\n");
    }
    switch (url.pathname) {
      case "/":
      case "/index.html":
        return reply(200, "text/html; charset=utf-8", INDEX_HTML);
      case "/app.js":
        return reply(200, "text/javascript; charset=utf-8", APP_JS);
      case "/style.css":
        return reply(200, "text/css; charset=utf-8", STYLE_CSS);
      case "/api/state":
        return reply(200, "application/json", safeJson(state()));
      case "/api/events":
        return events();
      default:
        return reply(404, "text/plain; charset=utf-8", "not found\n");
    }
  };

  return new Promise((resolve, reject) => {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: options.hostname === "localhost" ? "127.0.0.1" : options.hostname,
        port: options.port,
        onListen: (addr) => {
          const close = async () => {
            if (closed) return;
            closed = true;
            unsubscribe();
            clearTimeout(pushTimer);
            clearInterval(heartbeat);
            // Open streams would keep the shutdown waiting.
            for (const c of [...clients]) end(c);
            await server.shutdown();
          };
          const url = `http://${addr.hostname}:${addr.port}`;
          log.info("dashboard listening", { url });
          resolve({
            url,
            get clients() {
              return clients.size;
            },
            state,
            close,
            [Symbol.asyncDispose]: close,
          });
        },
        onError: (err) => {
          log.error("dashboard request failed", { error: String(err) });
          return reply(500, "text/plain; charset=utf-8", "internal error\n");
        },
      }, handler);
    } catch (err) {
      unsubscribe();
      clearInterval(heartbeat);
      reject(err);
    }
  });
}

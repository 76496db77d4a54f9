/**
 * The admin API the `devcloud` CLI talks to: plain HTTP on loopback, every request carrying
 * `Authorization: Bearer <token>` (the token file in the working dir is readable by its owner
 * only, so other local users cannot deploy).
 *
 * - `GET /api/status` → {@link DevcloudStatus}
 * - `GET /api/alerts?limit=N` → the last N alerts (all units)
 * - `POST /api/deploy {service, instances?}` → the {@link ServiceRecord}
 * - `POST /api/remove {service}` → `{}`
 *
 * Errors answer `{error}` with 400 (bad request), 401, 404 (unknown service/route) or 500.
 * @module
 */
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { AosError, type Logger, nullLogger } from "@aos/shared/core";
import { toHex } from "@aos/shared/crypto";
import type { Devcloud } from "./cloud.ts";

/** Options of {@link startAdminServer}. */
export interface AdminServerOptions {
  /** The devcloud to drive. */
  devcloud: Devcloud;
  /** Listen host (`localhost` = 127.0.0.1). */
  hostname: string;
  /** Listen port (0: ephemeral). */
  port: number;
  /** Bearer token the requests must carry. */
  token: string;
  /** Logger. */
  logger?: Logger;
}

/** A running admin server. */
export interface AdminServer extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:9081`. */
  readonly url: string;
  /** Stops it. */
  close(): Promise<void>;
}

const deploySchema = z.object({
  service: z.string().check(z.minLength(1), z.maxLength(64)),
  instances: z.optional(z.number().check(z.int(), z.gte(0), z.lte(1000))),
});
const removeSchema = z.object({ service: z.string().check(z.minLength(1), z.maxLength(64)) });

const STATUS_BY_CODE: Partial<Record<string, number>> = {
  invalidArgument: 400,
  notFound: 404,
  alreadyExist: 409,
  outOfRange: 400,
};

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

async function readBody(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.length > 64 * 1024) throw new AosError("outOfRange", "request body exceeds 64 KiB");
  try {
    return JSON.parse(text);
  } catch {
    throw new AosError("invalidArgument", "request body is not JSON");
  }
}

function parse<S extends z.ZodMiniType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new AosError("invalidArgument", `${issue?.path.join(".") || "body"}: ${issue?.message}`);
  }
  return r.data;
}

/** Reads the admin token of a working dir, creating it (mode 0600) when absent. */
export async function ensureAdminToken(path: string): Promise<string> {
  try {
    const t = (await Deno.readTextFile(path)).trim();
    if (t) return t;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const token = toHex(crypto.getRandomValues(new Uint8Array(24)));
  await Deno.writeTextFile(path, token + "\n", { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  return token;
}

/** Starts the admin API. */
export function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { devcloud, token } = options;
  const log = (options.logger ?? nullLogger).child({ module: "admin" });
  const handler = async (req: Request): Promise<Response> => {
    if (req.headers.get("authorization") !== `Bearer ${token}`) {
      return json(401, { error: "missing or wrong admin token" });
    }
    const url = new URL(req.url);
    const route = `${req.method} ${url.pathname}`;
    try {
      switch (route) {
        case "GET /api/status":
          return json(200, devcloud.status());
        case "GET /api/alerts": {
          const limit = Number(url.searchParams.get("limit") ?? "50");
          if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) {
            throw new AosError("invalidArgument", "limit must be 1..10000");
          }
          return json(200, devcloud.alerts().slice(-limit));
        }
        case "POST /api/deploy": {
          const body = parse(deploySchema, await readBody(req));
          const rec = await devcloud.deploy(
            body.service,
            body.instances === undefined ? {} : { instances: body.instances },
          );
          return json(200, rec);
        }
        case "POST /api/remove": {
          const body = parse(removeSchema, await readBody(req));
          await devcloud.remove(body.service);
          return json(200, {});
        }
        default:
          return json(404, { error: `no route ${route}` });
      }
    } catch (err) {
      const e = err instanceof AosError ? err : new AosError("failed", String(err));
      log.warn("admin request failed", { route, error: e.message });
      return json(STATUS_BY_CODE[e.code] ?? 500, { error: e.message });
    }
  };
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: options.hostname === "localhost" ? "127.0.0.1" : options.hostname,
      port: options.port,
      onListen: (addr) => {
        const close = async () => {
          await server.shutdown();
        };
        resolve({
          url: `http://${addr.hostname}:${addr.port}`,
          close,
          [Symbol.asyncDispose]: close,
        });
      },
    }, handler);
  });
}

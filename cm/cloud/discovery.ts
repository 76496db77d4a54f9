/**
 * Service discovery: which URL to ask (§1.1 of the protocol digest) and the mTLS POST itself.
 * @module
 */
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { AosError, type Logger, nullLogger } from "@aos/shared/core";
import { parseCertificate } from "@aos/shared/crypto";
import { PROTOCOL_VERSION } from "@aos/shared/cloudprotocol";

/** Where a unit's discovery URL may come from. */
export interface DiscoveryUrlSources {
  /** `serviceDiscoveryUrl` of `cm.cfg`: the fallback, and always the source of the path. */
  serviceDiscoveryUrl: string;
  /** `overrideServiceDiscoveryUrl` of `cm.cfg`: wins over everything when set. */
  overrideServiceDiscoveryUrl: string;
  /** The unit's `online` certificate (PEM, leaf first), when it has one. */
  onlineCertPem?: string | undefined;
}

/** The URL chosen and why. */
export interface DiscoveryUrl {
  /** The URL the POST goes to. */
  url: string;
  /** `override`, `issuerAltName`, `subjectOrganization` or `config`. */
  source: "override" | "issuerAltName" | "subjectOrganization" | "config";
}

/** URIs of the issuer-alternative-name extension and the subject `O=` of a PEM certificate. */
export function discoveryHintsFromCert(pem: string): { uris: string[]; organization?: string } {
  const cert = parseCertificate(pem);
  const uris = cert.issuerAltNames.filter((n) => n.type === "uri").map((n) => n.value);
  const organization = cert.subjectField("O")[0];
  return organization ? { uris, organization } : { uris };
}

function withConfigPath(base: string, configUrl: URL): string {
  const u = new URL(base);
  u.pathname = configUrl.pathname;
  u.search = configUrl.search;
  return u.href;
}

/**
 * Picks the discovery URL as AosCore does: `overrideServiceDiscoveryUrl`; else the first URI of
 * the `online` certificate's issuer alternative name; else `https://<subject O>:9000`; else
 * `serviceDiscoveryUrl`. Scheme, host and port come from the choice, the path from
 * `serviceDiscoveryUrl` (default `/sd/v7/`). An override that names its own path keeps it: the
 * operator wrote the whole URL (AosCore would replace it; nobody sets one expecting that).
 * An unreadable certificate is logged and skipped, like a missing one.
 */
export function chooseDiscoveryUrl(
  sources: DiscoveryUrlSources,
  logger: Logger = nullLogger,
): DiscoveryUrl {
  let configUrl: URL;
  try {
    configUrl = new URL(sources.serviceDiscoveryUrl);
  } catch (err) {
    throw new AosError(
      "invalidArgument",
      `Invalid serviceDiscoveryUrl "${sources.serviceDiscoveryUrl}"`,
      { cause: err },
    );
  }
  if (sources.overrideServiceDiscoveryUrl) {
    let override: URL;
    try {
      override = new URL(sources.overrideServiceDiscoveryUrl);
    } catch (err) {
      throw new AosError(
        "invalidArgument",
        `Invalid overrideServiceDiscoveryUrl "${sources.overrideServiceDiscoveryUrl}"`,
        { cause: err },
      );
    }
    const url = override.pathname !== "/"
      ? override.href
      : withConfigPath(override.href, configUrl);
    return { url, source: "override" };
  }
  if (sources.onlineCertPem) {
    try {
      const hints = discoveryHintsFromCert(sources.onlineCertPem);
      for (const uri of hints.uris) {
        try {
          return { url: withConfigPath(uri, configUrl), source: "issuerAltName" };
        } catch {
          logger.warn("Ignoring an unparsable issuer alternative name URI", { uri });
        }
      }
      if (hints.organization) {
        const url = withConfigPath(`https://${hints.organization}:9000`, configUrl);
        return { url, source: "subjectOrganization" };
      }
    } catch (err) {
      logger.warn("Cannot read discovery hints from the online certificate", { error: err });
    }
  }
  return { url: configUrl.href, source: "config" };
}

// ---------------------------------------------------------------------------------------------
// request / response

/** `errorCode` values of a discovery response. */
export const DISCOVERY_ERROR_CODES = {
  0: "noError",
  1: "redirect",
  2: "repeatLater",
  3: "error",
} as const;

const RESPONSE_KEYS = [
  "version",
  "systemId",
  "nextRequestDelay",
  "connectionInfo",
  "authToken",
  "errorCode",
] as const;

/** Matches keys case-insensitively (AosCore does) and treats `null` as absent. */
function canonicalKeys(value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const byLower = new Map<string, string>(RESPONSE_KEYS.map((k) => [k.toLowerCase(), k]));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const key = byLower.get(k.toLowerCase());
    if (key !== undefined && v !== null) out[key] = v;
  }
  return out;
}

const int = z.number().check(z.int());

/** A discovery response, validated; missing scalars read as 0/"" like AosCore. */
export const discoveryResponseSchema = z.pipe(
  z.transform(canonicalKeys),
  z.object({
    version: z._default(int, 0),
    systemId: z._default(z.string().check(z.maxLength(256)), ""),
    nextRequestDelay: z._default(
      z.number().check(z.int(), z.gte(0), z.lte(24 * 3600_000)),
      0,
    ),
    connectionInfo: z._default(
      z.array(z.string().check(z.maxLength(2048))).check(z.maxLength(64)),
      [],
    ),
    authToken: z._default(z.string().check(z.maxLength(16384)), ""),
    errorCode: z._default(int, 0),
  }),
);

/** A validated discovery response. */
export type DiscoveryResponse = z.output<typeof discoveryResponseSchema>;

/** PEM material for the mTLS of the cloud link (the unit's `online` certificate). */
export interface CloudCredentials {
  /** Certificate chain, leaf first (PEM). */
  cert: string;
  /** Private key (PEM). */
  key: string;
  /** The CA bundle that verifies the cloud (`caCert`, PEM). */
  ca: string;
}

/** Options of {@link requestDiscovery}. */
export interface DiscoveryRequestOptions {
  /** The URL from {@link chooseDiscoveryUrl}. */
  url: string;
  /** The unit's system id. */
  systemId: string;
  /** mTLS material; `http:` URLs (tests only) send no certificate. */
  credentials: CloudCredentials;
  /** Whole-request deadline in ms. */
  timeoutMs: number;
  /** Largest accepted response body (default 64 KiB). */
  maxResponseBytes?: number;
  /** Stops the request. */
  signal?: AbortSignal;
}

async function readBounded(response: Response, max: number, url: string): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > max) {
        throw new AosError(
          "outOfRange",
          `Service discovery at ${url} failed: response exceeds ${max} bytes`,
        );
      }
      chunks.push(value);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}

/**
 * POSTs `{version: 7, systemId, supportedProtocols: ["wss"]}` over HTTP/1.1 with mTLS (a fresh
 * client, so a fresh TLS session, per request as AosCore does) and returns the validated
 * response. Anything but HTTP 200 with a valid JSON body is an `AosError`.
 */
export async function requestDiscovery(
  options: DiscoveryRequestOptions,
): Promise<DiscoveryResponse> {
  const { url, credentials } = options;
  const client = Deno.createHttpClient({
    caCerts: [credentials.ca],
    cert: credentials.cert,
    key: credentials.key,
    http1: true,
    http2: false,
  });
  const controller = new AbortController();
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new AosError("timeout", `Service discovery at ${url} timed out`)),
    options.timeoutMs,
  );
  try {
    const response = await fetch(url, {
      method: "POST",
      client,
      signal: controller.signal,
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({
        version: PROTOCOL_VERSION,
        systemId: options.systemId,
        supportedProtocols: ["wss"],
      }),
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new AosError("failed", `Service discovery at ${url} failed: HTTP ${response.status}`);
    }
    const text = await readBounded(response, options.maxResponseBytes ?? 64 * 1024, url);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new AosError(
        "invalidArgument",
        `Service discovery at ${url} failed: response is not JSON`,
        { cause: err },
      );
    }
    const parsed = discoveryResponseSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AosError(
        "invalidArgument",
        `Service discovery at ${url} failed: invalid response (${
          issue?.path.join(".")
        }: ${issue?.message})`,
      );
    }
    return parsed.data;
  } catch (err) {
    if (err instanceof AosError) throw err;
    // The deadline (ours) reads better than fetch's AbortError.
    const reason = controller.signal.reason;
    if (controller.signal.aborted && reason instanceof AosError) throw reason;
    throw new AosError(
      "failed",
      `Service discovery at ${url} failed: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
    client.close();
  }
}

/**
 * The egress allow-list: which hosts the CM may dial (discovery, WebSocket, blob downloads).
 * @module
 */
import { AosError } from "@aos/shared/core";

/** A parsed allow-list entry. */
export interface HostPattern {
  /** Lower-case host name or IP literal; for a wildcard the domain after `*.`. */
  host: string;
  /** True for `*.domain`: any sub-domain (at any depth) of `host`, not `host` itself. */
  wildcard: boolean;
  /** Port restriction; `undefined` matches any port. */
  port: number | undefined;
}

const PATTERN =
  /^(\*\.)?([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;

/**
 * Parses `host`, `*.domain`, `host:port`, `*.domain:port` or `[v6]:port`. Throws
 * `AosError("invalidArgument")` on anything else.
 */
export function parseHostPattern(pattern: string): HostPattern {
  const m = PATTERN.exec(pattern.trim());
  const port = m?.[3] === undefined ? undefined : Number(m[3]);
  if (!m || (port !== undefined && (port < 1 || port > 65535)) || m[2]!.includes("..")) {
    throw new AosError(
      "invalidArgument",
      `Invalid allowed host "${pattern}": expected "host", "*.domain" or either with ":port"`,
    );
  }
  return { host: m[2]!.toLowerCase(), wildcard: m[1] !== undefined, port };
}

const DEFAULT_PORTS: Record<string, number> = {
  "https:": 443,
  "wss:": 443,
  "http:": 80,
  "ws:": 80,
};

/** Host name and effective port of a URL (default port of its scheme when absent). */
export function urlHostPort(url: string | URL): { host: string; port: number } {
  let u: URL;
  try {
    u = typeof url === "string" ? new URL(url) : url;
  } catch (err) {
    throw new AosError("invalidArgument", `Invalid URL "${String(url)}"`, { cause: err });
  }
  const port = u.port !== "" ? Number(u.port) : DEFAULT_PORTS[u.protocol];
  if (port === undefined || u.hostname === "") {
    throw new AosError("invalidArgument", `Invalid URL "${u.href}": no host or unknown scheme`);
  }
  // A trailing dot names the same host; strip it so "a.com." cannot dodge a pattern.
  return { host: u.hostname.toLowerCase().replace(/\.$/, ""), port };
}

/** Whether one parsed pattern admits `host:port`. */
export function patternMatches(pattern: HostPattern, host: string, port: number): boolean {
  if (pattern.port !== undefined && pattern.port !== port) return false;
  if (!pattern.wildcard) return host === pattern.host;
  return host.endsWith("." + pattern.host);
}

/**
 * Whether `url`'s host (and port) matches one of `patterns` (`host`, `*.domain`, optional
 * `:port`; see {@link parseHostPattern}). `*.domain` admits every sub-domain at any depth, but
 * not the bare domain (list that too when wanted). Invalid URLs and patterns do not match.
 */
export function hostAllowed(
  url: string | URL,
  patterns: readonly (string | HostPattern)[],
): boolean {
  let target: { host: string; port: number };
  try {
    target = urlHostPort(url);
  } catch {
    return false;
  }
  return patterns.some((p) => {
    try {
      const parsed = typeof p === "string" ? parseHostPattern(p) : p;
      return patternMatches(parsed, target.host, target.port);
    } catch {
      return false;
    }
  });
}

/**
 * The patterns the cloud link admits: the configured `allowedHosts` plus the exact host:port of
 * the configured discovery URLs (the operator named those, so they need no second listing).
 */
export function linkAllowList(config: {
  allowedHosts: readonly string[];
  serviceDiscoveryUrl: string;
  overrideServiceDiscoveryUrl: string;
}): HostPattern[] {
  const out = config.allowedHosts.map(parseHostPattern);
  for (const url of [config.serviceDiscoveryUrl, config.overrideServiceDiscoveryUrl]) {
    if (!url) continue;
    try {
      const { host, port } = urlHostPort(url);
      out.push({ host, wildcard: false, port });
    } catch {
      // an unparsable discovery URL fails later with its own message
    }
  }
  return out;
}

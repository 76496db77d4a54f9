/**
 * The CM's cloud link (AosEdge protocol v7 over WSS).
 *
 * {@link CloudLink} finds the cloud through service discovery (URL from the override, the
 * `online` certificate or the config), opens a WebSocket with mTLS and the discovery token,
 * acks every cloud message before handing it to the handlers (each txn once), resends unacked
 * messages up to 3 times, honours `nack`, pairs `requestBlobUrls` with `blobUrls`, keeps a
 * ping watchdog and reconnects with AosCore's back-off. Messages sent with `persist` go through
 * a SQLite outbox ({@link CLOUD_OUTBOX_MIGRATION}) and survive a restart. Every host dialled
 * must pass {@link hostAllowed} against `allowedHosts` (the image downloader uses the same
 * matcher). The caller sends the full unit status on every `connect` event.
 *
 * ```ts
 * await using link = new CloudLink({ systemId, config, credentials, db, logger });
 * link.on("connect", () => link.send(buildUnitStatus(full), { persist: { group: "unitStatus", supersede: true } }));
 * link.onMessage((msg) => dispatch(msg));
 * link.start();
 * const blobs = await link.requestBlobUrls(["sha256:…"]);
 * ```
 * @module
 */
export {
  hostAllowed,
  type HostPattern,
  linkAllowList,
  parseHostPattern,
  patternMatches,
  urlHostPort,
} from "./allowed_hosts.ts";
export {
  chooseDiscoveryUrl,
  type CloudCredentials,
  DISCOVERY_ERROR_CODES,
  discoveryHintsFromCert,
  type DiscoveryRequestOptions,
  type DiscoveryResponse,
  discoveryResponseSchema,
  type DiscoveryUrl,
  type DiscoveryUrlSources,
  requestDiscovery,
} from "./discovery.ts";
export {
  CLOUD_OUTBOX_MIGRATION,
  DEFAULT_OUTBOX_LIMITS,
  Outbox,
  type OutboxAddResult,
  type OutboxEntry,
  type OutboxLimits,
} from "./outbox.ts";
export {
  CLOUD_TO_UNIT_TYPES,
  CloudLink,
  type CloudLinkConfig,
  type CloudLinkEvents,
  type CloudLinkOptions,
  type CloudLinkTiming,
  type CloudMessageHandler,
  DEFAULT_CLOUD_LINK_TIMING,
  type PersistOptions,
  type SendOptions,
} from "./link.ts";
export { RecentSet } from "./recent_set.ts";

/**
 * `@aos/devcloud`: a local stand-in for AosCloud for development, demos and tests
 * (discovery, WSS protocol v7, blobs, dev PKI, dashboard). Not a production cloud.
 * @module
 */
export * from "./config.ts";

/**
 * Read-only HTTP server for content-addressed blobs.
 *
 * CM exposes its install directory with it so that the SMs of the unit fetch image blobs by
 * URL (`http://<host>:8094/blobs/sha256/<hex>`). It streams files, answers single byte ranges
 * (so downloads resume), HEAD, and strong validators (the digest as ETag), and serves nothing
 * but `<prefix>/<alg>/<hex>` files that really live under its root.
 * @module
 */
export * from "./file_server.ts";

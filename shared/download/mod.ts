/**
 * Downloader for content-addressed blobs, shared by SM (image blobs from CM's file server) and
 * CM (blobs from the cloud's URLs).
 *
 * It streams `http(s)://` or `file://` sources to `<dir>/sha256/<hex>` while hashing (SHA-256,
 * and SHA3-256 on request), retries with back-off, resumes a partial file with `Range` and
 * `If-Range` (also after a process restart, thanks to a small `.part.json` beside it), reports
 * progress shaped like the cloud `downloadProgressAlert`, cancels per digest, and lets
 * concurrent callers of the same digest share one transfer. Size and digest are checked before
 * the file gets its final name.
 * @module
 */
export * from "./downloader.ts";

/**
 * Shared crypto: key pairs and PEM, CSRs, certificate parsing and creation, chain verification
 * against root CAs, streaming AES-CBC/GCM for update blobs, blob signature verification against
 * the cloud's certificate chains, and hex digests (SHA-256, SHA3-224, SHA3-256).
 *
 * Built on WebCrypto and `node:crypto` (OpenSSL underneath); X.509 and PKCS#10 structures are
 * read and written with a small strict DER codec of our own (`der.ts`), which keeps the
 * runtime free of ASN.1 libraries. Every failure is an `AosError`; chain and signature failures are
 * `ChainError`/`SignatureError` with a `reason` field so callers can tell them apart.
 * @module
 */
export * from "./pem.ts";
export * from "./hash.ts";
export * from "./keys.ts";
export * from "./certificate.ts";
export * from "./csr.ts";
export * from "./chain.ts";
export * from "./aes.ts";
export * from "./signature.ts";

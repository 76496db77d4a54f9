/**
 * CM's image manager (spec cm.md §6): turns the desired status' update items into verified
 * blobs on disk that the blob file server hands to the SMs.
 *
 * For each item it walks the OCI index → manifests → config, item config and layers and runs
 * EnsureBlob per blob: reuse a verified installed blob, else ask the cloud link for the blob's
 * URLs ({@link BlobInfoSource}), reserve space, download (resumable, with
 * `downloadProgressAlert`s, only from hosts the allow-list accepts), check the file's SHA3-256,
 * AES-decrypt into a temp file, verify the signature against the desired status' chains and the
 * unit's root CA, check the SHA-256 digest, and only then give the blob its final name under
 * {@link ImageManager.blobRoot}. Item states (`downloading → pending → installing → installed`,
 * `failed`, `removed`) live in the `imagemanager` table ({@link CM_IMAGE_MIGRATION}); removed
 * items stay until `updateItemTtl` or until space is needed, oldest first.
 *
 * ```ts
 * await using images = await createImageManager({ database, installPath, downloadPath,
 *   blobInfo: cloudLink, caCert, space, allowHost, onAlert });
 * await using files = await startFileServer({ root: images.blobRoot, port: 8094 });
 * const statuses = await images.downloadItems(desired.items, { certificates, chains });
 * await images.installItems(desired.items);
 * ```
 * @module
 */
export {
  type BlobRef,
  CM_IMAGE_MIGRATION,
  CM_IMAGE_MIGRATIONS,
  ImageItemTable,
  type ItemRow,
  type ItemState,
} from "./db.ts";
export {
  createImageManager,
  ImageManager,
  type ImageManagerOptions,
  imageManagerPaths,
  MAX_MANIFEST_SIZE,
  MAX_UPDATE_ITEMS,
  type RemovedItem,
} from "./image_manager.ts";
export { BlobStore, type BlobStoreOptions, type EnsureResult, shortDigest } from "./blob_store.ts";
export type {
  BlobInfo,
  BlobInfoSource,
  BlobTrust,
  DesiredItem,
  DownloadAlertSink,
  DownloadProgressAlert,
  ItemStatus,
} from "./types.ts";

/**
 * The SM image manager: update items (OCI images named by the CM's manifest digest) pulled from
 * the CM's blob server, verified, unpacked into a content-addressed store under `imagePath`
 * (`blobs/<alg>/<hex>`, `layers/<alg>/<hex>/layer`), registered in `servicemanager.db` only once
 * complete, kept for `updateItemTtl` after removal, evicted oldest-first under space pressure,
 * and at most two versions per item.
 *
 * ```ts
 * await using images = await createImageManager({ imagePath, db, downloader, blobSource, space });
 * const item = await images.installItem({ itemId, version, manifestDigest });
 * // item.layerPaths: overlay lowerdirs, top-most first; item.itemConfig, item.imageConfig
 * ```
 * @module
 */
export {
  type BlobSource,
  createImageManager,
  type ImageEvent,
  ImageManager,
  type ImageManagerOptions,
  type InstalledItem,
  type InstallRequest,
  type ItemBlobPaths,
  type ItemType,
  type ValidationResult,
} from "./image_manager.ts";
export { ImageLayout } from "./layout.ts";

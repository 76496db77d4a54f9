/**
 * Partition-aware disk space allocation with eviction of outdated items.
 *
 * A {@link SpaceRegistry} (one per process, passed to every user) hands out a
 * {@link SpaceAllocator} per directory. Allocators whose directories live on the same
 * filesystem share one accounting: free space is read with `statfs` at the start of an
 * allocation burst and reduced by every reservation until all of them are accepted or released.
 * An allocator may be capped at a percentage of its partition. When space is short, items that
 * owners registered as outdated are evicted oldest first through the owner's remove callback.
 *
 * ```ts
 * const registry = createSpaceRegistry({ logger });
 * const images = await registry.allocator({ path: imagesDir, remove: (id) => removeItem(id) });
 * using space = await images.allocate(blobSize);
 * await download(url, file);
 * space.accept();
 * ```
 * @module
 */
export {
  createSpaceRegistry,
  DEFAULT_MAX_OUTDATED_ITEMS,
  type ItemRemover,
  type PartitionInfo,
  type Space,
  SpaceAllocator,
  type SpaceAllocatorOptions,
  SpaceRegistry,
  type SpaceRegistryOptions,
  type SpaceState,
} from "./allocator.ts";
export { type PartitionSize, realSpaceFs, type SpaceFs } from "./fs.ts";

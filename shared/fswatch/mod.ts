/**
 * Debounced file watching for state and config files.
 *
 * {@link watchFile} watches a file through its parent directory, so an atomic replace (write a
 * temporary file, rename it over the target) and a file created later are both seen. A burst of
 * events becomes one {@link FileChange} after a quiet period; `access` events are ignored so a
 * consumer that reloads on change does not wake itself.
 *
 * ```ts
 * await using watcher = watchFile(nodeConfigFile, { signal });
 * for await (const change of watcher) if (change.exists) await reload();
 * ```
 * @module
 */
export {
  DEFAULT_DEBOUNCE_MS,
  type FileChange,
  FileWatcher,
  watchFile,
  type WatchFileOptions,
} from "./watcher.ts";

/**
 * Safe streaming extraction of OCI image layers and directory tree digests.
 *
 * {@link extractLayer} pipes a (gzip) tar stream through our own streaming tar reader into a
 * target directory, confined to it (no absolute paths, no `..`, no symlink or hardlink escapes,
 * no device nodes unless allowed), bounded against decompression bombs, and applying OCI
 * whiteouts either onto a lower dir or as overlayfs whiteouts. Large gzip layer files are
 * inflated in a Worker ({@link gunzipInWorker}), so inflating overlaps with creating files.
 * {@link digestTree} and {@link aosDirDigest} hash a tree deterministically to compare or record
 * it.
 * @module
 */
export * from "./tar_reader.ts";
export * from "./extract.ts";
export * from "./gunzip_worker.ts";
export * from "./dir_digest.ts";

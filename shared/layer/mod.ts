/**
 * Safe streaming extraction of OCI image layers and directory tree digests.
 *
 * {@link extractLayer} pipes a (gzip) tar stream through our own streaming tar reader into a
 * target directory, confined to it (no absolute paths, no `..`, no symlink or hardlink escapes,
 * no device nodes unless allowed), bounded against decompression bombs, and applying OCI
 * whiteouts either onto a lower dir or as overlayfs whiteouts. {@link digestTree} and
 * {@link aosDirDigest} hash a tree deterministically to compare or record it.
 * @module
 */
export * from "./tar_reader.ts";
export * from "./extract.ts";
export * from "./dir_digest.ts";

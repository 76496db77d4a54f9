/**
 * OCI and Docker media types, and the Aos extensions met in AosCore images.
 * @module
 */

/** Media types of OCI image-spec v1 and their Docker v2 schema 2 equivalents. */
export const MediaType = {
  /** OCI image index. */
  ociIndex: "application/vnd.oci.image.index.v1+json",
  /** OCI image manifest. */
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  /** OCI image config. */
  ociConfig: "application/vnd.oci.image.config.v1+json",
  /** OCI uncompressed layer. */
  ociLayerTar: "application/vnd.oci.image.layer.v1.tar",
  /** OCI gzip layer. */
  ociLayerTarGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  /** OCI zstd layer (recognised, not extractable here). */
  ociLayerTarZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  /** OCI non-distributable layers (deprecated in the spec, still seen). */
  ociLayerNondistributableTar: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  /** OCI non-distributable gzip layer. */
  ociLayerNondistributableTarGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  /** The OCI empty descriptor (`{}`). */
  ociEmpty: "application/vnd.oci.empty.v1+json",
  /** Docker manifest list (the index equivalent). */
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  /** Docker image manifest. */
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  /** Docker container config. */
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  /** Docker gzip layer. */
  dockerLayerTarGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  /** Docker foreign layer. */
  dockerForeignLayerTarGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  /** Aos item config blob, referenced by the manifest's `aosItemConfig` descriptor (AosCore 9.x). */
  aosItemConfig: "application/vnd.aos.item.config.v1+json",
  /** Aos service config: the pre-9.x name of the item config, referenced by `aosService`. */
  aosServiceConfig: "application/vnd.aos.service.config.v1+json",
  /** Aos full component image, gzip. */
  aosComponentFullGzip: "application/vnd.aos.image.component.full.v1+gzip",
  /** Aos full component image, squashfs. */
  aosComponentFullSquashfs: "application/vnd.aos.image.component.full.v1+squashfs",
  /** Aos incremental component image, squashfs. */
  aosComponentIncSquashfs: "application/vnd.aos.image.component.inc.v1+squashfs",
} as const;

/** One of the known media types. */
export type KnownMediaType = typeof MediaType[keyof typeof MediaType];

/** How a layer blob is compressed, as far as the extractor is concerned. */
export type LayerCompression = "none" | "gzip";

const LAYER_COMPRESSION: Record<string, LayerCompression> = {
  [MediaType.ociLayerTar]: "none",
  [MediaType.ociLayerNondistributableTar]: "none",
  [MediaType.ociLayerTarGzip]: "gzip",
  [MediaType.ociLayerNondistributableTarGzip]: "gzip",
  [MediaType.dockerLayerTarGzip]: "gzip",
  [MediaType.dockerForeignLayerTarGzip]: "gzip",
};

/**
 * The compression of an extractable layer media type, or `undefined` when the media type is not
 * a tar layer we can unpack (zstd, component images, configs).
 */
export function layerCompression(mediaType: string): LayerCompression | undefined {
  return LAYER_COMPRESSION[mediaType];
}

/** True for the index media types (OCI index and Docker manifest list). */
export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

/** True for the manifest media types (OCI and Docker). */
export function isManifestMediaType(mediaType: string): boolean {
  return mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest;
}

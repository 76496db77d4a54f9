/**
 * Where the image store keeps things under `imagePath` (upstream layout, plus a staging dir).
 * @module
 */
import { join } from "node:path";
import { parseDigest } from "@aos/shared/oci";

/**
 * Paths of the image store. Every path built from a digest goes through `parseDigest`, which
 * accepts only `<alg>:<lowercase hex of the right length>`, so no digest can name a path
 * outside the store.
 *
 * ```
 * blobs/<alg>/<hex>              verified raw blobs (index, manifest, configs, component images)
 * layers/<alg>/<hex>/layer/      an unpacked layer, keyed by its diffID
 * tmp/                           staging: downloads, extractions in progress, trash; emptied at start
 * ```
 */
export class ImageLayout {
  /** The store root (`imagePath`). */
  readonly root: string;
  /** `blobs/`. */
  readonly blobsDir: string;
  /** `layers/`. */
  readonly layersDir: string;
  /** `tmp/`: everything here is disposable. */
  readonly tmpDir: string;
  /** `tmp/downloads/`: the downloader's target dir (it adds `sha256/<hex>`). */
  readonly downloadDir: string;

  constructor(root: string) {
    this.root = root;
    this.blobsDir = join(root, "blobs");
    this.layersDir = join(root, "layers");
    this.tmpDir = join(root, "tmp");
    this.downloadDir = join(this.tmpDir, "downloads");
  }

  /** `blobs/<alg>/<hex>`. */
  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.blobsDir, algorithm, hex);
  }

  /** `layers/<alg>/<hex>`: the unit that is renamed into place and removed. */
  layerDir(diffDigest: string): string {
    const { algorithm, hex } = parseDigest(diffDigest);
    return join(this.layersDir, algorithm, hex);
  }

  /** `layers/<alg>/<hex>/layer`: the unpacked tree (an overlay lowerdir). */
  layerPath(diffDigest: string): string {
    return join(this.layerDir(diffDigest), "layer");
  }

  /** Where the downloader puts a verified download of `digest`, and its partial files. */
  stagingFiles(digest: string): string[] {
    const { algorithm, hex } = parseDigest(digest);
    const file = join(this.downloadDir, algorithm, hex);
    return [file, `${file}.part`, `${file}.part.json`];
  }
}

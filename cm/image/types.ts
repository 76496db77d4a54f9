/**
 * Types and ports of the image manager: what the rest of CM hands in (blob URLs from the cloud
 * link, the desired status' certificates, the egress allow-list, the alert sink) and what it
 * reports (item statuses).
 * @module
 */
import type { AlertOf } from "@aos/shared/cloudprotocol";
import type {
  CloudCertificate,
  CloudCertificateChain,
  DecryptInfo,
  SignInfo,
} from "@aos/shared/crypto";
import type { AosError } from "@aos/shared/errors";
import type { ItemState } from "./db.ts";

/**
 * Where and how to fetch one blob: the cloud's `blobUrls` item. Structurally compatible with
 * `BlobInfo` of `@aos/shared/cloudprotocol`.
 */
export interface BlobInfo {
  /** `sha256:<hex>` of the decrypted blob. */
  digest: string;
  /** Mirrors of the same file; tried in order. */
  urls: readonly string[];
  /**
   * Despite its name: the SHA3-256 of the downloaded (possibly encrypted) file, as lowercase hex
   * (64 hex digits; the base64 of 32 bytes is accepted too, spec cloudprotocol §8 #7).
   */
  sha256: string;
  /** Size of the downloaded file in bytes. */
  size: number;
  /** AES parameters when the file is encrypted. */
  decryptInfo?: DecryptInfo | undefined;
  /** Signature of the decrypted blob. */
  signInfo?: SignInfo | undefined;
}

/**
 * The cloud link's `requestBlobUrls` / `blobUrls` exchange. It may answer a subset; the image
 * manager asks again for what is missing.
 */
export interface BlobInfoSource {
  /** Asks for the URLs and crypto parameters of `digests`. */
  requestBlobUrls(digests: string[], signal?: AbortSignal): Promise<readonly BlobInfo[]>;
}

/** The signing certificates of a desired status (`certificates`, `certificateChains`). */
export interface BlobTrust {
  certificates: readonly CloudCertificate[];
  chains: readonly CloudCertificateChain[];
}

/** A `downloadProgressAlert` as the alerts module queues it. */
export type DownloadProgressAlert = AlertOf<"downloadProgressAlert">;

/** Receives download progress alerts (CM's alerts module). */
export type DownloadAlertSink = (alert: DownloadProgressAlert) => void;

/** One desired update item (`desiredStatus.items[]`). */
export interface DesiredItem {
  /** `item.id`. */
  id: string;
  /** `item.type` (`service`, `component`, `layer`…). */
  type: string;
  version: string;
  /** Digest of the item's OCI image index. */
  indexDigest: string;
}

/** The status of one item version, as the unit status reports it. */
export interface ItemStatus {
  id: string;
  type: string;
  version: string;
  state: ItemState;
  /** Why the item failed (or, for a download that was canceled, why). */
  error?: AosError;
}

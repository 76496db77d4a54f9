/**
 * `mp.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import { z } from "zod";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

const mpConfigBase = ciObject({
  caCert: path,
  certStorage: z.string().default("sm"),
  workingDir: path,
  imageStoreDir: z.string().optional(),
  /** Ours: the inter-node TCP listen address (upstream hard-codes `0.0.0.0:30001`). */
  listenUrl: hostPort.default(":30001"),
  iamConfig: ciObject({
    iamPublicServerUrl: hostPort.default(":8090"),
    iamMainPublicServerUrl: hostPort.default("localhost:8090"),
    iamMainProtectedServerUrl: hostPort.default("localhost:8089"),
    certStorage: z.string().default("iam"),
    openPort: z.number().int().default(1),
    securePort: z.number().int().default(2),
  }).prefault({}),
  cmConfig: ciObject({
    cmServerUrl: hostPort.default("localhost:8093"),
    openPort: z.number().int().default(3),
    securePort: z.number().int().default(4),
  }).prefault({}),
  downloader: ciObject({
    downloadDir: z.string().optional(),
    maxConcurrentDownloads: z.number().int().positive().default(4),
    retryDelay: durationOr("1s"),
    maxRetryDelay: durationOr("30s"),
  }).prefault({}),
  logProvider: ciObject({
    maxPartSize: z.number().int().positive().default(10240),
    maxPartCount: z.number().int().positive().default(10),
  }).prefault({}),
});

/** Schema of `mp.cfg` with path defaults derived from `workingDir`. */
export const mpConfigSchema = mpConfigBase.transform((c) => ({
  ...c,
  imageStoreDir: c.imageStoreDir ?? `${c.workingDir}/images`,
  downloader: {
    ...c.downloader,
    downloadDir: c.downloader.downloadDir ?? `${c.workingDir}/downloads`,
  },
}));

/** Resolved `mp.cfg`. */
export type MpConfig = z.output<typeof mpConfigSchema>;

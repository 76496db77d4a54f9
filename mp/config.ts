/**
 * `mp.cfg`: upstream keys (case-insensitive) and defaults, resolved.
 * @module
 */
import * as z from "zod/mini";
import { ciObject, durationOr, hostPort, path } from "@aos/shared/config";

const mpConfigBase = ciObject({
  caCert: path,
  certStorage: z._default(z.string(), "sm"),
  workingDir: path,
  imageStoreDir: z.optional(z.string()),
  /** Ours: the inter-node TCP listen address (upstream hard-codes `0.0.0.0:30001`). */
  listenUrl: z._default(hostPort, ":30001"),
  iamConfig: z.prefault(
    ciObject({
      iamPublicServerUrl: z._default(hostPort, ":8090"),
      iamMainPublicServerUrl: z._default(hostPort, "localhost:8090"),
      iamMainProtectedServerUrl: z._default(hostPort, "localhost:8089"),
      certStorage: z._default(z.string(), "iam"),
      openPort: z._default(z.number().check(z.int()), 1),
      securePort: z._default(z.number().check(z.int()), 2),
    }),
    {},
  ),
  cmConfig: z.prefault(
    ciObject({
      cmServerUrl: z._default(hostPort, "localhost:8093"),
      openPort: z._default(z.number().check(z.int()), 3),
      securePort: z._default(z.number().check(z.int()), 4),
    }),
    {},
  ),
  downloader: z.prefault(
    ciObject({
      downloadDir: z.optional(z.string()),
      maxConcurrentDownloads: z._default(z.number().check(z.int(), z.positive()), 4),
      retryDelay: durationOr("1s"),
      maxRetryDelay: durationOr("30s"),
    }),
    {},
  ),
  logProvider: z.prefault(
    ciObject({
      maxPartSize: z._default(z.number().check(z.int(), z.positive()), 10240),
      maxPartCount: z._default(z.number().check(z.int(), z.positive()), 10),
    }),
    {},
  ),
});

/** Schema of `mp.cfg` with path defaults derived from `workingDir`. */
export const mpConfigSchema = z.pipe(
  mpConfigBase,
  z.transform((c) => ({
    ...c,
    imageStoreDir: c.imageStoreDir ?? `${c.workingDir}/images`,
    downloader: {
      ...c.downloader,
      downloadDir: c.downloader.downloadDir ?? `${c.workingDir}/downloads`,
    },
  })),
);

/** Resolved `mp.cfg`. */
export type MpConfig = z.output<typeof mpConfigSchema>;

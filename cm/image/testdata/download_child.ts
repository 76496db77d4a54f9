/**
 * Runs one `downloadItems` in its own process, so the crash test can SIGKILL it mid-download.
 * Usage: download_child.ts <dir> <spec.json>; spec = {infos, trust, rootPem, items}. Prints the
 * statuses as JSON.
 */
import { join } from "node:path";
import { openDatabase } from "@aos/shared/db";
import { createSpaceRegistry } from "@aos/shared/space";
import {
  type BlobInfo,
  type BlobTrust,
  CM_IMAGE_MIGRATIONS,
  createImageManager,
  type DesiredItem,
} from "../mod.ts";

const [dir = "", specPath = ""] = Deno.args;
const spec = JSON.parse(await Deno.readTextFile(specPath)) as {
  infos: BlobInfo[];
  trust: BlobTrust;
  rootPem: string;
  items: DesiredItem[];
};
using db = openDatabase({ path: join(dir, "cm.db"), migrations: CM_IMAGE_MIGRATIONS });
await using images = await createImageManager({
  database: db,
  installPath: join(dir, "install"),
  downloadPath: join(dir, "download"),
  blobInfo: {
    requestBlobUrls: (digests) =>
      Promise.resolve(spec.infos.filter((i) => digests.includes(i.digest))),
  },
  caCert: spec.rootPem,
  space: createSpaceRegistry(),
  allowHost: (url) => url.hostname === "127.0.0.1",
  removeOutdatedPeriodMs: 0,
  blobs: { retryDelayMs: 10, maxAttempts: 2 },
  downloader: { tries: 1 },
});
const statuses = await images.downloadItems(spec.items, spec.trust);
console.log(JSON.stringify(statuses.map((s) => ({ ...s, error: s.error?.message }))));

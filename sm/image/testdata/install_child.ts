/**
 * Child process of the crash tests: installs one item and prints every image event as a JSON
 * line on stdout. The parent SIGKILLs it at a chosen point.
 *
 * Argument: JSON `{ workingDir, imagePath, urls: {digest: url[]}, request, hangInMknod }`. With
 * `hangInMknod` the extractor's whiteout hook prints `{"type":"mknod"}` and never returns, so
 * the child stops inside an extraction.
 * @module
 */
import { Downloader } from "@aos/shared/download";
import { createSpaceRegistry } from "@aos/shared/space";
import { openSmDatabase } from "../../db.ts";
import { createImageManager, type InstallRequest } from "../image_manager.ts";

interface ChildArgs {
  workingDir: string;
  imagePath: string;
  urls: Record<string, string[]>;
  request: InstallRequest;
  hangInMknod?: boolean;
}

const args = JSON.parse(Deno.args[0] ?? "{}") as ChildArgs;
const print = (value: unknown) => console.log(JSON.stringify(value));

using db = openSmDatabase({ workingDir: args.workingDir });
await using downloader = new Downloader({ tries: 1 });
await using images = await createImageManager({
  imagePath: args.imagePath,
  db,
  downloader,
  space: createSpaceRegistry(),
  removeOutdatedPeriodMs: 0,
  blobSource: {
    getBlobsInfos: (digests) =>
      Promise.resolve(new Map(digests.map((d) => [d, args.urls[d] ?? []]))),
  },
  onEvent: print,
  extract: args.hangInMknod
    ? {
      mknod: () => {
        print({ type: "mknod" });
        // A live timer keeps the event loop (and so the hang) going until the kill.
        return new Promise(() => setInterval(() => {}, 1000));
      },
    }
    : {},
});
print({ type: "ready" });
await images.installItem(args.request);
print({ type: "done" });

/**
 * Runs one download in its own process (the kill-and-resume test SIGKILLs it mid-body).
 * Usage: download_child.ts <url> <dir> <digest> <size>; prints the result as JSON.
 */
import { Downloader } from "../downloader.ts";

const [url = "", dir = "", digest = "", size = "0"] = Deno.args;
await using downloader = new Downloader({ tries: 1, progressIntervalMs: 60_000 });
const result = await downloader.download({ url, dir, digest, size: Number(size) });
console.log(JSON.stringify(result));

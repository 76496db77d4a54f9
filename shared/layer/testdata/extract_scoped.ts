// Extracts a layer file into a directory with `ln` creating symlinks (child of symlink_test.ts);
// a third argument `worker` inflates in a Worker.
import { commandSymlink, extractLayerFile } from "../mod.ts";

const [layer, target, inflate] = Deno.args;
await extractLayerFile(layer!, target!, {
  symlink: commandSymlink(),
  chown: false,
  inflateInWorker: inflate === "worker",
});
console.log("extracted");

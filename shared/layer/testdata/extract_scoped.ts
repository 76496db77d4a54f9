// Extracts a layer file into a directory with `ln` creating symlinks (child of symlink_test.ts).
import { commandSymlink, extractLayerFile } from "../mod.ts";

const [layer, target] = Deno.args;
await extractLayerFile(layer!, target!, { symlink: commandSymlink(), chown: false });
console.log("extracted");

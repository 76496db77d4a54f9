/**
 * Local resources (`resources.cfg`): devices, groups, mounts, env and hosts an instance gets
 * when its item config requests the resource by name. A missing file means no resources.
 * @module
 */
import { z } from "zod";
import { ciObject, loadConfigFile } from "@aos/shared/config";
import { AosError } from "@aos/shared/errors";

const mount = ciObject({
  destination: z.string().min(1),
  type: z.string().default("bind"),
  source: z.string().default(""),
  options: z.array(z.string()).default([]),
});

/** One resource definition. */
export const resourceSchema = ciObject({
  name: z.string().min(1),
  sharedCount: z.number().int().min(0).default(0),
  groups: z.array(z.string()).default([]),
  devices: z.array(z.string()).default([]),
  mounts: z.array(mount).default([]),
  envs: z.array(z.string()).default([]),
  hosts: z.array(ciObject({ ip: z.string(), hostname: z.string() })).default([]),
});

/** A resource definition. */
export type ResourceInfo = z.output<typeof resourceSchema>;

/** Schema of `resources.cfg` (a JSON array). */
export const resourcesFileSchema = z.array(resourceSchema);

/** Loads `resources.cfg`; a missing file is an empty list. */
export async function loadResources(path: string): Promise<ResourceInfo[]> {
  try {
    await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return await loadConfigFile(path, resourcesFileSchema);
}

/** Looks up requested resources by name; an unknown name is an error naming the file. */
export function resolveResources(
  all: ResourceInfo[],
  names: string[],
  source: string,
): ResourceInfo[] {
  return names.map((name) => {
    const found = all.find((r) => r.name === name);
    if (!found) throw new AosError("notFound", `resource "${name}" is not defined in ${source}`);
    return found;
  });
}

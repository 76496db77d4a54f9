/**
 * Node resources (`/etc/aos/resources.cfg`): schema, loading, and resolution of the resources an
 * item asks for into what the bundle needs (gids, device nodes, mounts, env, hosts).
 * @module
 */
import * as z from "zod/mini";
import { ciObject, loadConfigFile } from "@aos/shared/config";
import { AosError } from "@aos/shared/core";
import type { Mount } from "@aos/shared/oci";

/** One entry of `resources.cfg`. */
export const resourceConfigSchema = ciObject({
  name: z.string().check(z.minLength(1)),
  sharedCount: z._default(z.number().check(z.int(), z.nonnegative()), 0),
  groups: z._default(z.array(z.string()), []),
  /** `"<hostPath>[:<containerPath>]"`; a directory adds every device below it. */
  devices: z._default(z.array(z.string().check(z.minLength(1))), []),
  mounts: z._default(
    z.array(ciObject({
      destination: z.string().check(z.minLength(1)),
      type: z._default(z.string(), ""),
      source: z._default(z.string(), ""),
      options: z._default(z.array(z.string()), []),
    })),
    [],
  ),
  envs: z._default(z.array(z.string()), []),
  hosts: z._default(z.array(ciObject({ ip: z.string(), hostname: z.string() })), []),
});
/** One entry of `resources.cfg`. */
export type ResourceConfig = z.output<typeof resourceConfigSchema>;

/** Schema of the whole `resources.cfg` (a JSON array; names must be unique). */
export const resourcesConfigSchema = z.array(resourceConfigSchema).check(
  z.maxLength(64),
  z.superRefine((list, ctx) => {
    const seen = new Set<string>();
    for (const r of list) {
      if (seen.has(r.name)) {
        ctx.addIssue({ code: "custom", message: `resource "${r.name}" is defined twice` });
      }
      seen.add(r.name);
    }
  }),
);

/** Loads `resources.cfg`; a missing file means "no resources" (upstream behaviour). */
export async function loadResourcesConfig(file: string): Promise<ResourceConfig[]> {
  try {
    await Deno.stat(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return await loadConfigFile(file, resourcesConfigSchema);
}

/** A device node to create in the container, with its cgroup permission. */
export interface ResolvedDevice {
  /** Path inside the container. */
  path: string;
  type: "c" | "b";
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
  /** cgroup access (`r`, `w`, `m` letters), from the item's requested mode. */
  access: string;
}

/** A resource ready for the bundle builder. */
export interface ResolvedResource {
  name: string;
  additionalGids: number[];
  devices: ResolvedDevice[];
  mounts: Mount[];
  envs: string[];
  hosts: { ip: string; hostname: string }[];
}

/** What resolution needs from the host (a port, so the builder tests stay pure). */
export interface HostLookup {
  /** The gid of a host group name, or undefined when it does not exist. */
  groupId(name: string): Promise<number | undefined>;
  /** Device nodes at `path`: itself when it is one, every node below it when a directory. */
  devices(path: string): Promise<Omit<ResolvedDevice, "access">[]>;
}

/**
 * Resolves the resources an item config requests against `available`. An unknown name fails the
 * start (upstream: `resource not found`), naming the file so the operator knows where to look.
 */
export async function resolveResources(
  requested: readonly { name: string; mode?: string | undefined }[],
  available: readonly ResourceConfig[],
  host: HostLookup,
  sourceFile = "/etc/aos/resources.cfg",
): Promise<ResolvedResource[]> {
  const out: ResolvedResource[] = [];
  for (const req of requested) {
    const cfg = available.find((r) => r.name === req.name);
    if (!cfg) {
      throw new AosError(
        "notFound",
        `resource ${JSON.stringify(req.name)} is not defined in ${sourceFile}`,
      );
    }
    const access = normalizeAccess(req.mode);
    const additionalGids: number[] = [];
    for (const g of cfg.groups) {
      const gid = await host.groupId(g);
      if (gid === undefined) {
        throw new AosError(
          "notFound",
          `resource "${cfg.name}": group "${g}" does not exist on this host`,
        );
      }
      additionalGids.push(gid);
    }
    const devices: ResolvedDevice[] = [];
    for (const spec of cfg.devices) {
      const colon = spec.indexOf(":");
      const src = colon < 0 ? spec : spec.slice(0, colon);
      const dst = colon < 0 ? src : spec.slice(colon + 1);
      const found = await host.devices(src);
      if (found.length === 0) {
        throw new AosError("notFound", `resource "${cfg.name}": no device node at "${src}"`);
      }
      for (const d of found) {
        // A directory maps its subtree: /dev/dri/card0 with src /dev/dri, dst /dev/gpu → /dev/gpu/card0.
        const rel = d.path === src ? "" : d.path.slice(src.length);
        devices.push({ ...d, path: dst + rel, access });
      }
    }
    out.push({
      name: cfg.name,
      additionalGids,
      devices,
      mounts: cfg.mounts.map((m) => ({
        destination: m.destination,
        type: m.type,
        source: m.source,
        options: m.options,
      })),
      envs: cfg.envs,
      hosts: cfg.hosts,
    });
  }
  return out;
}

function normalizeAccess(mode: string | undefined): string {
  const letters = [...new Set((mode ?? "rw").toLowerCase().split(""))].filter((c) =>
    "rwm".includes(c)
  );
  return letters.length ? letters.join("") : "rw";
}

/** Splits a Linux `dev_t` into major and minor (glibc encoding). */
export function splitDevT(rdev: number): { major: number; minor: number } {
  const v = BigInt(rdev);
  const major = Number(((v >> 8n) & 0xfffn) | ((v >> 32n) & ~0xfffn));
  const minor = Number((v & 0xffn) | ((v >> 12n) & ~0xffn));
  return { major, minor };
}

/** Largest number of device nodes one resource path may expand to. */
const MAX_DEVICES = 256;

/** The real {@link HostLookup}: `/etc/group` and `stat` (symlinks followed). */
export function systemHostLookup(groupFile = "/etc/group"): HostLookup {
  return {
    async groupId(name) {
      const text = await Deno.readTextFile(groupFile);
      for (const line of text.split("\n")) {
        const [n, , gid] = line.split(":");
        if (n === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
      }
      return undefined;
    },
    async devices(path) {
      const found: Omit<ResolvedDevice, "access">[] = [];
      const walk = async (p: string, depth: number): Promise<void> => {
        let info: Deno.FileInfo;
        try {
          info = await Deno.stat(p);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) return;
          throw err;
        }
        if (info.isCharDevice || info.isBlockDevice) {
          if (found.length >= MAX_DEVICES) {
            throw new AosError(
              "outOfRange",
              `more than ${MAX_DEVICES} device nodes under "${path}"`,
            );
          }
          const { major, minor } = splitDevT(info.rdev ?? 0);
          found.push({
            path: p,
            type: info.isCharDevice ? "c" : "b",
            major,
            minor,
            fileMode: (info.mode ?? 0o666) & 0o7777,
            uid: info.uid ?? 0,
            gid: info.gid ?? 0,
          });
        } else if (info.isDirectory && depth < 8) {
          const names: string[] = [];
          for await (const e of Deno.readDir(p)) names.push(e.name);
          for (const n of names.sort()) await walk(`${p}/${n}`, depth + 1);
        }
      };
      await walk(path, 0);
      return found;
    },
  };
}

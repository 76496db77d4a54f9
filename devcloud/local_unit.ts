/**
 * A whole unit on this machine, for the demo and the end-to-end tests: configs for `iam`,
 * `sm` and `cm` under one directory, provisioning through IAM's real provisioning API with
 * certificates of devcloud's dev CA, and every component started under its permission
 * manifest. Stopping removes containers and mounts and checks that none is left.
 * @module
 */
import { join } from "node:path";
import { DenoCommandRunner } from "@aos/shared/exec";
import type { Logger } from "@aos/shared/logger";
import { nullLogger } from "@aos/shared/logger";
import { commandFor } from "../permissions/launch.ts";
import { Runc } from "../sm/runtime/runc.ts";
import type { Devcloud } from "./cloud.ts";
import { type ComponentProcess, startComponent, waitFor } from "./process.ts";
import { provisionNode } from "./provision.ts";

/** The runc binary the unit uses. */
export const LOCAL_RUNC = "/usr/sbin/runc";

/** A TCP port that is free right now on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

/** Paths and addresses of a local unit. */
export interface LocalUnitLayout {
  root: string;
  nodeId: string;
  systemId: string;
  etc: string;
  iamConfig: string;
  smConfig: string;
  cmConfig: string;
  smDir: string;
  runcRoot: string;
  iamPublicUrl: string;
  iamProtectedUrl: string;
}

/** Writes `iam.cfg`, `sm.cfg` and `cm.cfg` of a one-node unit under `root` for `cloud`. */
export async function writeLocalUnit(root: string, cloud: Devcloud): Promise<LocalUnitLayout> {
  const nodeId = "main";
  const etc = join(root, "etc");
  const iamDir = join(root, "var/iam");
  const smDir = join(root, "var/sm");
  const cmDir = join(root, "var/cm");
  const certs = join(root, "var/crypt");
  for (const d of [etc, iamDir, smDir, cmDir]) await Deno.mkdir(d, { recursive: true });
  await Deno.writeTextFile(join(etc, "machine-id"), `${nodeId}\n`);
  await Deno.writeTextFile(join(etc, "system-id"), `system-${nodeId}\n`);
  await Deno.writeTextFile(join(etc, "unit_model"), "local-unit;1.0\n");
  await Deno.writeTextFile(join(etc, "subjects"), "");
  const ports = { pub: freePort(), prot: freePort(), cm: freePort(), files: freePort() };
  const iamPublicUrl = `127.0.0.1:${ports.pub}`;
  const iamProtectedUrl = `127.0.0.1:${ports.prot}`;
  const caCert = cloud.pki.files.caCert;
  const module = (id: string, algorithm = "ecc") => ({
    id,
    plugin: "filemodule",
    algorithm,
    maxItems: 2,
    extendedKeyUsage: ["clientAuth", "serverAuth"],
    alternativeNames: ["localhost"],
    params: { storagePath: join(certs, id) },
  });
  const iam = {
    caCert,
    certStorage: "iam",
    iamPublicServerUrl: iamPublicUrl,
    iamProtectedServerUrl: iamProtectedUrl,
    workingDir: iamDir,
    nodeInfo: {
      nodeIdPath: join(etc, "machine-id"),
      nodeName: "Main node",
      nodeType: "main",
      maxDmips: 10000,
      provisioningStatePath: join(iamDir, ".provisionstate"),
      attrs: { MainNode: "", AosComponents: "cm,iam,sm" },
    },
    identifier: {
      plugin: "fileidentifier",
      params: {
        systemIdPath: join(etc, "system-id"),
        unitModelPath: join(etc, "unit_model"),
        subjectsPath: join(etc, "subjects"),
      },
    },
    certModules: [
      module("online"),
      module("offline", "rsa"),
      module("iam"),
      module("sm"),
      module("cm"),
    ],
  };
  const runcRoot = join(smDir, "runc");
  const sm = {
    caCert,
    certStorage: "sm",
    workingDir: smDir,
    iamPublicServerUrl: iamPublicUrl,
    iamProtectedServerUrl: iamProtectedUrl,
    cmServerUrl: `localhost:${ports.cm}`,
    cmFileServerUrl: `localhost:${ports.files}`,
    cmReconnectTimeout: "1s",
    resourcesConfigFile: join(etc, "resources.cfg"),
    runtimes: [{
      plugin: "container",
      type: "runc",
      // Images here carry a whole rootfs, so the host's / is not stacked under them.
      config: { runtimeDir: join(smDir, "run"), crunStateRoot: runcRoot, hostBinds: [] },
    }],
  };
  const cm = {
    caCert,
    certStorage: "cm",
    serviceDiscoveryUrl: cloud.discoveryUrl,
    iamPublicServerUrl: iamPublicUrl,
    iamProtectedServerUrl: iamProtectedUrl,
    cmServerUrl: `localhost:${ports.cm}`,
    fileServerUrl: `localhost:${ports.files}`,
    workingDir: cmDir,
    unitStatusSendTimeout: "1s",
    allowedHosts: [`localhost:${new URL(cloud.blobsUrl).port}`],
  };
  const write = async (name: string, value: unknown) => {
    const file = join(etc, name);
    await Deno.writeTextFile(file, JSON.stringify(value, null, 2) + "\n");
    return file;
  };
  return {
    root,
    nodeId,
    systemId: `system-${nodeId}`,
    etc,
    iamConfig: await write("iam.cfg", iam),
    smConfig: await write("sm.cfg", sm),
    cmConfig: await write("cm.cfg", cm),
    smDir,
    runcRoot,
    iamPublicUrl,
    iamProtectedUrl,
  };
}

/** A running local unit. */
export interface LocalUnit extends AsyncDisposable {
  layout: LocalUnitLayout;
  processes: ComponentProcess[];
  runc: Runc;
  /** Stops cm, sm and iam (in that order) and removes any container left; returns leftovers. */
  stop(): Promise<{ containers: string[] }>;
}

/**
 * Provisions IAM (provisioning mode, then normal mode) and starts `iam`, `sm` and `cm` under
 * their manifests; resolves when the unit's first full status reached the cloud.
 */
export async function startLocalUnit(
  cloud: Devcloud,
  layout: LocalUnitLayout,
  options: {
    logger?: Logger;
    password?: string;
    timeoutMs?: number;
    /** Modules to run instead of each component's `main.ts` (e.g. `compile.ts` bundles). */
    mains?: Partial<Record<"iam" | "sm" | "cm", string>>;
  } = {},
): Promise<LocalUnit> {
  const log = options.logger ?? nullLogger;
  const processes: ComponentProcess[] = [];
  const runner = new DenoCommandRunner({ allow: [LOCAL_RUNC] });
  const runc = new Runc(runner, LOCAL_RUNC, layout.runcRoot);
  const stop = async () => {
    for (const p of [...processes].reverse()) {
      log.info(`stopping ${p.name}`);
      await p.stop(20_000).catch(() => {});
    }
    processes.length = 0;
    const left = await runc.list().catch(() => []);
    for (const c of left) {
      await runc.kill(c.id, "KILL").catch(() => {});
      await runc.delete(c.id).catch(() => {});
    }
    return { containers: left.map((c) => c.id) };
  };
  try {
    log.info("provisioning the unit through IAM's provisioning API");
    const prov = await startComponent(
      "iam",
      (await commandFor("iam", ["-c", layout.iamConfig, "-p"], { main: options.mains?.iam }))
        .args,
    );
    try {
      await provisionNode({
        iamUrl: layout.iamProtectedUrl,
        pki: cloud.pki,
        password: options.password ?? crypto.randomUUID().slice(0, 16),
        discoveryUrl: cloud.cloudBaseUrl,
      });
    } finally {
      await prov.stop(10_000);
    }
    for (
      const [name, config] of [["iam", layout.iamConfig], ["cm", layout.cmConfig], [
        "sm",
        layout.smConfig,
      ]] as const
    ) {
      log.info(`starting ${name} under its permission manifest`);
      const { args } = await commandFor(name, ["-c", config], { main: options.mains?.[name] });
      processes.push(await startComponent(name, args));
    }
    await waitFor(
      "the unit's first status",
      () =>
        cloud.units().find((u) => u.systemId === layout.systemId)?.status.nodes.some((n) =>
          n.isConnected && n.runtimes.length > 0
        ),
      options.timeoutMs ?? 60_000,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { layout, processes, runc, stop, [Symbol.asyncDispose]: async () => void await stop() };
}

/** A busybox-static rootfs serving `index.html` with httpd on port 8080. */
export async function writeBusyboxService(dir: string, page: string): Promise<void> {
  const rootfs = join(dir, "rootfs");
  await Deno.mkdir(join(rootfs, "bin"), { recursive: true });
  await Deno.mkdir(join(rootfs, "www"), { recursive: true });
  await Deno.mkdir(join(rootfs, "tmp"), { recursive: true });
  await Deno.copyFile("/bin/busybox", join(rootfs, "bin/busybox"));
  await Deno.chmod(join(rootfs, "bin/busybox"), 0o755);
  for (const applet of ["sh", "httpd", "sleep", "wget", "cat"]) {
    await Deno.symlink("busybox", join(rootfs, "bin", applet)).catch(() => {});
  }
  await Deno.writeTextFile(join(rootfs, "www/index.html"), page);
}

/** The OCI name of this machine's architecture. */
export function ociArch(): string {
  return Deno.build.arch === "x86_64" ? "amd64" : "arm64";
}

/** Service manifest for {@link writeBusyboxService}: PID 1 exits at once on SIGTERM. */
export function busyboxServiceManifest(name: string, version: string) {
  return {
    name,
    version,
    cmd: ["/bin/sh", "-c", 'trap "exit 0" TERM; httpd -f -p 8080 -h /www & wait $!'],
    env: ["PATH=/bin"],
    os: "linux",
    architecture: ociArch(),
    runtimes: ["runc"],
  };
}

/**
 * `deno task demo`: a whole AosEdge unit on this machine in one command. It checks the
 * prerequisites, creates a throwaway unit, starts devcloud (with its dashboard), provisions
 * the unit through IAM's real provisioning API, starts iam, sm and cm each under its
 * permission manifest, deploys a busybox `httpd` service with two instances, waits until they
 * are active and shows how they answer. Ctrl-C stops everything and checks that no container,
 * mount or process is left.
 *
 * Options: `--dir <dir>` (default: a new temp dir, removed at the end), `--instances <n>`
 * (default 2), `--once` (stop right after the service answered: for scripts and CI).
 * @module
 */
import { join } from "node:path";
import { DenoCommandRunner } from "@aos/shared/exec";
import { createLogger } from "@aos/shared/logger";
import { mountsUnder } from "../sm/runtime/rootfs.ts";
import { formatStatus } from "./cli.ts";
import { startDevcloud } from "./cloud.ts";
import { startDashboard } from "./dashboard.ts";
import {
  busyboxServiceManifest,
  LOCAL_RUNC,
  startLocalUnit,
  writeBusyboxService,
  writeLocalUnit,
} from "./local_unit.ts";
import { waitFor } from "./process.ts";

const SERVICE = "hello";

/** Programs the demo needs, and the Debian package of each. */
const PREREQUISITES: [string, string][] = [
  [LOCAL_RUNC, "runc"],
  ["/usr/sbin/ip", "iproute2"],
  ["/bin/busybox", "busybox-static"],
  ["/usr/bin/setfattr", "attr"],
  ["/usr/bin/tar", "tar"],
];

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Installs missing packages with apt-get as root, or says exactly what to run. */
async function checkPrerequisites(isRoot: boolean): Promise<boolean> {
  const missing: string[] = [];
  for (const [path, pkg] of PREREQUISITES) if (!(await exists(path))) missing.push(pkg);
  if (!missing.length) return true;
  const command = `apt-get update && apt-get install -y ${missing.join(" ")}`;
  if (!isRoot) {
    console.error(`missing: ${missing.join(", ")}. Install them with:\n  sudo ${command}`);
    return false;
  }
  console.log(`installing ${missing.join(", ")} with apt-get…`);
  for (const args of [["update", "-qq"], ["install", "-y", "-qq", ...missing]]) {
    const out = await new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    if (!out.success) {
      console.error(`apt-get ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
      return false;
    }
  }
  return true;
}

async function main(args: string[]): Promise<number> {
  const rest = args[0] === "--" ? args.slice(1) : args;
  const isRoot = Deno.uid() === 0;
  if (!isRoot) {
    console.error("The demo runs real containers and must run as root (sudo npx deno task demo).");
    await checkPrerequisites(false);
    return 1;
  }
  if (!(await checkPrerequisites(true))) return 1;
  const instances = Number(option(rest, "--instances") ?? 2);
  const given = option(rest, "--dir");
  const dir = given ?? await Deno.makeTempDir({ prefix: "aos-demo-" });
  await Deno.mkdir(dir, { recursive: true });
  const once = rest.includes("--once");
  const logger = createLogger({ level: rest.includes("-v") ? "debug" : "warn" });
  console.log(`unit directory: ${dir}`);

  const cloud = await startDevcloud({
    workingDir: join(dir, "devcloud"),
    cloudListen: "localhost:0",
    blobsListen: "localhost:0",
    logger: logger.child({ component: "devcloud" }),
  });
  const dashboard = await startDashboard({
    devcloud: cloud,
    hostname: "127.0.0.1",
    port: 0,
    logger,
  });
  const stopSignal = Promise.withResolvers<void>();
  const onSignal = () => stopSignal.resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let unit: Awaited<ReturnType<typeof startLocalUnit>> | undefined;
  let code = 0;
  try {
    console.log(`devcloud: ${cloud.cloudBaseUrl}   dashboard: ${dashboard.url}`);
    const layout = await writeLocalUnit(join(dir, "unit"), cloud);
    console.log("provisioning the unit and starting iam, cm and sm under their manifests…");
    unit = await startLocalUnit(cloud, layout, { logger });
    console.log(`unit ${layout.systemId} connected`);

    const serviceDir = join(dir, "services", SERVICE);
    await writeBusyboxService(serviceDir, "Hello from a container run by AosCore on Deno\n");
    console.log(`deploying ${SERVICE} with ${instances} instances…`);
    const t0 = performance.now();
    await cloud.deploy(SERVICE, {
      instances,
      source: join(serviceDir, "rootfs"),
      manifest: busyboxServiceManifest(SERVICE, "1.0.0"),
    });
    let last = "";
    const done = await waitFor("the instances to become active", () => {
      const p = cloud.status().services.find((s) => s.name === SERVICE)?.units
        .find((u) => u.systemId === layout.systemId);
      if (!p) return undefined;
      const line = `  item ${p.itemState}, instances ${
        Object.entries(p.instances).map(([s, n]) => `${n} ${s}`).join(", ") || "none yet"
      }`;
      if (line !== last) console.log(line);
      last = line;
      if (p.failed) {
        throw new Error(`deployment failed: ${p.itemError ?? p.instanceErrors.join("; ")}`);
      }
      return p.done ? p : undefined;
    }, 180_000);
    console.log(
      `${done.instances.active} instances active (${Math.round(performance.now() - t0)} ms)\n`,
    );
    console.log(formatStatus(cloud.status()));

    const runner = new DenoCommandRunner({ allow: [LOCAL_RUNC] });
    console.log("\nhow the service answers (inside each instance's own network namespace):");
    for (const c of await unit.runc.list()) {
      const r = await runner.run(LOCAL_RUNC, [
        "--root",
        layout.runcRoot,
        "exec",
        c.id,
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/",
      ], { allowFailure: true, timeoutMs: 10_000 });
      console.log(
        `  ${c.id}: ${r.code === 0 ? r.stdout.trim() : `no answer (${r.stderr.trim()})`}`,
      );
    }
    console.log(`\ndashboard: ${dashboard.url}`);
    if (!once) {
      console.log("press Ctrl-C to stop the unit");
      await stopSignal.promise;
    }
  } catch (err) {
    console.error(`demo failed: ${(err as Error).message}`);
    for (const p of unit?.processes ?? []) {
      console.error(`--- ${p.name} log (tail) ---\n${p.log().slice(-3000)}`);
    }
    code = 1;
  } finally {
    console.log("stopping…");
    const left = await unit?.stop();
    const mounts = await mountsUnder(dir, 8).catch(() => [] as string[]);
    await dashboard.close();
    await cloud.close();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    if (left?.containers.length || mounts.length) {
      console.error(
        `left behind: containers ${left?.containers.join(", ") || "none"}, mounts ${
          mounts.join(", ") || "none"
        }`,
      );
      code = 1;
    } else {
      console.log("stopped: no container, mount or process left");
    }
    if (!given && code === 0) await Deno.remove(dir, { recursive: true });
  }
  return code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));

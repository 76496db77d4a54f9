/**
 * A whole unit end to end, every component a real process under its permission manifest:
 * devcloud (in this process) is the cloud; `iam -p` is provisioned with certificates of
 * devcloud's dev CA, then restarted normally; `sm` and `cm` talk mTLS to IAM and to each other;
 * CM finds devcloud through the `online` certificate. A busybox service is deployed with two
 * instances, runs in runc, is reported to the cloud in schema-valid unit statuses; CM is killed
 * with SIGKILL and restarted (nothing downloaded again, containers untouched); the service is
 * removed; finally CM runs with an allow-list that lacks the blob host, and a new service fails
 * with the reason while the cloud gets an alert.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import {
  buildEnvelope,
  buildUnitStatus,
  encodeEnvelope,
  type UnitStatus,
} from "@aos/shared/cloudprotocol";
import { DenoCommandRunner } from "@aos/shared/exec";
import { nullLogger } from "@aos/shared/logger";
import { HAVE_SPEC, loadValidator } from "../shared/cloudprotocol/_test_samples.ts";
import { type Devcloud, provisionNode, startDevcloud } from "../devcloud/mod.ts";
import { commandFor } from "../permissions/launch.ts";
import { Runc } from "../sm/runtime/runc.ts";
import { freePort, writeIamNode } from "./iam_support.ts";
import {
  type ComponentProcess,
  mountsBelow,
  RUNC,
  smSkipReason,
  startComponent,
  waitFor,
} from "./fixtures/sm_unit.ts";

const skip = await smSkipReason();
if (skip) console.warn(`unit e2e skipped: ${skip}`);

const SERVICE = "hello";
/** PID 1 of the container: exits on SIGTERM at once, httpd serves in the background. */
const SERVICE_SCRIPT = 'trap "exit 0" TERM; httpd -f -p 8080 -h /www & wait $!';

/** The OCI name of this machine's architecture (IAM and SM report the kernel's). */
function ociArch(): string {
  return Deno.build.arch === "x86_64" ? "amd64" : "arm64";
}

/** A rootfs with the host's static busybox, `sh` and `httpd`, and a page to serve. */
async function busyboxRootfs(dir: string): Promise<void> {
  await Deno.mkdir(join(dir, "bin"), { recursive: true });
  await Deno.mkdir(join(dir, "www"), { recursive: true });
  await Deno.copyFile("/bin/busybox", join(dir, "bin/busybox"));
  await Deno.chmod(join(dir, "bin/busybox"), 0o755);
  for (const applet of ["sh", "httpd", "sleep"]) {
    await Deno.symlink("busybox", join(dir, "bin", applet));
  }
  await Deno.writeTextFile(join(dir, "www/index.html"), "hello from aos\n");
}

interface Unit {
  root: string;
  cloud: Devcloud;
  etc: string;
  smDir: string;
  cmDir: string;
  cmConfig: string;
  smConfig: string;
  runc: Runc;
  runner: DenoCommandRunner;
  processes: ComponentProcess[];
}

async function cleanup(u: Partial<Unit> & { root: string }): Promise<void> {
  for (const p of (u.processes ?? []).reverse()) await p.stop(15_000).catch(() => {});
  if (u.runc) {
    for (const c of await u.runc.list().catch(() => [])) {
      await u.runc.kill(c.id, "KILL").catch(() => {});
      await u.runc.delete(c.id).catch(() => {});
    }
  }
  if (u.runner) {
    for (const mp of await mountsBelow(u.root).catch(() => [] as string[])) {
      await u.runner.run("umount", ["-l", mp], { allowFailure: true }).catch(() => {});
    }
  }
  await u.cloud?.close();
  await Deno.remove(u.root, { recursive: true }).catch(() => {});
}

Deno.test({
  name:
    "unit e2e: 2 busybox instances via iam + sm + cm; cm kill -9 survived; removed; blob host refused",
  ignore: skip !== undefined,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "aos-e2e-" });
    const u: Partial<Unit> & { root: string; processes: ComponentProcess[] } = {
      root,
      processes: [],
    };
    try {
      const cloud = await startDevcloud({
        workingDir: join(root, "devcloud"),
        cloudListen: "localhost:0",
        blobsListen: "localhost:0",
        logger: nullLogger,
      });
      u.cloud = cloud;
      const statuses: Omit<UnitStatus, "messageType">[] = [];
      let blobRequests = 0;
      const offEvents = cloud.subscribe((e) => {
        if (e.type === "message" && e.message.messageType === "unitStatus") {
          const { messageType: _, ...body } = e.message;
          statuses.push(body);
        }
        if (e.type === "message" && e.message.messageType === "requestBlobUrls") blobRequests++;
      });
      const fullCount = () => statuses.filter((s) => !s.isDeltaInfo).length;

      // IAM: provisioned with the dev CA's certificates, then in normal mode.
      const node = await writeIamNode(
        root,
        {
          dir: join(root, "devcloud/pki"),
          name: "devcloud",
          cert: cloud.pki.files.caCert,
          key: cloud.pki.files.caKey,
        },
        {
          nodeId: "main0",
          main: true,
          modules: [{ id: "online" }, { id: "offline", algorithm: "rsa" }, { id: "iam" }, {
            id: "sm",
          }, { id: "cm" }],
        },
      );
      const etc = join(node.dir, "etc");
      u.etc = etc;
      {
        const iamP = await startComponent(
          "iam",
          (await commandFor("iam", ["-c", node.config, "-p"])).args,
        );
        try {
          await provisionNode({
            iamUrl: node.protectedUrl,
            pki: cloud.pki,
            password: "owner-secret",
            discoveryUrl: cloud.cloudBaseUrl,
          });
        } finally {
          await iamP.stop(10_000);
        }
      }
      u.processes.push(
        await startComponent("iam", (await commandFor("iam", ["-c", node.config])).args),
      );

      // SM works on a tmpfs, as on a device (overlay lower dirs cannot be the root fs itself).
      const smDir = join(node.dir, "var/sm");
      const cmDir = join(node.dir, "var/cm");
      await Deno.mkdir(smDir, { recursive: true });
      u.runner = new DenoCommandRunner({ allow: [RUNC, "mount", "umount"] });
      await u.runner.run("mount", ["-t", "tmpfs", "-o", "size=512m,mode=0755", "tmpfs", smDir]);
      u.runc = new Runc(u.runner, RUNC, join(smDir, "runc"));
      const cmPort = freePort();
      const filePort = freePort();
      const blobsPort = new URL(cloud.blobsUrl).port;
      const smConfig = join(etc, "sm.cfg");
      await Deno.writeTextFile(
        smConfig,
        JSON.stringify({
          caCert: cloud.pki.files.caCert,
          certStorage: "sm",
          workingDir: smDir,
          iamPublicServerUrl: node.publicUrl,
          iamProtectedServerUrl: node.protectedUrl,
          cmServerUrl: `localhost:${cmPort}`,
          cmFileServerUrl: `localhost:${filePort}`,
          cmReconnectTimeout: "1s",
          resourcesConfigFile: join(etc, "resources.cfg"),
          runtimes: [{
            plugin: "container",
            type: "runc",
            config: { runtimeDir: join(smDir, "run"), crunStateRoot: join(smDir, "runc") },
          }],
        }),
      );
      const cmConfig = join(etc, "cm.cfg");
      await Deno.writeTextFile(
        cmConfig,
        JSON.stringify({
          caCert: cloud.pki.files.caCert,
          certStorage: "cm",
          serviceDiscoveryUrl: cloud.discoveryUrl,
          iamPublicServerUrl: node.publicUrl,
          iamProtectedServerUrl: node.protectedUrl,
          cmServerUrl: `localhost:${cmPort}`,
          fileServerUrl: `localhost:${filePort}`,
          workingDir: cmDir,
          unitStatusSendTimeout: "1s",
          alerts: { sendPeriod: "1s" },
          allowedHosts: [`localhost:${blobsPort}`],
        }),
      );
      const cmArgs = (await commandFor("cm", ["-c", cmConfig])).args;
      let cm = await startComponent("cm", cmArgs);
      u.processes.push(cm);
      u.processes.push(await startComponent("sm", (await commandFor("sm", ["-c", smConfig])).args));
      const systemId = "system-main0";
      await waitFor(
        "the unit's first full status",
        () =>
          cloud.units().find((x) => x.systemId === systemId)?.status.nodes.some((n) =>
            n.isConnected && n.runtimes.length > 0
          ),
        30_000,
      );

      // Deploy: two instances of the busybox service.
      const rootfs = join(root, "rootfs");
      await busyboxRootfs(rootfs);
      const t0 = performance.now();
      const record = await cloud.deploy(SERVICE, {
        instances: 2,
        source: rootfs,
        manifest: {
          name: SERVICE,
          version: "1.0.0",
          cmd: ["/bin/sh", "-c", SERVICE_SCRIPT],
          env: ["PATH=/bin"],
          os: "linux",
          architecture: ociArch(),
          runtimes: ["runc"],
        },
      });
      const progress = () =>
        cloud.status().services.find((s) => s.name === SERVICE)?.units.find((x) =>
          x.systemId === systemId
        );
      const done = await waitFor("2 active instances", () => {
        const p = progress();
        if (p?.failed) {
          throw new Error(`deploy failed: ${JSON.stringify(p)}\n${cm.log().slice(-4000)}`);
        }
        return p?.done ? p : undefined;
      }, 60_000).catch((err) => {
        throw new Error(`${err}\ncm log:\n${cm.log().slice(-6000)}`);
      });
      const deployMs = Math.round(performance.now() - t0);
      console.log(`deploy → installed + 2 active: ${deployMs} ms`);
      assert.equal(done.itemState, "installed");
      assert.equal(done.instances.active, 2);
      const containers = await u.runc.list();
      assert.equal(containers.filter((c) => c.status === "running").length, 2);

      const unit = cloud.units().find((x) => x.systemId === systemId)!;
      const instances = unit.status.instances.filter((i) => i.item.id === record.id);
      assert.deepEqual(instances.map((i) => [i.instance, i.state, i.node.codename]).sort(), [
        [0, "active", "main0"],
        [1, "active", "main0"],
      ]);

      // CM killed with SIGKILL while the service runs: the restarted CM keeps placements and
      // ids, downloads nothing again, reports a full status, and the containers are untouched.
      const running = (await u.runc.list()).map((c) => `${c.id}:${c.pid}`).sort();
      const requestsBefore = blobRequests;
      const fullBefore = fullCount();
      await cm.kill();
      u.processes.splice(u.processes.indexOf(cm), 1);
      cm = await startComponent("cm", cmArgs);
      u.processes.push(cm);
      await waitFor("a full status after the restart", () => fullCount() > fullBefore, 30_000);
      await waitFor("2 active instances after the restart", () => {
        const s = cloud.units().find((x) => x.systemId === systemId)?.status;
        return s?.instances.filter((i) => i.item.id === record.id && i.state === "active")
          .length === 2;
      }, 30_000).catch((err) => {
        throw new Error(`${err}\ncm log:\n${cm.log().slice(-6000)}`);
      });
      assert.equal(blobRequests, requestsBefore, "no blob was requested again");
      assert.deepEqual((await u.runc.list()).map((c) => `${c.id}:${c.pid}`).sort(), running);

      // Remove: instances stop, the containers go, the item is removed.
      const t1 = performance.now();
      await cloud.remove(SERVICE);
      await waitFor("the service gone from the unit status", () => {
        const s = cloud.units().find((x) => x.systemId === systemId)?.status;
        return s !== undefined && !s.items.some((i) => i.item.id === record.id) &&
          !s.instances.some((i) => i.item.id === record.id);
      }, 60_000).catch((err) => {
        throw new Error(`${err}\ncm log:\n${cm.log().slice(-6000)}`);
      });
      await waitFor("containers gone", async () => (await u.runc!.list()).length === 0, 30_000);
      console.log(`remove → gone: ${Math.round(performance.now() - t1)} ms`);
      const db = new DatabaseSync(join(cmDir, "cm.db"), { readOnly: true });
      try {
        const rows = db.prepare("SELECT state FROM imagemanager WHERE itemID = ?").all(
          record.id,
        ) as { state: string }[];
        assert.deepEqual(rows.map((r) => r.state), ["removed"]);
      } finally {
        db.close();
      }

      // allowedHosts without devcloud's blob host: CM (and Deno under its manifest) refuse the
      // URLs; the item fails with the reason and the cloud gets an alert.
      await cm.stop(15_000);
      u.processes.splice(u.processes.indexOf(cm), 1);
      const cfg = JSON.parse(await Deno.readTextFile(cmConfig));
      await Deno.writeTextFile(
        cmConfig,
        JSON.stringify({ ...cfg, allowedHosts: ["blobs.example.com"] }),
      );
      const fullBeforeDenied = fullCount();
      cm = await startComponent("cm", (await commandFor("cm", ["-c", cmConfig])).args);
      u.processes.push(cm);
      await waitFor("a full status", () => fullCount() > fullBeforeDenied, 30_000);
      const denied = await cloud.deploy("denied", {
        instances: 1,
        source: rootfs,
        manifest: {
          name: "denied",
          version: "1.0.0",
          cmd: ["/bin/sh", "-c", SERVICE_SCRIPT],
          env: [],
          os: "linux",
        },
      });
      const failed = await waitFor("the denied item failed", () => {
        const p = cloud.status().services.find((x) => x.name === "denied")?.units.find((x) =>
          x.systemId === systemId
        );
        return p?.itemState === "failed" ? p : undefined;
      }, 30_000);
      assert.match(failed.itemError ?? "", /not on the allow-list|not in allowedHosts/);
      const alert = await waitFor(
        "the refusal alert",
        () => {
          for (const a of cloud.alerts(systemId)) {
            if (
              a.tag === "downloadProgressAlert" && a.state === "interrupted" &&
              /allowedHosts/.test(a.reason ?? "")
            ) return a;
          }
          return undefined;
        },
        15_000,
      );
      assert.ok(alert.url.startsWith(cloud.blobsUrl), alert.url);
      assert.ok(denied.id);

      // Every unit status the cloud received is valid v7 (rebuilt from what devcloud parsed,
      // which round-trips byte for byte, see the conformance tests).
      assert.ok(statuses.some((s) => !s.isDeltaInfo));
      console.log(
        `unit statuses received: ${statuses.filter((s) => !s.isDeltaInfo).length} full, ` +
          `${statuses.filter((s) => s.isDeltaInfo).length} delta (schema checked: ${HAVE_SPEC})`,
      );
      if (HAVE_SPEC) {
        const validate = await loadValidator();
        for (const s of statuses) {
          const env = JSON.parse(new TextDecoder().decode(encodeEnvelope(buildEnvelope(
            { systemId, txn: crypto.randomUUID(), createdAt: new Date() },
            buildUnitStatus(s),
          ))));
          assert.deepEqual(validate(env), [], JSON.stringify(s).slice(0, 2000));
        }
      }
      offEvents();
    } finally {
      await cleanup(u);
    }
  },
});

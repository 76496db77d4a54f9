/**
 * The form `compile.ts` ships: each component bundled into one module (what the binaries
 * embed), run under its exact permission flags as a whole unit: devcloud deploys a busybox
 * service, the instance becomes active, removing it stops it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nullLogger } from "@aos/shared/logger";
import { planCompile } from "../compile.ts";
import { startDevcloud } from "../devcloud/cloud.ts";
import {
  busyboxServiceManifest,
  type LocalUnit,
  startLocalUnit,
  writeBusyboxService,
  writeLocalUnit,
} from "../devcloud/local_unit.ts";
import { waitFor } from "../devcloud/process.ts";
import { smSkipReason } from "./fixtures/sm_unit.ts";
import { writeSampleUnit } from "./fixtures/configs.ts";
import { tearDownUnit } from "./fixtures/unit_teardown.ts";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const skip = await smSkipReason();
if (skip) console.warn(`bundled unit test skipped: ${skip}`);

Deno.test({
  name: "bundled components (compile.ts's bundles) run a whole unit: deploy, active, remove",
  ignore: skip !== undefined,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "aos-bundled-" });
    const sample = await writeSampleUnit();
    let unit: LocalUnit | undefined;
    const cloud = await startDevcloud({
      workingDir: join(root, "devcloud"),
      cloudListen: "localhost:0",
      blobsListen: "localhost:0",
      logger: nullLogger,
    });
    try {
      // The bundles exactly as compile.ts makes them (its plan's `deno bundle` commands).
      const mains: Record<string, string> = {};
      for (const t of await planCompile("main", `${sample.root}/etc`, join(root, "dist"))) {
        const out = await new Deno.Command(Deno.execPath(), {
          args: t.bundleArgs,
          cwd: repoRoot,
          stdout: "null",
          stderr: "piped",
        }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
        mains[t.component] = t.bundle;
      }

      const layout = await writeLocalUnit(join(root, "unit"), cloud);
      unit = await startLocalUnit(cloud, layout, { mains });
      for (const p of unit.processes) {
        const cmdline = await Deno.readTextFile(`/proc/${p.pid}/cmdline`);
        assert.ok(cmdline.includes(`${p.name}.bundle.js`), `${p.name} runs its bundle`);
      }

      const dir = join(root, "services", "hello");
      await writeBusyboxService(dir, "hello from a bundle\n");
      await cloud.deploy("hello", {
        instances: 1,
        source: join(dir, "rootfs"),
        manifest: busyboxServiceManifest("hello", "1.0.0"),
      });
      await waitFor("1 instance active", () => {
        const s = cloud.status().services.find((x) => x.name === "hello")?.units[0];
        if (s?.failed) throw new Error(`deploy failed: ${JSON.stringify(s)}`);
        return s?.done;
      }, 120_000);
      assert.equal((await unit.runc.list()).filter((c) => c.status === "running").length, 1);

      await cloud.remove("hello");
      await waitFor(
        "the instance gone",
        async () => (await unit!.runc.list()).length === 0,
        60_000,
      );
    } finally {
      const left = await tearDownUnit({ unit, cloud, root });
      await Deno.remove(sample.root, { recursive: true }).catch(() => {});
      assert.deepEqual(left.containers, [], "containers left at stop");
      assert.deepEqual(left.mounts, [], "mounts left at stop");
    }
  },
});

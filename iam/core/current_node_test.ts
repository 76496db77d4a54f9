import assert from "node:assert/strict";
import { parseConfigText } from "@aos/shared/config";
import { nullLogger } from "@aos/shared/logger";
import { iamConfigSchema } from "../config.ts";
import { CurrentNode, parseCpuInfo, parseMemTotal } from "./current_node.ts";
import { checkTransition, readNodeState, writeNodeState } from "./node_state.ts";

const cpuinfo = `processor\t: 0
physical id\t: 0
model name\t: Intel(R) Xeon(R) CPU
cpu cores\t: 2
siblings\t: 4

processor\t: 1
physical id\t: 0
model name\t: Intel(R) Xeon(R) CPU
cpu cores\t: 2
siblings\t: 4

processor\t: 2
physical id\t: 1
model name\t: Other CPU
cpu cores\t: 1
siblings\t: 1
`;

Deno.test({
  name: "cpuinfo groups by physical package; meminfo gives bytes",
  permissions: "none",
  fn() {
    const cpus = parseCpuInfo(cpuinfo, "x86_64");
    assert.equal(cpus.length, 2);
    assert.equal(cpus[0]!.modelName, "Intel(R) Xeon(R) CPU");
    assert.equal(cpus[0]!.numCores, 2n);
    assert.equal(cpus[0]!.numThreads, 4n);
    assert.equal(parseCpuInfo("", "aarch64")[0]!.numCores, 1n);
    assert.equal(parseMemTotal("MemTotal:       16303428 kB\nMemFree: 1 kB"), 16303428n * 1024n);
    assert.equal(parseMemTotal("garbage"), 0n);
  },
});

Deno.test("node state file: absent, provisioned, paused, garbage; atomic writes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/.provisionstate`;
    assert.deepEqual(await readNodeState(path), { state: "unprovisioned" });
    await writeNodeState(path, "provisioned");
    assert.deepEqual(await readNodeState(path), { state: "provisioned" });
    await writeNodeState(path, "paused");
    assert.equal((await readNodeState(path)).state, "paused");
    await Deno.writeTextFile(path, "bogus");
    const bad = await readNodeState(path);
    assert.equal(bad.state, "error");
    assert.match(bad.error!, /holds "bogus"/);
    await writeNodeState(path, "unprovisioned");
    await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound);
    await writeNodeState(path, "unprovisioned");
    assert.throws(
      () => checkTransition("pause", "unprovisioned"),
      /Cannot pause: node is unprovisioned/,
    );
    checkTransition("resume", "paused");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("current node info from config, /proc and statfs; state changes notify", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/machine-id`, "node-42\nignored\n");
    const cfg = parseConfigText(
      "iam.cfg",
      JSON.stringify({
        caCert: "/ca",
        workingDir: dir,
        nodeInfo: {
          nodeIdPath: `${dir}/machine-id`,
          nodeName: "Main node",
          nodeType: "main",
          maxDmips: 12000,
          provisioningStatePath: `${dir}/.provisionstate`,
          attrs: { MainNode: "", AosComponents: "cm,iam,sm" },
          partitions: [{ name: "aos", types: ["storages"], path: dir }],
          os: "linux",
          osVersion: "6.1",
        },
        certModules: [{ id: "iam", plugin: "filemodule", params: { storagePath: dir } }],
      }),
      iamConfigSchema,
    );
    const node = await CurrentNode.create(cfg, nullLogger);
    const info = node.info;
    assert.equal(info.nodeId, "node-42");
    assert.equal(info.title, "Main node");
    assert.equal(info.maxDmips, 12000n);
    assert.ok(info.totalRam > 0n);
    assert.ok(info.cpus.length >= 1);
    assert.ok(info.partitions[0]!.totalSize > 0n);
    assert.equal(info.state, "unprovisioned");
    assert.ok(node.isMainNode);
    const seen: string[] = [];
    node.subscribe((i) => seen.push(i.state));
    await node.setState("provisioned");
    assert.deepEqual(seen, ["provisioned"]);
    assert.equal((await Deno.readTextFile(`${dir}/.provisionstate`)).trim(), "provisioned");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { cgroupFiles, detectCgroupLayout, readCgroupValues } from "./cgroups.ts";

Deno.test("detectCgroupLayout: cgroup.controllers at the root means v2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await detectCgroupLayout(dir), "v1");
    await Deno.writeTextFile(`${dir}/cgroup.controllers`, "cpu memory pids\n");
    assert.equal(await detectCgroupLayout(dir), "v2");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "cgroupFiles and readCgroupValues for both layouts",
  permissions: "none",
  async fn() {
    const v1 = cgroupFiles("v1", "/aos/x", "/cg");
    assert.equal(v1.memoryLimit, "/cg/memory/aos/x/memory.limit_in_bytes");
    assert.equal(v1.cpuQuota, "/cg/cpu/aos/x/cpu.cfs_quota_us");
    const v1Files: Record<string, string> = {
      [v1.memoryLimit]: "9223372036854771712\n",
      [v1.memoryUsage]: "4096\n",
      [v1.pidsMax]: "max\n",
      [v1.pidsCurrent]: "2\n",
      [v1.cpuQuota]: "-1\n",
      [v1.cpuPeriod]: "100000\n",
      [v1.cpuUsage]: "5000000\n",
    };
    assert.deepEqual(await readCgroupValues(v1, (p) => Promise.resolve(v1Files[p]!)), {
      memoryLimit: null,
      memoryUsage: 4096,
      pidsLimit: null,
      pidsCurrent: 2,
      cpuQuotaUs: null,
      cpuPeriodUs: 100000,
      cpuUsageUs: 5000,
    });
    const v2 = cgroupFiles("v2", "aos/x", "/cg");
    assert.equal(v2.memoryLimit, "/cg/aos/x/memory.max");
    const v2Files: Record<string, string> = {
      [v2.memoryLimit]: "67108864\n",
      [v2.memoryUsage]: "8192\n",
      [v2.pidsMax]: "8\n",
      [v2.pidsCurrent]: "3\n",
      [v2.cpuQuota]: "50000 100000\n",
      [v2.cpuUsage]: "usage_usec 1234\nuser_usec 1000\n",
    };
    assert.deepEqual(await readCgroupValues(v2, (p) => Promise.resolve(v2Files[p]!)), {
      memoryLimit: 67108864,
      memoryUsage: 8192,
      pidsLimit: 8,
      pidsCurrent: 3,
      cpuQuotaUs: 50000,
      cpuPeriodUs: 100000,
      cpuUsageUs: 1234,
    });
  },
});

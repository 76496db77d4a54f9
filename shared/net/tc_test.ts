import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { RecordingRunner } from "../exec/fake_runner.ts";
import { IpTool } from "./ip.ts";
import { ifbName } from "./names.ts";
import { applyBandwidth, clearBandwidth, tbfFromKbit, TcTool } from "./tc.ts";
import { netnsSkipReason, realRunner, skipNotice, withNetns } from "./_netns_testing.ts";

Deno.test({
  name: "tc: TBF parameters from kbit/s follow sm.md §5.5",
  permissions: "none",
  fn: () => {
    assert.deepEqual(tbfFromKbit(1000), {
      rateBytesPerSec: 125000,
      burstBytes: 12800,
      limitBytes: 51200,
    });
    assert.equal(tbfFromKbit(1).rateBytesPerSec, 125);
    assert.throws(() => tbfFromKbit(0), AosError);
    assert.throws(() => tbfFromKbit(1.5), AosError);
  },
});

Deno.test({
  name: "tc: argument building and bandwidth plan",
  permissions: "none",
  fn: async () => {
    const fake = new RecordingRunner({ allow: ["ip", "tc"] });
    const ip = new IpTool({ runner: fake });
    const tc = new TcTool({ runner: fake }).inNetns("n1");
    await tc.setRootTbf("veth1", tbfFromKbit(8));
    await applyBandwidth({ ip, tc: new TcTool({ runner: fake }) }, "veth1", { uploadKbit: 16 });
    const ifb = ifbName("veth1");
    assert.deepEqual(fake.lines, [
      "tc -n n1 qdisc replace dev veth1 root tbf rate 1000bps burst 12800 limit 51200",
      "tc qdisc del dev veth1 root",
      "tc qdisc del dev veth1 ingress",
      `ip link delete dev ${ifb}`,
      `ip link add name ${ifb} type ifb`,
      `ip link set dev ${ifb} up`,
      `tc qdisc replace dev ${ifb} root tbf rate 2000bps burst 12800 limit 51200`,
      "tc qdisc replace dev veth1 handle ffff: ingress",
      `tc filter add dev veth1 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ${ifb}`,
    ]);
    await assert.rejects(
      tc.setRootTbf("veth1", { rateBytesPerSec: 0, burstBytes: 1, limitBytes: 1 }),
      AosError,
    );
    await assert.rejects(tc.addIngress("bad dev"), AosError);
  },
});

const skip = netnsSkipReason("tc");
Deno.test({
  name: "tc: download and upload limits on a veth in a namespace, read back, cleared",
  ignore: skipNotice("tc netns", skip),
  fn: async () => {
    await withNetns(1, async ([ns], hostIp) => {
      assert.ok(ns);
      const ip = hostIp.inNetns(ns);
      const tc = new TcTool({ runner: realRunner(), netns: ns });
      await ip.linkAddVeth("veth0", "peer0");
      await ip.linkSetUp("veth0");
      await ip.linkSetUp("peer0");

      const ifb = await applyBandwidth({ ip, tc }, "veth0", {
        downloadKbit: 1000,
        uploadKbit: 2000,
      });
      assert.equal(ifb, ifbName("veth0"));
      // Applying twice converges to the same state.
      await applyBandwidth({ ip, tc }, "veth0", { downloadKbit: 1000, uploadKbit: 2000 });

      const onVeth = await tc.qdiscShow("veth0");
      const root = onVeth.find((q) => q.root === true);
      assert.equal(root?.kind, "tbf");
      assert.equal(root?.options?.rate, 125000);
      assert.equal(root?.options?.burst, 12800);
      assert.ok(onVeth.some((q) => q.kind === "ingress"));
      const ifbRoot = (await tc.qdiscShow(ifb)).find((q) => q.root === true);
      assert.equal(ifbRoot?.kind, "tbf");
      assert.equal(ifbRoot?.options?.rate, 250000);
      assert.equal((await ip.linkGet(ifb!))?.up, true);
      const redirects = (await tc.ingressFilters("veth0"))
        .flatMap((f) => f.options?.actions ?? [])
        .filter((a) => a.kind === "mirred");
      assert.deepEqual(redirects.map((a) => a.to_dev), [ifb]);

      // Dropping the upload limit removes its IFB and redirect, keeps the download TBF.
      assert.equal(await applyBandwidth({ ip, tc }, "veth0", { downloadKbit: 500 }), undefined);
      assert.equal(await ip.linkExists(ifb!), false);
      const downOnly = await tc.qdiscShow("veth0");
      assert.equal(downOnly.find((q) => q.root === true)?.options?.rate, 62500);
      assert.equal(downOnly.some((q) => q.kind === "ingress"), false);

      await applyBandwidth({ ip, tc }, "veth0", { uploadKbit: 64 });
      await clearBandwidth({ ip, tc }, "veth0");
      assert.equal(await ip.linkExists(ifb!), false);
      const cleared = await tc.qdiscShow("veth0");
      assert.equal(cleared.some((q) => q.kind === "tbf" || q.kind === "ingress"), false);
      await clearBandwidth({ ip, tc }, "veth0"); // nothing left: fine
    });
  },
});

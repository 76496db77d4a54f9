import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { RecordingRunner } from "../exec/fake_runner.ts";
import { IpTool } from "./ip.ts";
import { netnsSkipReason, realRunner, skipNotice, withNetns } from "./_netns_testing.ts";

function throwsCode(fn: () => unknown, code: string) {
  assert.throws(fn, (e: unknown) => e instanceof AosError && e.code === code);
}

Deno.test({
  name: "ip: argument building (host and namespace)",
  permissions: "none",
  fn: async () => {
    const fake = new RecordingRunner({ allow: ["ip"] });
    const ip = new IpTool({ runner: fake });
    const ns = ip.inNetns("inst1");
    await ip.netnsAdd("inst1");
    await ip.linkAddBridge("br-0a1b2c3d");
    await ip.linkAddVeth("veth01", "eth0", { peerNetns: "inst1" });
    await ip.linkAddVlan("vlan-1", "eth0", 42);
    await ip.linkSetMaster("veth01", "br-0a1b2c3d");
    await ip.linkSetHairpin("veth01", true);
    await ip.linkSetNetns("tmp0", "inst1", { newName: "eth0" });
    await ns.addrAdd("eth0", "172.17.0.5/16");
    await ns.linkSetUp("eth0");
    await ns.routeAdd({ dst: "default", via: "172.17.0.1" });
    await ip.routeDelete({ dst: "10.1.0.0/24", dev: "br0" });
    assert.deepEqual(ip.netnsExecArgs("inst1", "ping", ["-c", "1"]), [
      "netns",
      "exec",
      "inst1",
      "ping",
      "-c",
      "1",
    ]);
    assert.deepEqual(fake.lines, [
      "ip netns add inst1",
      "ip -n inst1 link set dev lo up",
      "ip link add name br-0a1b2c3d type bridge",
      "ip link add name veth01 type veth peer name eth0 netns inst1",
      "ip link add link eth0 name vlan-1 type vlan id 42",
      "ip link set dev veth01 master br-0a1b2c3d",
      "ip link set dev veth01 type bridge_slave hairpin on",
      "ip link set dev tmp0 netns inst1 name eth0",
      "ip -n inst1 addr add 172.17.0.5/16 dev eth0",
      "ip -n inst1 link set dev eth0 up",
      "ip -n inst1 route add default via 172.17.0.1",
      "ip route delete 10.1.0.0/24 dev br0",
    ]);
  },
});

Deno.test({
  name: "ip: names and addresses are validated before any call",
  permissions: "none",
  fn: async () => {
    const fake = new RecordingRunner();
    const ip = new IpTool({ runner: fake });
    for (const bad of ["-x", "a b", "sixteen-chars-xx", "", "a/b", "help;rm"]) {
      await assert.rejects(ip.linkAddBridge(bad), AosError, bad);
    }
    await assert.rejects(ip.addrAdd("eth0", "300.1.1.1/24"), AosError);
    await assert.rejects(ip.addrAdd("eth0", "10.0.0.1"), AosError);
    await assert.rejects(ip.linkAddVlan("v", "eth0", 4095), AosError);
    await assert.rejects(ip.routeAdd({ dst: "10.0.0.1/24" }), AosError);
    await assert.rejects(ip.netnsAdd("../etc"), AosError);
    throwsCode(() => ip.inNetns("-n"), "invalidArgument");
    assert.equal(fake.calls.length, 0);
  },
});

Deno.test({
  name: "ip: JSON output is parsed and validated",
  permissions: "none",
  fn: async () => {
    const fake = new RecordingRunner({
      respond: (c) => {
        const a = c.args.join(" ");
        if (a === "-d -j link show") {
          return {
            stdout: JSON.stringify([
              { ifindex: 1, ifname: "lo", flags: ["LOOPBACK", "UP"] },
              {
                ifindex: 3,
                ifname: "va",
                link: "vb",
                flags: ["BROADCAST"],
                master: "br0",
                linkinfo: { info_kind: "veth", info_slave_kind: "bridge" },
              },
            ]),
          };
        }
        if (a === "-j netns list") return { stdout: "" };
        if (a === "-j -4 route show") {
          return { stdout: '[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]' };
        }
        if (a.startsWith("link delete")) return { code: 1, stderr: "Cannot find device\n" };
        return { stdout: "[{]" };
      },
    });
    const ip = new IpTool({ runner: fake });
    const links = await ip.linkShow();
    assert.equal(links.length, 2);
    assert.equal(links[0]?.up, true);
    assert.equal(links[1]?.kind, "veth");
    assert.equal(links[1]?.master, "br0");
    assert.deepEqual(await ip.netnsList(), []);
    assert.equal(await ip.defaultRouteDevice(), "eth0");
    await ip.linkDelete("gone"); // absent: fine
    await assert.rejects(ip.linkDelete("va"), /Cannot delete link "va"/);
    await assert.rejects(ip.addrShow(), /Cannot parse ip addr show: invalid JSON/);
  },
});

const pingSkip = netnsSkipReason("ping");
Deno.test({
  name: "ip: two namespaces joined by a bridge in a third one ping each other",
  ignore: skipNotice("ip netns ping", pingSkip),
  fn: async () => {
    await withNetns(3, async ([nsBr, nsA, nsB], ip) => {
      assert.ok(nsBr && nsA && nsB);
      const br = ip.inNetns(nsBr);
      const a = ip.inNetns(nsA);
      const b = ip.inNetns(nsB);
      assert.ok(await ip.netnsExists(nsA));

      await br.linkAddBridge("br0");
      await br.addrAdd("br0", "10.200.0.1/24");
      await br.linkSetUp("br0");
      // Peer created straight in the target namespace.
      await br.linkAddVeth("va", "eth0", { peerNetns: nsA });
      // Peer moved and renamed afterwards (the SM's way).
      await br.linkAddVeth("vb", "tmpb");
      await br.linkSetNetns("tmpb", nsB, { newName: "eth0" });
      for (const v of ["va", "vb"]) {
        await br.linkSetMaster(v, "br0");
        await br.linkSetHairpin(v, true);
        await br.linkSetUp(v);
      }
      await a.addrAdd("eth0", "10.200.0.2/24");
      await a.linkSetUp("eth0");
      await a.routeAdd({ dst: "default", via: "10.200.0.1" });
      await b.addrAdd("eth0", "10.200.0.3/24");
      await b.linkSetUp("eth0");

      const links = await br.linkShow();
      const va = links.find((l) => l.ifname === "va");
      assert.equal(va?.kind, "veth");
      assert.equal(va?.master, "br0");
      assert.equal(links.find((l) => l.ifname === "br0")?.kind, "bridge");
      assert.equal(await br.linkExists("tmpb"), false);
      assert.deepEqual(await a.addrShow("eth0"), [{ dev: "eth0", cidr: "10.200.0.2/24" }]);
      assert.equal(await a.defaultRouteDevice(), "eth0");

      const runner = realRunner();
      const ping = (ns: string, to: string, wait = "2") =>
        runner.run("ip", ip.netnsExecArgs(ns, "ping", ["-c", "1", "-W", wait, to]), {
          allowFailure: true,
          timeoutMs: 10_000,
        });
      assert.equal((await ping(nsA, "10.200.0.3")).code, 0, "A reaches B across the bridge");
      assert.equal((await ping(nsB, "10.200.0.2")).code, 0, "B reaches A");
      assert.equal((await ping(nsA, "10.200.0.1")).code, 0, "A reaches the bridge");
      assert.notEqual((await ping(nsA, "10.200.0.99", "1")).code, 0, "nobody at .99");

      // Cutting B's port makes B unreachable: the pings above really crossed the bridge.
      await br.linkSetDown("vb");
      assert.notEqual((await ping(nsA, "10.200.0.3", "1")).code, 0);

      await a.routeDelete({ dst: "default", via: "10.200.0.1" });
      await a.routeDelete({ dst: "default", via: "10.200.0.1" }); // absent: fine
      assert.equal(await a.defaultRouteDevice(), undefined);
      await a.addrFlush("eth0");
      assert.deepEqual(await a.addrShow("eth0"), []);
      await br.linkDelete("va");
      await br.linkDelete("va"); // absent: fine
      assert.equal(await a.linkExists("eth0"), false, "deleting a veth takes its peer");
    });
  },
});

import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { RecordingRunner } from "../exec/fake_runner.ts";
import { instanceChainName } from "./names.ts";
import { AOS_TABLE, type NftChain, nftExpr, NftTool, parseRuleset } from "./nft.ts";
import { netnsSkipReason, realRunner, skipNotice, withNetns } from "./_netns_testing.ts";

Deno.test({
  name: "nft: expression builders produce nft JSON",
  permissions: "none",
  fn: () => {
    assert.deepEqual(nftExpr.ipSaddr("172.17.0.0/16"), {
      match: {
        op: "==",
        left: { payload: { protocol: "ip", field: "saddr" } },
        right: { prefix: { addr: "172.17.0.0", len: 16 } },
      },
    });
    assert.deepEqual(nftExpr.ipDaddr("172.17.0.5"), {
      match: {
        op: "==",
        left: { payload: { protocol: "ip", field: "daddr" } },
        right: "172.17.0.5",
      },
    });
    assert.deepEqual(nftExpr.ctState(["established", "related"]), {
      match: { op: "in", left: { ct: { key: "state" } }, right: ["established", "related"] },
    });
    assert.deepEqual(nftExpr.ctState(["invalid"]).match, {
      op: "in",
      left: { ct: { key: "state" } },
      right: "invalid",
    });
    assert.deepEqual(nftExpr.jump("instance_a"), { jump: { target: "instance_a" } });
    assert.throws(() => nftExpr.dport("tcp", 0), AosError);
    assert.throws(() => nftExpr.dport("udp", 65536), AosError);
    assert.throws(() => nftExpr.ipSaddr("1.2.3.4/33"), AosError);
    assert.throws(() => nftExpr.oifnameNot('x" accept'), AosError);
    assert.throws(() => nftExpr.jump("a b"), AosError);
  },
});

const ECHO = JSON.stringify({
  nftables: [{
    add: {
      rule: { family: "inet", table: "aos", chain: "forward", expr: [], handle: 7 },
    },
  }],
});

Deno.test({
  name: "nft: commands go as one JSON batch on stdin; netns goes through ip netns exec",
  permissions: "none",
  fn: async () => {
    const fake = new RecordingRunner({
      allow: ["ip"],
      respond: (c) => c.args.includes("-e") ? { stdout: ECHO } : undefined,
    });
    const nft = new NftTool({ runner: fake, netns: "ns1" });
    await nft.addTable(AOS_TABLE);
    const handle = await nft.addRule({
      ...{ family: "inet", table: "aos", chain: "forward" },
      expr: [nftExpr.ctState(["invalid"]), nftExpr.drop()],
    });
    assert.equal(handle, 7);
    assert.deepEqual(fake.lines, [
      "ip netns exec ns1 nft -j -f -",
      "ip netns exec ns1 nft -e -a -j -f -",
    ]);
    assert.deepEqual(JSON.parse(fake.calls[0]?.stdin ?? ""), {
      nftables: [{ add: { table: { family: "inet", name: "aos" } } }],
    });
    await assert.rejects(nft.addTable({ family: "inet", name: "bad name" }), AosError);
    await assert.rejects(
      nft.addChain({ family: "inet", table: "aos", name: "x;y" }),
      AosError,
    );
    assert.equal(fake.calls.length, 2);
  },
});

Deno.test({
  name: "nft: ruleset parsing keeps tables, chains and rules and rejects bad shapes",
  permissions: "none",
  fn: () => {
    const rs = parseRuleset([
      { metainfo: { version: "1.0.6" } },
      { table: { family: "inet", name: "aos", handle: 1 } },
      {
        chain: {
          family: "inet",
          table: "aos",
          name: "forward",
          handle: 1,
          type: "filter",
          hook: "forward",
          prio: 0,
          policy: "drop",
        },
      },
      { rule: { family: "inet", table: "aos", chain: "forward", handle: 2, expr: [] } },
      { set: { family: "inet", name: "s", table: "aos" } },
    ]);
    assert.equal(rs.tables.length, 1);
    assert.equal(rs.chains[0]?.policy, "drop");
    assert.equal(rs.rules[0]?.handle, 2);
    assert.equal("comment" in (rs.rules[0] ?? {}), false);
    assert.throws(() => parseRuleset([{ table: { family: "x", name: "t", handle: 1 } }]), AosError);
  },
});

const skip = netnsSkipReason("nft");
Deno.test({
  name: "nft: table inet aos with chains and rules in a namespace, read back, deleted",
  ignore: skipNotice("nft netns", skip),
  fn: async () => {
    const runner = realRunner();
    const host = new NftTool({ runner });
    const hostTablesBefore = await host.listTables();
    await withNetns(1, async ([ns]) => {
      assert.ok(ns);
      const nft = new NftTool({ runner, netns: ns });
      assert.equal(await nft.listTable(AOS_TABLE), undefined);
      await nft.addTable(AOS_TABLE);
      await nft.addTable(AOS_TABLE); // idempotent
      const forward: NftChain = {
        family: "inet",
        table: "aos",
        name: "forward",
        type: "filter",
        hook: "forward",
        prio: 0,
        policy: "drop",
      };
      await nft.addChain(forward);
      await nft.addChain({
        family: "inet",
        table: "aos",
        name: "postrouting",
        type: "nat",
        hook: "postrouting",
        prio: 100,
      });
      const chain = instanceChainName("svc-1.subj.0");
      await nft.addChain({ family: "inet", table: "aos", name: chain });
      const at = { family: "inet", table: "aos" } as const;
      const h1 = await nft.addRule({
        ...at,
        chain: "forward",
        expr: [nftExpr.ctState(["established", "related"]), nftExpr.accept()],
      });
      const hJump = await nft.addRule({
        ...at,
        chain: "forward",
        expr: [nftExpr.ipDaddr("10.77.0.5"), nftExpr.jump(chain)],
      });
      const hPort = await nft.addRule({
        ...at,
        chain,
        comment: "exposed port",
        expr: [nftExpr.ipDaddr("10.77.0.5"), nftExpr.dport("tcp", 8080), nftExpr.accept()],
      });
      await nft.addRule({
        ...at,
        chain: "postrouting",
        expr: [
          nftExpr.ipSaddr("10.77.0.0/24"),
          nftExpr.oifnameNot("br-0011aabb"),
          nftExpr.masquerade(),
        ],
      });
      assert.equal(new Set([h1, hJump, hPort]).size, 3);

      const rs = await nft.listTable(AOS_TABLE);
      assert.ok(rs);
      assert.deepEqual(rs.chains.find((c) => c.name === "forward"), {
        ...forward,
        handle: rs.chains.find((c) => c.name === "forward")?.handle,
      });
      const port = rs.rules.find((r) => r.handle === hPort);
      assert.equal(port?.chain, chain);
      assert.equal(port?.comment, "exposed port");
      assert.deepEqual(port?.expr, [
        nftExpr.ipDaddr("10.77.0.5"),
        nftExpr.dport("tcp", 8080),
        nftExpr.accept(),
      ]);
      assert.equal(rs.rules.filter((r) => r.chain === "forward").length, 2);

      // Rules go precisely by handle; the chain can go once nothing jumps to it.
      await nft.deleteRule({ ...at, chain: "forward", handle: hJump });
      await nft.flushChain({ ...at, name: chain });
      await nft.deleteChain({ ...at, name: chain });
      const after = await nft.listRuleset();
      assert.equal(after.rules.some((r) => r.handle === hJump), false);
      assert.equal(after.chains.some((c) => c.name === chain), false);
      assert.equal(after.rules.some((r) => r.handle === h1), true);

      // A failing batch is atomic and reports nft's message.
      await assert.rejects(
        nft.apply([
          { add: { chain: { ...at, name: "half" } } },
          { delete: { rule: { ...at, chain: "forward", handle: 99999 } } },
        ]),
        (e: unknown) => e instanceof AosError && e.code === "failed" && e.exitCode !== 0,
      );
      assert.equal((await nft.listRuleset()).chains.some((c) => c.name === "half"), false);

      await nft.deleteTable(AOS_TABLE);
      await nft.deleteTable(AOS_TABLE); // absent: fine
      assert.equal(await nft.listTable(AOS_TABLE), undefined);
    });
    assert.deepEqual(await host.listTables(), hostTablesBefore, "host ruleset untouched");
  },
});

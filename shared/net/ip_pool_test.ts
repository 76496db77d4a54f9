import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { DEFAULT_NETWORK_POOLS, HostAllocator, SubnetAllocator } from "./ip_pool.ts";

function throwsCode(fn: () => unknown, code: string) {
  assert.throws(fn, (e: unknown) => e instanceof AosError && e.code === code);
}

const t = (name: string, fn: () => void) => Deno.test({ name, permissions: "none", fn });

t("subnets: upstream defaults give 15 /16 networks in pool order, then noMemory", () => {
  const a = new SubnetAllocator();
  assert.equal(a.capacity, 15);
  const got = Array.from({ length: 15 }, (_, i) => a.allocate(`net${i}`));
  assert.deepEqual(got.slice(0, 5), [
    "172.17.0.0/16",
    "172.18.0.0/16",
    "172.19.0.0/16",
    "172.20.0.0/16",
    "172.21.0.0/16",
  ]);
  assert.equal(got[14], "172.31.0.0/16");
  assert.equal(new Set(got).size, 15);
  throwsCode(() => a.allocate("one-too-many"), "noMemory");
  assert.equal(a.allocate("net3"), "172.20.0.0/16", "same owner, same subnet");
  assert.ok(a.release("net1"));
  assert.ok(!a.release("net1"));
  assert.equal(a.allocate("late"), "172.18.0.0/16", "freed subnet is reused");
  assert.equal(DEFAULT_NETWORK_POOLS.length, 6);
});

t("subnets: /24s from a custom pool, exclusions, reserve conflicts", () => {
  const a = new SubnetAllocator({
    pools: ["10.10.0.0/22"],
    prefix: 24,
    exclude: ["10.10.1.128/25"],
  });
  assert.equal(a.allocate("a"), "10.10.0.0/24");
  assert.equal(a.allocate("b"), "10.10.2.0/24", "10.10.1.0/24 overlaps an excluded block");
  assert.equal(a.reserve("c", "10.10.3.0/24"), "10.10.3.0/24");
  throwsCode(() => a.reserve("d", "10.10.3.0/24"), "alreadyExist");
  throwsCode(() => a.reserve("c", "10.10.0.0/24"), "alreadyExist");
  throwsCode(() => a.reserve("d", "10.11.0.0/24"), "outOfRange");
  throwsCode(() => a.reserve("d", "10.10.0.0/23"), "outOfRange");
  throwsCode(() => a.allocate("d"), "noMemory");
  throwsCode(() => a.allocate(""), "invalidArgument");
  assert.equal(a.lookup("b"), "10.10.2.0/24");
  assert.equal(a.lookup("zz"), undefined);
});

t("subnets: bad pools are refused", () => {
  throwsCode(() => new SubnetAllocator({ pools: [] }), "invalidArgument");
  throwsCode(() => new SubnetAllocator({ pools: ["10.0.0.0/24"], prefix: 16 }), "invalidArgument");
  throwsCode(
    () => new SubnetAllocator({ pools: ["10.0.0.0/16", "10.0.128.0/17"], prefix: 24 }),
    "invalidArgument",
  );
  throwsCode(() => new SubnetAllocator({ pools: ["10.0.0.1/16"] }), "invalidArgument");
});

t("subnets: state survives a JSON round-trip and bad state is refused", () => {
  const a = new SubnetAllocator({ pools: ["10.20.0.0/16"], prefix: 24 });
  a.allocate("x");
  a.allocate("y");
  a.release("x");
  const text = JSON.stringify(a);
  const b = SubnetAllocator.fromJSON(JSON.parse(text));
  assert.deepEqual(b.toJSON(), a.toJSON());
  assert.equal(b.allocate("y"), "10.20.1.0/24");
  assert.equal(b.allocate("z"), "10.20.0.0/24");
  throwsCode(() => SubnetAllocator.fromJSON({ pools: "x" }), "invalidArgument");
  throwsCode(
    () =>
      SubnetAllocator.fromJSON({
        pools: ["10.20.0.0/16"],
        prefix: 24,
        allocations: { a: "10.20.0.0/24", b: "10.20.0.0/24" },
      }),
    "alreadyExist",
  );
});

t("hosts: skip network, gateway and broadcast; lowest free first", () => {
  const h = new HostAllocator("172.17.0.0/24");
  assert.equal(h.gateway, "172.17.0.1");
  assert.equal(h.free, 253);
  assert.equal(h.allocate("i0"), "172.17.0.2");
  assert.equal(h.allocate("i1"), "172.17.0.3");
  assert.equal(h.allocate("i0"), "172.17.0.2");
  h.release("i0");
  assert.equal(h.allocate("i2"), "172.17.0.2");
  for (let i = 3; i < 254; i++) h.allocate(`n${i}`);
  assert.equal(h.free, 0);
  assert.equal(h.ownerOf("172.17.0.254"), "n253");
  throwsCode(() => h.allocate("full"), "noMemory");
  throwsCode(() => h.reserve("x", "172.17.0.255"), "outOfRange");
  throwsCode(() => h.reserve("x", "172.17.0.0"), "outOfRange");
  throwsCode(() => h.reserve("x", "172.17.0.1"), "outOfRange");
  throwsCode(() => h.reserve("x", "172.17.1.5"), "outOfRange");
});

t("hosts: /30, /31 and /32 edge cases", () => {
  const h30 = new HostAllocator("10.0.0.0/30");
  assert.equal(h30.allocate("a"), "10.0.0.2");
  throwsCode(() => h30.allocate("b"), "noMemory");

  const h31 = new HostAllocator("10.0.0.4/31");
  assert.equal(h31.gateway, "10.0.0.4");
  assert.equal(h31.allocate("a"), "10.0.0.5");
  throwsCode(() => h31.allocate("b"), "noMemory");

  const h32 = new HostAllocator("10.0.0.9/32");
  assert.equal(h32.free, 0);
  throwsCode(() => h32.allocate("a"), "noMemory");
  const h32open = new HostAllocator("10.0.0.9/32", { reserveGateway: false });
  assert.equal(h32open.gateway, undefined);
  assert.equal(h32open.allocate("a"), "10.0.0.9");
  throwsCode(() => h32open.allocate("b"), "noMemory");
});

t("hosts: extra reserved addresses and JSON round-trip", () => {
  const h = new HostAllocator("10.5.0.0/29", { reserved: ["10.5.0.2", "10.5.0.1"] });
  assert.equal(h.free, 4);
  assert.equal(h.allocate("a"), "10.5.0.3");
  h.reserve("b", "10.5.0.6");
  throwsCode(() => h.reserve("c", "10.5.0.6"), "alreadyExist");
  throwsCode(() => h.reserve("c", "10.5.0.2"), "outOfRange");
  const copy = HostAllocator.fromJSON(JSON.parse(JSON.stringify(h)));
  assert.deepEqual(copy.toJSON(), h.toJSON());
  assert.deepEqual(copy.allocations, { a: "10.5.0.3", b: "10.5.0.6" });
  assert.equal(copy.allocate("c"), "10.5.0.4");
  assert.equal(copy.free, 1);
  throwsCode(() => HostAllocator.fromJSON({ subnet: 5 }), "invalidArgument");
  throwsCode(
    () => HostAllocator.fromJSON({ subnet: "10.5.0.0/29", allocations: { a: "10.6.0.1" } }),
    "outOfRange",
  );
});

import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import {
  Cidr,
  formatIpv4,
  isIpv4,
  netmaskText,
  parseInterfaceAddress,
  parseIpv4,
  prefixMask,
} from "./cidr.ts";

function throwsCode(fn: () => unknown, code: string) {
  assert.throws(fn, (e: unknown) => e instanceof AosError && e.code === code);
}

const t = (name: string, fn: () => void) => Deno.test({ name, permissions: "none", fn });

t("ipv4: parse and format round-trip, bounds", () => {
  assert.equal(parseIpv4("0.0.0.0"), 0);
  assert.equal(parseIpv4("255.255.255.255"), 0xffffffff);
  assert.equal(parseIpv4("172.17.0.1"), 0xac110001);
  assert.equal(formatIpv4(0xac110001), "172.17.0.1");
  assert.equal(formatIpv4(0xffffffff), "255.255.255.255");
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.-1",
      " 1.2.3.4",
      "a.b.c.d",
    ]
  ) {
    assert.equal(isIpv4(bad), false, bad);
    throwsCode(() => parseIpv4(bad), "invalidArgument");
  }
  throwsCode(() => formatIpv4(2 ** 32), "outOfRange");
  throwsCode(() => formatIpv4(-1), "outOfRange");
});

t("cidr: parse, network, broadcast, mask", () => {
  const c = Cidr.parse("172.20.0.0/14");
  assert.equal(c.toString(), "172.20.0.0/14");
  assert.equal(formatIpv4(c.broadcast), "172.23.255.255");
  assert.equal(netmaskText(14), "255.252.0.0");
  assert.equal(c.size, 262144);
  assert.equal(prefixMask(0), 0);
  assert.equal(prefixMask(32), 0xffffffff);
  assert.equal(Cidr.parse("0.0.0.0/0").broadcast, 0xffffffff);
  throwsCode(() => Cidr.parse("10.0.0.1/24"), "invalidArgument");
  assert.equal(Cidr.parse("10.0.0.1/24", { strict: false }).toString(), "10.0.0.0/24");
  assert.deepEqual(parseInterfaceAddress("10.0.0.7/24"), {
    address: parseIpv4("10.0.0.7"),
    prefix: 24,
  });
  for (
    const bad of ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/ 8", "10.0.0.0/08", "/8"]
  ) {
    throwsCode(() => Cidr.parse(bad), "invalidArgument");
  }
  assert.equal(JSON.stringify({ c: Cidr.parse("10.1.0.0/16") }), '{"c":"10.1.0.0/16"}');
});

t("cidr: contains and overlaps", () => {
  const a = Cidr.parse("10.1.0.0/16");
  assert.ok(a.contains("10.1.255.255"));
  assert.ok(!a.contains("10.2.0.0"));
  assert.ok(a.contains(Cidr.parse("10.1.4.0/24")));
  assert.ok(!a.contains(Cidr.parse("10.0.0.0/8")));
  assert.ok(a.overlaps(Cidr.parse("10.0.0.0/8")));
  assert.ok(Cidr.parse("10.0.0.0/8").overlaps(a));
  assert.ok(!a.overlaps(Cidr.parse("10.2.0.0/16")));
  assert.ok(Cidr.parse("0.0.0.0/0").contains("255.255.255.255"));
});

t("cidr: host ranges, /31 and /32", () => {
  const c24 = Cidr.parse("192.168.1.0/24");
  assert.equal(c24.hostCount, 254);
  assert.equal(formatIpv4(c24.nthHost(1)), "192.168.1.1");
  assert.equal(formatIpv4(c24.nthHost(254)), "192.168.1.254");
  throwsCode(() => c24.nthHost(0), "outOfRange");
  throwsCode(() => c24.nthHost(255), "outOfRange");
  const c31 = Cidr.parse("10.0.0.4/31");
  assert.equal(c31.hostCount, 2);
  assert.equal(formatIpv4(c31.nthHost(1)), "10.0.0.4");
  assert.equal(formatIpv4(c31.nthHost(2)), "10.0.0.5");
  const c32 = Cidr.parse("10.0.0.9/32");
  assert.equal(c32.hostCount, 1);
  assert.equal(formatIpv4(c32.nthHost(1)), "10.0.0.9");
  assert.equal(c32.broadcast, c32.network);
  assert.equal(Cidr.parse("10.0.0.0/30").hostCount, 2);
});

t("cidr: split", () => {
  const parts = [...Cidr.parse("172.20.0.0/14").split(16)].map(String);
  assert.deepEqual(parts, ["172.20.0.0/16", "172.21.0.0/16", "172.22.0.0/16", "172.23.0.0/16"]);
  assert.deepEqual([...Cidr.parse("10.0.0.0/24").split(24)].map(String), ["10.0.0.0/24"]);
  assert.equal([...Cidr.parse("10.0.0.0/30").split(32)].length, 4);
  // The top of the address space ends the loop.
  assert.equal([...Cidr.parse("255.255.255.0/24").split(26)].length, 4);
  throwsCode(() => [...Cidr.parse("10.0.0.0/24").split(16)], "invalidArgument");
});

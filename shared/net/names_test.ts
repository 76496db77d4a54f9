import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import {
  bridgeName,
  checkIfName,
  checkNetnsName,
  fnv1a32,
  ifbName,
  instanceChainName,
  MAX_IFNAME,
  vethName,
  vlanName,
} from "./names.ts";

const t = (name: string, fn: () => void) => Deno.test({ name, permissions: "none", fn });

t("names: FNV-1a 32 reference values", () => {
  assert.equal(fnv1a32(""), 0x811c9dc5);
  assert.equal(fnv1a32("a"), 0xe40c292c);
  assert.equal(fnv1a32("foobar"), 0xbf9cf968);
});

t("names: kernel object names fit IFNAMSIZ and follow sm.md §5", () => {
  const id = "8a7d6f2e-1b2c-4d3e-9f00-aabbccddeeff";
  assert.match(vethName(id), /^veth[0-9a-f]{8}$/);
  assert.equal(vethName(id), vethName(id));
  assert.notEqual(vethName(id), vethName(`${id}x`));
  assert.equal(vethName("a"), "vethe40c292c");
  assert.match(ifbName(vethName(id)), /^ifb-[0-9a-f]{8}$/);
  assert.match(bridgeName(), /^br-[0-9a-f]{8}$/);
  assert.match(vlanName(), /^vlan-[0-9a-f]{8}$/);
  for (const n of [vethName(id), ifbName("x"), bridgeName(), vlanName()]) {
    assert.ok(n.length <= MAX_IFNAME, n);
    checkIfName(n);
  }
  assert.equal(instanceChainName("svc-1.subj/0"), "instance_svc_1_subj_0");
});

t("names: unsafe names are refused", () => {
  for (const bad of ["", "-n", "a b", "x".repeat(16), "a/b", "é"]) {
    assert.throws(() => checkIfName(bad), AosError, bad);
  }
  for (const bad of ["", ".", "..", "../x", "-x", "a b"]) {
    assert.throws(() => checkNetnsName(bad), AosError, bad);
  }
  assert.equal(
    checkNetnsName("8a7d6f2e-1b2c-4d3e-9f00-aabbccddeeff"),
    "8a7d6f2e-1b2c-4d3e-9f00-aabbccddeeff",
  );
});

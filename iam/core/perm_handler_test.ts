import assert from "node:assert/strict";
import { type InstanceIdent, PermHandler } from "./perm_handler.ts";

const ident = (n: bigint): InstanceIdent => ({
  itemId: "svc",
  subjectId: "subj",
  instance: n,
  type: 0,
  preinstalled: false,
});

Deno.test({
  name: "register returns a stable secret; permissions by secret and server; unregister",
  permissions: "none",
  fn() {
    const perms = new PermHandler();
    const s1 = perms.registerInstance(ident(0n), { vis: { "Signal.*": "rw" } });
    assert.equal(perms.registerInstance(ident(0n), { vis: { "Signal.*": "r" } }), s1);
    const s2 = perms.registerInstance(ident(1n), {});
    assert.notEqual(s1, s2);
    const got = perms.getPermissions(s1, "vis");
    assert.equal(got.ident.instance, 0n);
    assert.deepEqual(got.permissions, { "Signal.*": "r" });
    assert.throws(
      () => perms.getPermissions(s1, "other"),
      /no permissions for functional server "other"/,
    );
    assert.throws(() => perms.getPermissions("nope", "vis"), /Unknown instance secret/);
    perms.unregisterInstance(ident(0n));
    assert.throws(() => perms.getPermissions(s1, "vis"), /Unknown instance secret/);
    assert.throws(() => perms.unregisterInstance(ident(0n)), /is not registered/);
  },
});

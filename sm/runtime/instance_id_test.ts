import assert from "node:assert/strict";
import { AOS_UUID_NAMESPACE, instanceId, isUuid, runtimeId, uuidV3 } from "./instance_id.ts";

// Expected values computed with python3: uuid.uuid3(uuid.NAMESPACE_OID, name).
Deno.test({
  name: "instanceId matches python uuid3 in the OID namespace",
  permissions: "none",
  fn() {
    assert.equal(
      instanceId({ itemId: "service1", subjectId: "subject1", instance: 0 }),
      "c7644e00-aecb-3ff3-87bd-dc2b708a483b",
    );
    assert.equal(
      instanceId({ itemId: "itemA", subjectId: "subj", instance: 42n }),
      "dd0ec4a0-1d8f-3881-8f1d-39af3cd5093a",
    );
    assert.equal(runtimeId("runc", "node0"), "f77f4b2c-1d16-3376-a8a9-e8c38cd185e6");
  },
});

Deno.test({
  name: "uuidV3 sets version and variant bits and rejects a bad namespace",
  permissions: "none",
  fn() {
    const id = uuidV3(AOS_UUID_NAMESPACE, "x");
    assert.ok(isUuid(id));
    assert.equal(id[14], "3");
    assert.ok("89ab".includes(id[19]!));
    assert.throws(() => uuidV3("nope", "x"), RangeError);
    assert.ok(!isUuid("../etc"));
  },
});

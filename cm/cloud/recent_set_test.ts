import assert from "node:assert/strict";
import { RecentSet } from "./recent_set.ts";

Deno.test({
  name: "RecentSet forgets the least recently seen member",
  permissions: "none",
  fn() {
    const s = new RecentSet(2);
    s.add("a");
    s.add("b");
    assert.ok(s.has("a")); // refreshes a
    s.add("c"); // evicts b
    assert.ok(s.has("a"));
    assert.ok(!s.has("b"));
    assert.ok(s.has("c"));
    assert.equal(s.size, 2);
  },
});

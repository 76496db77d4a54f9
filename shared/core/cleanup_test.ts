import assert from "node:assert/strict";
import { CleanupStack } from "./cleanup.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "cleanup runs LIFO and keeps going after a failure",
  ...pure,
  async fn() {
    const order: string[] = [];
    const stack = new CleanupStack();
    stack.add("a", () => order.push("a"));
    stack.add("b", () => {
      throw new Error("b failed");
    });
    stack.add("c", async () => {
      await Promise.resolve();
      order.push("c");
    });
    const failed: string[] = [];
    const errors = await stack.run((name) => failed.push(name));
    assert.deepEqual(order, ["c", "a"]);
    assert.deepEqual(failed, ["b"]);
    assert.deepEqual(errors.length, 1);
    assert.deepEqual(stack.size, 0);
  },
});

Deno.test({
  name: "release forgets the steps; async dispose runs them",
  ...pure,
  async fn() {
    const order: string[] = [];
    const s1 = new CleanupStack();
    s1.add("x", () => order.push("x"));
    s1.release();
    await s1.run();
    {
      await using s2 = new CleanupStack();
      s2.add("y", () => order.push("y"));
    }
    assert.deepEqual(order, ["y"]);
  },
});

import assert from "node:assert/strict";
import { Channel, ChannelClosedError } from "./channel.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "channel delivers in order and drains after close",
  ...pure,
  async fn() {
    const ch = new Channel<number>();
    const pending = ch.receive();
    await ch.send(1);
    await ch.send(2);
    await ch.send(3);
    assert.deepEqual(await pending, 1);
    ch.close();
    const rest: number[] = [];
    for await (const v of ch) rest.push(v);
    assert.deepEqual(rest, [2, 3]);
    assert.deepEqual(await ch.receive(), undefined);
    await assert.rejects(() => ch.send(4), ChannelClosedError);
  },
});

Deno.test({
  name: "bounded channel applies back-pressure",
  ...pure,
  async fn() {
    const ch = new Channel<string>(1);
    await ch.send("a");
    assert.ok(!ch.trySend("b"));
    let sent = false;
    const p = ch.send("b").then(() => (sent = true));
    await Promise.resolve();
    assert.ok(!sent);
    assert.deepEqual(await ch.receive(), "a");
    await p;
    assert.ok(sent);
    assert.deepEqual(await ch.receive(), "b");
  },
});

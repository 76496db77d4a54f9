import assert from "node:assert/strict";
import { backoffDelay, retry, sleep } from "./retry.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "backoff doubles up to the maximum",
  ...pure,
  fn() {
    assert.deepEqual([1, 2, 3, 4, 5].map((a) => backoffDelay(a, 1000, 5000)), [
      1000,
      2000,
      4000,
      5000,
      5000,
    ]);
  },
});

Deno.test({
  name: "retry retries until success and reports the delays",
  ...pure,
  async fn() {
    const delays: number[] = [];
    let calls = 0;
    const result = await retry(() => {
      calls++;
      if (calls < 3) throw new Error(`fail ${calls}`);
      return Promise.resolve("ok");
    }, {
      tries: 5,
      initialDelayMs: 10,
      maxDelayMs: 15,
      sleep: (ms) => {
        delays.push(ms);
        return Promise.resolve();
      },
    });
    assert.deepEqual(result, "ok");
    assert.deepEqual(delays, [10, 15]);
  },
});

Deno.test({
  name: "retry gives up after the tries and honours shouldRetry",
  ...pure,
  async fn() {
    let calls = 0;
    const noSleep = () => Promise.resolve();
    await assert.rejects(
      () => retry(() => Promise.reject(new Error(`n${++calls}`)), { tries: 3, sleep: noSleep }),
      /n3/,
    );
    calls = 0;
    await assert.rejects(
      () =>
        retry(() => Promise.reject(new Error(`n${++calls}`)), {
          tries: 3,
          sleep: noSleep,
          shouldRetry: () => false,
        }),
      /n1/,
    );
  },
});

Deno.test({
  name: "retry and sleep stop on abort",
  ...pure,
  async fn() {
    const ac = new AbortController();
    const p = sleep(10_000, ac.signal);
    ac.abort(new Error("stop"));
    await assert.rejects(() => p, /stop/);
    const ac2 = new AbortController();
    let calls = 0;
    await assert.rejects(
      () =>
        retry(() => {
          calls++;
          ac2.abort(new Error("aborted"));
          return Promise.reject(new Error("x"));
        }, { tries: 10, signal: ac2.signal }),
      /x/,
    );
    assert.deepEqual(calls, 1);
  },
});

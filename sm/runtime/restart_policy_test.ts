import assert from "node:assert/strict";
import { RestartPolicy, runParameters } from "./restart_policy.ts";

function fakeClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

Deno.test({
  name: "a fast crash loop fails after startBurst starts in the window",
  permissions: "none",
  fn() {
    const clock = fakeClock();
    const p = new RestartPolicy(
      { startBurst: 3, startIntervalMs: 5000, restartIntervalMs: 1000 },
      clock,
    );
    p.started();
    clock.advance(100);
    assert.deepEqual(p.onExit(), { restart: true, delayMs: 1000 });
    clock.advance(1000);
    p.started();
    clock.advance(100);
    assert.deepEqual(p.onExit(), { restart: true, delayMs: 1000 });
    clock.advance(1000);
    p.started();
    clock.advance(100);
    const d = p.onExit();
    assert.equal(d.restart, false);
    assert.match((d as { reason: string }).reason, /3 starts within 5000 ms/);
  },
});

Deno.test({
  name: "the window slides: a crash loop late in life is still caught",
  permissions: "none",
  fn() {
    const clock = fakeClock();
    const p = new RestartPolicy(
      { startBurst: 3, startIntervalMs: 5000, restartIntervalMs: 1000 },
      clock,
    );
    p.started();
    // Runs fine for an hour, then crashes every 6 s: never more than 1 start per window.
    clock.advance(3_600_000);
    for (let i = 0; i < 10; i++) {
      assert.equal(p.onExit().restart, true);
      clock.advance(1000);
      p.started();
      clock.advance(5000);
    }
    // Now it starts crash-looping fast: upstream would restart forever (first 5 s long gone).
    let restarts = 0;
    for (;;) {
      clock.advance(50);
      const d = p.onExit();
      if (!d.restart) break;
      restarts++;
      clock.advance(d.delayMs);
      p.started();
      assert.ok(restarts < 10, "the limit never triggered");
    }
    // Three fresh starts fit in one window; the fourth is refused.
    assert.equal(restarts, 3);
  },
});

Deno.test({
  name: "slow crashes keep restarting",
  permissions: "none",
  fn() {
    const clock = fakeClock();
    const p = new RestartPolicy(
      { startBurst: 2, startIntervalMs: 5000, restartIntervalMs: 1000 },
      clock,
    );
    p.started();
    for (let i = 0; i < 50; i++) {
      clock.advance(4500);
      const d = p.onExit();
      assert.equal(d.restart, true);
      clock.advance(1000);
      p.started();
    }
    assert.ok(p.recentStarts <= 3);
  },
});

Deno.test({
  name: "runParameters parses durations and applies defaults",
  permissions: "none",
  fn() {
    assert.deepEqual(runParameters(undefined), {
      startIntervalMs: 5000,
      startBurst: 3,
      restartIntervalMs: 1000,
    });
    assert.deepEqual(
      runParameters({
        runParameters: { startInterval: "10s", startBurst: 5, restartInterval: "200ms" },
      }),
      { startIntervalMs: 10000, startBurst: 5, restartIntervalMs: 200 },
    );
    assert.deepEqual(runParameters({ runParameters: { startBurst: 0, restartInterval: "PT2S" } }), {
      startIntervalMs: 5000,
      startBurst: 3,
      restartIntervalMs: 2000,
    });
  },
});

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { deferTeardownWhile } from "./goaway_guard.ts";

/** Records the teardown calls made on it. */
class FakeSession {
  calls: string[] = [];
  close(...args: unknown[]): void {
    this.calls.push(`close ${args.length}`);
  }
  destroy(...args: unknown[]): void {
    this.calls.push(`destroy ${args.length}`);
  }
}

Deno.test({
  name: "goaway guard: close/destroy made while busy wait for the next macrotask",
  permissions: "none",
  async fn() {
    let busy = true;
    deferTeardownWhile(FakeSession.prototype, () => busy);
    const s = new FakeSession();
    s.close();
    s.destroy(new Error("session error"), 0);
    assert.deepEqual(s.calls, [], "teardown ran inside the native receive");
    busy = false;
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(
      s.calls,
      ["close 0", "destroy 2"],
      "order and arguments are kept",
    );

    // Outside a native receive, close and destroy are immediate.
    s.close();
    assert.deepEqual(s.calls.at(-1), "close 0");
  },
});

const churn = fileURLToPath(
  new URL("./testdata/goaway_churn.ts", import.meta.url),
);

for (const mode of ["client-close", "server-goaway"]) {
  Deno.test(`goaway guard: ${mode} churn survives (denoland/deno#36788)`, async () => {
    // Unguarded, 400 rounds abort or segfault the process in half (client-close) to nearly all
    // (server-goaway: the client receiving GOAWAY) of the runs.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", churn, mode, "400", "guard"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join("\n");
    assert.ok(out.success, `exit ${out.code} signal ${out.signal}: ${stderr}`);
    // The guard found Deno's native receive (else it would pass by luck, doing nothing).
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "done, guard armed: true");
  });
}

import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import { deferCloseOnGoaway } from "./goaway_guard.ts";

/** A session as node:http2 drives it on GOAWAY: emit `goaway`, then close/destroy at once. */
class FakeSession extends EventEmitter {
  calls: string[] = [];
  close(...args: unknown[]): void {
    this.calls.push(`close ${args.length}`);
  }
  destroy(...args: unknown[]): void {
    this.calls.push(`destroy ${args.length}`);
  }
  receiveGoaway(code: number): void {
    this.emit("goaway", code, 0);
    if (code === 0) this.close();
    else this.destroy(new Error("session error"), 0);
  }
}

Deno.test({
  name: "goaway guard: close/destroy right after goaway wait for the next macrotask",
  permissions: "none",
  async fn() {
    const s = new FakeSession();
    deferCloseOnGoaway(s);
    s.receiveGoaway(0);
    assert.deepEqual(s.calls, [], "close ran inside the GOAWAY handling");
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(s.calls, ["close 0"]);

    s.receiveGoaway(2);
    assert.deepEqual(s.calls, ["close 0"]);
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(s.calls, ["close 0", "destroy 2"], "arguments are kept");

    // Outside a GOAWAY, close and destroy are the session's own and immediate.
    assert.ok(!Object.hasOwn(s, "close") && !Object.hasOwn(s, "destroy"));
    s.close();
    assert.deepEqual(s.calls.at(-1), "close 0");
  },
});

const churn = fileURLToPath(new URL("./testdata/goaway_churn.ts", import.meta.url));

Deno.test("goaway guard: servers survive hundreds of clients closing (denoland/deno#36788)", async () => {
  // Unguarded, 400 rounds abort or segfault the process in about half of the runs.
  for (let run = 0; run < 2; run++) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", churn, "client-close", "400", "guard"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join("\n");
    assert.ok(out.success, `run ${run}: exit ${out.code} signal ${out.signal}: ${stderr}`);
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "done");
  }
});

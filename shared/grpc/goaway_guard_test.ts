import assert from "node:assert/strict";
import http2 from "node:http2";
import { fileURLToPath } from "node:url";
import {
  deferTeardownWhile,
  goawayGuardArmed,
  guardSessionPrototype,
  installGoawayGuard,
} from "./goaway_guard.ts";

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
  name: "goaway guard: close/destroy made while busy wait until the turn is over",
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

/** A session class shaped like Deno's: an `emit`, and its native handle under `kHandle`. */
function fakeSessionClass(handleProto: object | undefined) {
  const kHandle = Symbol("kHandle");
  class Base {
    emitted: string[] = [];
    emit(event: string): boolean {
      this.emitted.push(event);
      return true;
    }
  }
  class Session extends Base {
    [kHandle]?: object;
    close(): void {}
    destroy(): void {}
    attach(): void {
      if (handleProto) this[kHandle] = Object.create(handleProto);
    }
  }
  return Session;
}

Deno.test({
  name: "goaway guard: arms on the first session with a native receive, then steps aside",
  permissions: "none",
  fn() {
    let received = 0;
    const native = {
      receive(this: unknown) {
        received++;
      },
    };
    const Session = fakeSessionClass(native);
    const why: string[] = [];
    guardSessionPrototype(Session.prototype, (w) => why.push(w));
    const s = new Session();
    s.emit("newListener"); // no handle yet: keeps looking
    assert.ok(Object.hasOwn(Session.prototype, "emit"));
    s.attach();
    s.emit("connect");
    assert.deepEqual(s.emitted, ["newListener", "connect"], "events still reach the session");
    assert.ok(!Object.hasOwn(Session.prototype, "emit"), "the probe removed itself");
    assert.ok(goawayGuardArmed());
    (Object.create(native) as typeof native).receive();
    assert.equal(received, 1, "the wrapped receive still calls the native one");
    assert.deepEqual(why, []);
  },
});

Deno.test({
  name: "goaway guard: a handle without receive is reported once and not looked at again",
  permissions: "none",
  fn() {
    const Session = fakeSessionClass({});
    const why: string[] = [];
    guardSessionPrototype(Session.prototype, (w) => why.push(w));
    const s = new Session();
    s.attach();
    s.emit("connect");
    s.emit("close");
    assert.deepEqual(why, ["the native session handle has no receive()"]);
    assert.ok(!Object.hasOwn(Session.prototype, "emit"));
    assert.deepEqual(s.emitted, ["connect", "close"]);
  },
});

Deno.test({
  name: "goaway guard: sessions that never show a handle stop the search after 1000 events",
  permissions: "none",
  fn() {
    const Session = fakeSessionClass(undefined);
    const why: string[] = [];
    guardSessionPrototype(Session.prototype, (w) => why.push(w));
    const s = new Session();
    for (let i = 0; i < 999; i++) s.emit("data");
    assert.deepEqual(why, []);
    s.emit("data");
    assert.deepEqual(why, ["no native session handle in 1000 session events"]);
    assert.ok(!Object.hasOwn(Session.prototype, "emit"));
    assert.equal(s.emitted.length, 1000);
  },
});

/**
 * A client session that has made one request and then receives GOAWAY `code` from the server;
 * `watch` sets up what to observe (its listeners run inside the native receive) and resolves
 * with what it saw.
 */
async function clientReceivingGoaway(
  code: number,
  watch: (client: http2.ClientHttp2Session) => Promise<string>,
): Promise<string> {
  const server = http2.createServer();
  server.on("stream", (s: http2.ServerHttp2Stream) => {
    s.respond({ ":status": 200 });
    s.end("x");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  const sessions: http2.ServerHttp2Session[] = [];
  server.on("session", (ss) => sessions.push(ss));
  const client = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const req = client.request({ ":path": "/" });
    req.resume();
    await new Promise((r) => req.on("end", r));
    const seen = watch(client);
    for (const ss of sessions) ss.goaway(code, 0);
    return await seen;
  } finally {
    client.destroy();
    for (const ss of sessions) ss.destroy();
    await new Promise((r) => server.close(r));
  }
}

Deno.test("goaway guard: close(callback) and destroy(error) made during GOAWAY keep their effects", async () => {
  installGoawayGuard();
  for (let round = 0; round < 5; round++) {
    // A NO_ERROR GOAWAY: a listener's close(callback) still gets its callback.
    const closed = await clientReceivingGoaway(
      0,
      (client) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => resolve("no callback"), 2_000);
          client.on("goaway", () =>
            client.close(() => {
              clearTimeout(timer);
              resolve("callback");
            }));
        }),
    );
    assert.equal(closed, "callback", `round ${round}`);
    // An error GOAWAY: node:http2's destroy(error) still emits the session error.
    const errored = await clientReceivingGoaway(
      2,
      (client) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => resolve("no error"), 2_000);
          client.on("error", (e: Error & { code?: string }) => {
            clearTimeout(timer);
            resolve(e.code ?? e.message);
          });
        }),
    );
    assert.equal(errored, "ERR_HTTP2_SESSION_ERROR", `round ${round}`);
  }
  assert.ok(goawayGuardArmed());
});

import assert from "node:assert/strict";
import {
  type CertInfo,
  IAMPublicCertServiceClient,
  type IAMPublicCertServiceServer,
  IAMPublicCertServiceService,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import { createGrpcClient, createGrpcServer } from "@aos/shared/grpc";
import { nullLogger } from "@aos/shared/logger";
import { Fanout } from "./fanout.ts";

async function until(what: string, cond: () => boolean, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function change(n: number, padding: string): CertInfo {
  return {
    type: "iam",
    certUrl: `file:///certs/${n}.pem#${padding}`,
    keyUrl: "",
    serial: new TextEncoder().encode(String(n)),
    issuer: new Uint8Array(),
  };
}

Deno.test("fanout: a stalled subscriber costs a bounded queue, gets the latest, and is removed on cancel", async () => {
  const fanout = new Fanout<CertInfo>({ name: "test", capacity: 4, logger: nullLogger });
  const impl: IAMPublicCertServiceServer = {
    getCert: (_call, cb) => cb(null, change(0, "")),
    subscribeCertChanged: (call) => fanout.attach(call),
  };
  await using srv = await createGrpcServer({
    address: "127.0.0.1:0",
    security: { mode: "insecure" },
    services: [{ definition: IAMPublicCertServiceService, implementation: impl }],
  });
  const client = await createGrpcClient(IAMPublicCertServiceClient, `127.0.0.1:${srv.port}`, {
    security: { mode: "insecure" },
  });
  try {
    const fast: number[] = [];
    const slow: number[] = [];
    const fastStream = client.subscribeCertChanged({ type: "iam" });
    const slowStream = client.subscribeCertChanged({ type: "iam" });
    const serial = (c: CertInfo) => Number(new TextDecoder().decode(c.serial));
    fastStream.on("data", (c: CertInfo) => fast.push(serial(c)));
    slowStream.on("data", (c: CertInfo) => slow.push(serial(c)));
    fastStream.on("error", () => {});
    slowStream.on("error", () => {});
    await until("both subscribers", () => fanout.size === 2);
    slowStream.pause();

    // 16 KiB per change: the stalled client's HTTP/2 window fills after a few of them.
    const padding = "x".repeat(16 * 1024);
    const total = 400;
    let maxQueued = 0;
    for (let n = 1; n <= total; n++) {
      fanout.publish(change(n, padding));
      maxQueued = Math.max(maxQueued, fanout.maxQueued);
      if (n % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(maxQueued <= 4, `queue grew to ${maxQueued}`);
    await until("fast subscriber caught up", () => fast.at(-1) === total);
    // Order is kept for the fast one; nothing arrives twice.
    assert.deepEqual(fast, [...fast].sort((a, b) => a - b));
    assert.equal(new Set(fast).size, fast.length);

    slowStream.resume();
    await until("slow subscriber got the latest", () => slow.at(-1) === total);
    assert.ok(slow.length < total, `slow subscriber got all ${slow.length} changes`);
    assert.deepEqual(slow, [...slow].sort((a, b) => a - b));

    slowStream.cancel();
    await until("cancelled subscriber removed", () => fanout.size === 1);
    fanout.closeAll();
    await new Promise<void>((resolve) => fastStream.on("end", () => resolve()));
    assert.equal(fanout.size, 0);
  } finally {
    client.close();
  }
});

Deno.test({
  name: "fanout: changes with the same key replace each other while queued",
  permissions: "none",
  fn() {
    const written: string[] = [];
    const listeners = new Map<string, () => void>();
    let full = true;
    const call = {
      write: (v: { id: string; n: number }) => {
        written.push(`${v.id}${v.n}`);
        return !full;
      },
      once: (ev: string, fn: () => void) => listeners.set(ev, fn),
      on: () => {},
      end: () => {},
    };
    const fanout = new Fanout<{ id: string; n: number }>({
      name: "nodes",
      capacity: 3,
      keyOf: (v) => v.id,
      logger: nullLogger,
    });
    // deno-lint-ignore no-explicit-any
    fanout.attach(call as any);
    fanout.publish({ id: "a", n: 1 }); // written, stream now full
    fanout.publish({ id: "a", n: 2 });
    fanout.publish({ id: "b", n: 1 });
    fanout.publish({ id: "a", n: 3 }); // replaces a2
    fanout.publish({ id: "c", n: 1 });
    fanout.publish({ id: "d", n: 1 }); // over capacity: the oldest (a3) goes
    assert.equal(fanout.maxQueued, 3);
    full = false;
    listeners.get("drain")!();
    assert.deepEqual(written, ["a1", "b1", "c1", "d1"]);
  },
});

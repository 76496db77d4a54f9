import assert from "node:assert/strict";
import type { Alert, WireData } from "@aos/shared/cloudprotocol";
import { FakeTimers } from "../core/_test_fakes.ts";
import { AlertSender } from "./alerts.ts";

function progress(digest: string, downloadedBytes: number): Alert {
  return {
    tag: "downloadProgressAlert",
    timestamp: new Date(0),
    digest,
    url: `http://blobs/${digest}`,
    downloadedBytes,
    totalBytes: 100,
    state: "started",
  };
}

Deno.test({
  name: "alerts: batched per period, latest progress per blob, held while disconnected",
  permissions: "none",
  async fn() {
    const timers = new FakeTimers();
    const sent: WireData[] = [];
    let connected = false;
    using alerts = new AlertSender({
      send: (m) => sent.push(m),
      sendPeriodMs: 1000,
      connected: () => connected,
      timers,
    });
    alerts.add(progress("a", 10));
    alerts.add(progress("b", 10));
    alerts.add(progress("a", 50));
    await timers.advance(1000);
    assert.equal(sent.length, 0);
    assert.equal(alerts.pending.length, 2);
    connected = true;
    await timers.advance(1000);
    assert.equal(sent.length, 1);
    const items = sent[0]!.items as { digest: string; downloadedBytes: number }[];
    assert.deepEqual(items.map((i) => [i.digest, i.downloadedBytes]), [["b", 10], ["a", 50]]);
    assert.equal(timers.pending, 0);
  },
});

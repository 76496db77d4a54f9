/**
 * A loopback TCP proxy that forwards a plaintext HTTP/2 connection and counts the frames of
 * interest in each direction, to observe keepalive pings and GOAWAYs on the wire.
 * @module
 */

const PREFACE_LENGTH = 24;
const FRAME_PING = 0x6;
const FRAME_GOAWAY = 0x7;
const FLAG_ACK = 0x1;

/** Frames seen in one direction. */
export interface FrameCounts {
  pings: number;
  pingAcks: number;
  goaways: number;
  /** Debug data of each GOAWAY (e.g. `too_many_pings`). */
  goawayData: string[];
}

function counter(skip: number): { counts: FrameCounts; feed(chunk: Uint8Array): void } {
  const counts: FrameCounts = { pings: 0, pingAcks: 0, goaways: 0, goawayData: [] };
  let buf = new Uint8Array(0);
  let toSkip = skip;
  return {
    counts,
    feed(chunk) {
      const joined = new Uint8Array(buf.length + chunk.length);
      joined.set(buf);
      joined.set(chunk, buf.length);
      let off = Math.min(toSkip, joined.length);
      toSkip -= off;
      while (joined.length - off >= 9) {
        const len = (joined[off]! << 16) | (joined[off + 1]! << 8) | joined[off + 2]!;
        if (joined.length - off < 9 + len) break;
        const type = joined[off + 3]!;
        const flags = joined[off + 4]!;
        if (type === FRAME_PING) {
          if (flags & FLAG_ACK) counts.pingAcks++;
          else counts.pings++;
        } else if (type === FRAME_GOAWAY) {
          counts.goaways++;
          counts.goawayData.push(
            new TextDecoder().decode(joined.subarray(off + 9 + 8, off + 9 + len)),
          );
        }
        off += 9 + len;
      }
      buf = joined.slice(off);
    },
  };
}

/** A running proxy; dispose to close the listener and all connections. */
export interface FrameCountingProxy extends AsyncDisposable {
  /** Port to dial instead of the server's. */
  port: number;
  /** Client-to-server frames (after the connection preface). */
  fromClient: FrameCounts;
  /** Server-to-client frames. */
  fromServer: FrameCounts;
  /** TCP connections accepted so far. */
  connections: number;
}

/** Starts a proxy on 127.0.0.1 (ephemeral port) forwarding to `127.0.0.1:targetPort`. */
export function startFrameCountingProxy(targetPort: number): FrameCountingProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const up = counter(PREFACE_LENGTH);
  const down = counter(0);
  const conns = new Set<Deno.Conn>();
  const pipes: Promise<void>[] = [];
  const proxy: FrameCountingProxy = {
    port: (listener.addr as Deno.NetAddr).port,
    fromClient: up.counts,
    fromServer: down.counts,
    connections: 0,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await Promise.allSettled([accepting, ...pipes]);
    },
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn, c: ReturnType<typeof counter>) => {
    const buf = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        c.feed(buf.subarray(0, n));
        let written = 0;
        while (written < n) written += await to.write(buf.subarray(written, n));
      }
    } catch { /* the other side closed */ }
    for (const conn of [from, to]) {
      if (conns.delete(conn)) conn.close();
    }
  };
  const accepting = (async () => {
    try {
      for await (const client of listener) {
        proxy.connections++;
        const server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        conns.add(client);
        conns.add(server);
        pipes.push(pipe(client, server, up), pipe(server, client, down));
      }
    } catch { /* listener closed */ }
  })();
  return proxy;
}

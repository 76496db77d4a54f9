/**
 * gzip inflate in a Worker, so inflating a layer runs on another core while the calling thread
 * creates files. Chunks cross the thread boundary as transferred buffers (no copies), and both
 * directions are flow-controlled: the worker asks for input only when its inflater wants more,
 * and posts output only within a small window of credits the caller hands back as it consumes.
 * At most {@link WINDOW} output batches (about {@link BATCH} each) and one input batch are in
 * flight. A batch is flushed once it reaches {@link BATCH}, so with a decompression bomb one
 * {@link PIECE} can add up to ~17 MB to it: the worst case in flight is ~90 MB, bounded, never
 * a whole layer (measured peak on a 512 MiB bomb: 300 MB VmHWM; the SM's layer scan, which runs
 * first with byte limits, rejects such a layer before extraction).
 * @module
 */

/** Output batches (about {@link BATCH} bytes each) the worker may post before any is consumed. */
const WINDOW = 3;
/** Bytes of input per message to the worker, and of output per message back. */
const BATCH = 1024 * 1024;
/**
 * Input bytes handed to the inflater at once. Inflating one piece yields one output chunk, and
 * deflate expands up to ~1032x: small pieces keep a decompression bomb's chunk small.
 */
const PIECE = 16 * 1024;

type ToWorker =
  | { t: "data"; buf: ArrayBuffer; len: number }
  | { t: "end" }
  | { t: "credit" };

type FromWorker =
  | { t: "need" }
  | { t: "data"; bufs: ArrayBuffer[]; lens: number[] }
  | { t: "end" }
  | { t: "error"; message: string };

/**
 * The worker's whole program. It is shipped as the source of this function (a blob URL), so the
 * worker needs no module file on disk and no read permission to load; it must therefore not use
 * anything from outside its own body.
 */
function workerProgram(window: number, batch: number, piece: number): void {
  const scope = self as unknown as {
    postMessage(m: FromWorker, transfer?: Transferable[]): void;
    onmessage: ((ev: MessageEvent<ToWorker>) => void) | null;
  };
  let credits = window;
  let creditWaiter: (() => void) | undefined;
  let feed: ((m: ToWorker) => void) | undefined;
  const input = new ReadableStream<Uint8Array>({
    pull: (controller) =>
      new Promise<void>((resolve) => {
        feed = (m) => {
          if (m.t === "data") {
            for (let o = 0; o < m.len; o += piece) {
              controller.enqueue(new Uint8Array(m.buf, o, Math.min(piece, m.len - o)));
            }
          } else controller.close();
          resolve();
        };
        scope.postMessage({ t: "need" });
      }),
  }, { highWaterMark: 0 });
  scope.onmessage = (ev) => {
    const m = ev.data;
    if (m.t === "credit") {
      credits++;
      const w = creditWaiter;
      creditWaiter = undefined;
      w?.();
      return;
    }
    const f = feed;
    feed = undefined;
    f?.(m);
  };
  let bufs: ArrayBuffer[] = [];
  let lens: number[] = [];
  let size = 0;
  const flush = async () => {
    while (credits === 0) await new Promise<void>((r) => creditWaiter = r);
    credits--;
    scope.postMessage({ t: "data", bufs, lens }, bufs);
    bufs = [];
    lens = [];
    size = 0;
  };
  (async () => {
    try {
      const inflated = input.pipeThrough(
        new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
      );
      for await (const chunk of inflated) {
        if (chunk.byteLength === 0) continue;
        // Transfer the chunk's own buffer when it has one to itself; copy a view of a shared one.
        const own = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength
          ? chunk
          : chunk.slice();
        bufs.push(own.buffer as ArrayBuffer);
        lens.push(own.byteLength);
        size += own.byteLength;
        if (size >= batch) await flush();
      }
      if (size > 0) await flush();
      scope.postMessage({ t: "end" });
    } catch (err) {
      scope.postMessage({ t: "error", message: (err as Error)?.message ?? String(err) });
    }
  })();
}

let programUrl: string | undefined;

function workerUrl(): string {
  programUrl ??= URL.createObjectURL(
    new Blob([`(${workerProgram.toString()})(${WINDOW}, ${BATCH}, ${PIECE});`], {
      type: "text/javascript",
    }),
  );
  return programUrl;
}

/**
 * Yields the source's bytes in pieces of `size` bytes or more (but the last), each owning its
 * buffer. A source chunk is passed on as is only when `mayTake` and it owns its buffer.
 */
async function* batched(
  source: AsyncIterator<Uint8Array>,
  size: number,
  mayTake: boolean,
): AsyncGenerator<Uint8Array> {
  let buf: Uint8Array | undefined;
  let fill = 0;
  for (;;) {
    const r = await source.next();
    if (r.done) break;
    const c = r.value;
    if (fill === 0 && c.byteLength >= size) {
      yield mayTake && c.byteOffset === 0 && c.byteLength === c.buffer.byteLength ? c : c.slice();
      continue;
    }
    let off = 0;
    while (off < c.byteLength) {
      buf ??= new Uint8Array(size);
      const n = Math.min(size - fill, c.byteLength - off);
      buf.set(c.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === size) {
        yield buf;
        buf = undefined;
        fill = 0;
      }
    }
  }
  if (fill > 0) yield buf!.subarray(0, fill);
}

/**
 * Inflates a gzip stream in a Worker. Throws (leaving `source` untouched) when no Worker can be
 * started. The result behaves like
 * `source.pipeThrough(new DecompressionStream("gzip"))`: it errors with the inflater's message on
 * corrupt input, and cancelling it stops the worker and cancels `source`. The worker ends with
 * the stream (done, errored or cancelled).
 *
 * Input is copied into transfer buffers, unless `takeChunks` says the source's chunks are not
 * used by anyone else: then chunks of 1 MiB or more that own their buffer are transferred (and so
 * detached) instead.
 */
export function gunzipInWorker(
  source: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  takeChunks = false,
): ReadableStream<Uint8Array> {
  // First, so that when no worker can start the source is still untouched.
  const worker = new Worker(workerUrl(), { type: "module" });
  // A stream is read through its own reader, so a stop can cancel a read that is still pending
  // (an iterator's return() would queue behind it while the source stalls).
  let cancelSource: ((reason?: unknown) => Promise<void>) | undefined;
  let it: AsyncIterator<Uint8Array>;
  if (source instanceof ReadableStream) {
    const reader = source.getReader();
    cancelSource = (reason) => reader.cancel(reason).catch(() => {});
    it = {
      next: () => reader.read() as Promise<IteratorResult<Uint8Array>>,
      return: async (reason) => {
        await reader.cancel(reason).catch(() => {});
        return { done: true, value: undefined };
      },
    };
  } else {
    it = source[Symbol.asyncIterator]();
  }
  const input = batched(it, BATCH, takeChunks);
  const queue: Uint8Array[] = [];
  /** Count of chunks taken when each posted batch will have been taken: then its credit returns. */
  const batchEnds: number[] = [];
  let taken = 0;
  let ended = false;
  let failure: Error | undefined;
  let finished = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const stop = async (reason?: unknown) => {
    if (finished) return;
    finished = true;
    worker.terminate();
    await cancelSource?.(reason);
    await input.return(undefined).catch(() => {});
    await it.return?.(reason).catch(() => {});
  };
  const feed = async () => {
    try {
      const r = await input.next();
      if (finished) return;
      if (r.done) {
        worker.postMessage({ t: "end" } satisfies ToWorker);
        return;
      }
      const buf = r.value.buffer as ArrayBuffer;
      worker.postMessage({ t: "data", buf, len: r.value.byteLength } satisfies ToWorker, [buf]);
    } catch (err) {
      failure ??= err instanceof Error ? err : new Error(String(err));
      notify();
    }
  };
  worker.onmessage = (ev: MessageEvent<FromWorker>) => {
    const m = ev.data;
    switch (m.t) {
      case "need":
        void feed();
        return;
      case "data":
        for (let i = 0; i < m.bufs.length; i++) {
          queue.push(new Uint8Array(m.bufs[i]!, 0, m.lens[i]));
        }
        batchEnds.push(queue.length + taken);
        break;
      case "end":
        ended = true;
        break;
      case "error":
        failure ??= new TypeError(m.message);
        break;
    }
    notify();
  };
  worker.onerror = (ev: ErrorEvent) => {
    ev.preventDefault();
    failure ??= new Error(`inflate worker failed: ${ev.message}`);
    notify();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (queue.length === 0 && !ended && failure === undefined) {
        await new Promise<void>((r) => wake = r);
      }
      const chunk = queue.shift();
      if (chunk !== undefined) {
        taken++;
        if (batchEnds[0] === taken) {
          batchEnds.shift();
          worker.postMessage({ t: "credit" } satisfies ToWorker);
        }
        controller.enqueue(chunk);
        return;
      }
      await stop(failure);
      if (failure !== undefined) controller.error(failure);
      else controller.close();
    },
    async cancel(reason) {
      await stop(reason);
    },
  }, { highWaterMark: 0 });
}

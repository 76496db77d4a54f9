/**
 * Fan-out of change notifications to gRPC server streams (`Subscribe*Changed`).
 *
 * Each subscriber has its own small queue. Publishing never waits: when a subscriber's HTTP/2
 * stream is full, its queue takes the change, an older change of the same key is replaced
 * (only the latest state of a thing matters), and past the capacity the oldest entry is
 * dropped. A stuck or slow client therefore costs at most `capacity` messages of memory and
 * never slows IAM or the other subscribers.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "@aos/shared/logger";

/** Options of {@link Fanout}. */
export interface FanoutOptions<T> {
  /** Name for logs, e.g. `SubscribeCertChanged`. */
  name: string;
  /** Queue length per subscriber (default 16). */
  capacity?: number;
  /**
   * Key of a change: a queued change with the same key is replaced by a newer one
   * (default: every change has the same key, so only the latest one waits).
   */
  keyOf?: (value: T) => string;
  logger: Logger;
}

/** Default per-subscriber queue length. */
export const DEFAULT_FANOUT_CAPACITY = 16;

class Subscriber<T> {
  readonly #call: grpc.ServerWritableStream<unknown, T>;
  readonly #capacity: number;
  readonly #keyOf: (value: T) => string;
  readonly #queue: { key: string; value: T }[] = [];
  #waitingForDrain = false;
  #closed = false;
  /** Changes replaced or dropped because the client was too slow. */
  skipped = 0;

  constructor(
    call: grpc.ServerWritableStream<unknown, T>,
    capacity: number,
    keyOf: (value: T) => string,
  ) {
    this.#call = call;
    this.#capacity = capacity;
    this.#keyOf = keyOf;
  }

  get queued(): number {
    return this.#queue.length;
  }

  push(value: T): void {
    if (this.#closed) return;
    const key = this.#keyOf(value);
    const same = this.#queue.findIndex((e) => e.key === key);
    if (same >= 0) {
      this.#queue[same] = { key, value };
      this.skipped++;
    } else {
      this.#queue.push({ key, value });
      if (this.#queue.length > this.#capacity) {
        this.#queue.shift();
        this.skipped++;
      }
    }
    this.#pump();
  }

  #pump(): void {
    while (!this.#closed && !this.#waitingForDrain && this.#queue.length) {
      const { value } = this.#queue.shift()!;
      if (!this.#call.write(value)) {
        this.#waitingForDrain = true;
        this.#call.once("drain", () => {
          this.#waitingForDrain = false;
          this.#pump();
        });
      }
    }
  }

  /** Stops writing; `end` also finishes the stream with status OK. */
  close(end: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    if (end) {
      try {
        this.#call.end();
      } catch {
        // The stream is already gone.
      }
    }
  }
}

/** Publishes changes to every attached server stream. */
export class Fanout<T> {
  readonly #subscribers = new Set<Subscriber<T>>();
  readonly #name: string;
  readonly #capacity: number;
  readonly #keyOf: (value: T) => string;
  readonly #logger: Logger;

  constructor(options: FanoutOptions<T>) {
    this.#name = options.name;
    this.#capacity = Math.max(1, options.capacity ?? DEFAULT_FANOUT_CAPACITY);
    this.#keyOf = options.keyOf ?? (() => "");
    this.#logger = options.logger;
  }

  /** Number of attached streams. */
  get size(): number {
    return this.#subscribers.size;
  }

  /** Largest queue of any subscriber (to observe back-pressure). */
  get maxQueued(): number {
    let max = 0;
    for (const s of this.#subscribers) max = Math.max(max, s.queued);
    return max;
  }

  /** Sends `value` to every subscriber without waiting for any of them. */
  publish(value: T): void {
    for (const s of this.#subscribers) s.push(value);
  }

  /** Adds a server stream; it is removed when the client cancels or the stream fails. */
  attach(call: grpc.ServerWritableStream<unknown, T>): void {
    const sub = new Subscriber<T>(call, this.#capacity, this.#keyOf);
    this.#subscribers.add(sub);
    this.#logger.debug("subscriber added", { stream: this.#name, subscribers: this.size });
    const remove = () => {
      if (!this.#subscribers.delete(sub)) return;
      sub.close(false);
      this.#logger.debug("subscriber removed", {
        stream: this.#name,
        subscribers: this.size,
        skipped: sub.skipped,
      });
    };
    call.on("cancelled", remove);
    call.on("error", remove);
    call.on("close", remove);
    call.on("finish", remove);
  }

  /** Ends every stream with status OK (IAM stops or restarts its servers). */
  closeAll(): void {
    for (const s of this.#subscribers) s.close(true);
    this.#subscribers.clear();
  }
}

/**
 * An async channel (unbounded or bounded queue) with close semantics and async iteration.
 * @module
 */

/** Thrown by `send` on a closed channel. */
export class ChannelClosedError extends Error {
  constructor() {
    super("Channel is closed");
    this.name = "ChannelClosedError";
  }
}

/**
 * A FIFO channel. `send` waits while a bounded channel is full; `receive` waits while it is
 * empty and returns `undefined` once the channel is closed and drained.
 */
export class Channel<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #receivers: ((v: IteratorResult<T>) => void)[] = [];
  #senders: (() => void)[] = [];
  #closed = false;
  readonly #capacity: number;

  /** `capacity` bounds the queue (default unbounded). */
  constructor(capacity = Infinity) {
    this.#capacity = capacity;
  }

  /** Items waiting. */
  get size(): number {
    return this.#items.length;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Adds an item; waits for room on a full bounded channel. */
  async send(item: T): Promise<void> {
    while (!this.#closed && this.#items.length >= this.#capacity && !this.#receivers.length) {
      await new Promise<void>((r) => this.#senders.push(r));
    }
    if (this.#closed) throw new ChannelClosedError();
    const receiver = this.#receivers.shift();
    if (receiver) receiver({ value: item, done: false });
    else this.#items.push(item);
  }

  /** Adds an item without waiting; returns false when full or closed. */
  trySend(item: T): boolean {
    if (this.#closed || (this.#items.length >= this.#capacity && !this.#receivers.length)) {
      return false;
    }
    const receiver = this.#receivers.shift();
    if (receiver) receiver({ value: item, done: false });
    else this.#items.push(item);
    return true;
  }

  /** Next item, or `undefined` when closed and drained. */
  async receive(): Promise<T | undefined> {
    const r = await this.#next();
    return r.done ? undefined : r.value;
  }

  #next(): Promise<IteratorResult<T>> {
    if (this.#items.length) {
      const value = this.#items.shift() as T;
      this.#senders.shift()?.();
      return Promise.resolve({ value, done: false });
    }
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((r) => this.#receivers.push(r));
  }

  /** Closes: pending receivers get `done`; queued items can still be drained. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const r of this.#receivers.splice(0)) r({ value: undefined, done: true });
    for (const s of this.#senders.splice(0)) s();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return { next: () => this.#next() };
  }
}

/**
 * A small FIFO async mutex: the partition's allocation path awaits `statfs` and eviction
 * callbacks, so two callers must not interleave between reading and reserving space.
 * @module
 */

/** Mutual exclusion for async critical sections, granted in call order. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `fn` once every earlier holder has finished; the lock is released even on throw. */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    let unlock!: () => void;
    const next = new Promise<void>((r) => (unlock = r));
    const previous = this.#tail;
    this.#tail = previous.then(() => next);
    await previous;
    try {
      return await fn();
    } finally {
      unlock();
    }
  }
}

/**
 * A small FIFO async mutex, for critical sections that await (statfs, file I/O, callbacks)
 * and must not interleave with another caller between reading and updating state.
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

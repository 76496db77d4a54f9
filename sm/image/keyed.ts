/**
 * Per-key locks and pins for content shared between concurrent installs and removals.
 * @module
 */
import { Mutex } from "@aos/shared/core";

/** One FIFO mutex per key, dropped when nobody holds or waits for it. */
export class KeyedMutex {
  readonly #locks = new Map<string, { mutex: Mutex; users: number }>();

  /** Runs `fn` while holding the lock of `key`. */
  async run<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
    let entry = this.#locks.get(key);
    if (!entry) {
      entry = { mutex: new Mutex(), users: 0 };
      this.#locks.set(key, entry);
    }
    entry.users++;
    try {
      return await entry.mutex.run(fn);
    } finally {
      if (--entry.users === 0) this.#locks.delete(key);
    }
  }

  /** Keys with a holder or waiter (diagnostics). */
  get size(): number {
    return this.#locks.size;
  }
}

/** Reference-counted set of keys (content an install in progress relies on). */
export class PinSet {
  readonly #counts = new Map<string, number>();

  /** Adds one pin on `key`. */
  pin(key: string): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  /** Removes one pin on `key`. */
  unpin(key: string): void {
    const n = (this.#counts.get(key) ?? 0) - 1;
    if (n > 0) this.#counts.set(key, n);
    else this.#counts.delete(key);
  }

  /** True while at least one pin is held on `key`. */
  has(key: string): boolean {
    return this.#counts.has(key);
  }

  /** Number of pinned keys. */
  get size(): number {
    return this.#counts.size;
  }
}

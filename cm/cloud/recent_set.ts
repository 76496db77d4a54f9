/**
 * A bounded set that forgets its least recently seen member first.
 * @module
 */

/** Remembers up to `capacity` strings; `has` and `add` refresh a member's recency. */
export class RecentSet {
  readonly #capacity: number;
  readonly #items = new Set<string>();

  /** `capacity` ≥ 1. */
  constructor(capacity: number) {
    this.#capacity = Math.max(1, Math.floor(capacity));
  }

  /** Members now. */
  get size(): number {
    return this.#items.size;
  }

  /** Whether `key` is remembered (and marks it as just seen). */
  has(key: string): boolean {
    if (!this.#items.has(key)) return false;
    this.#items.delete(key);
    this.#items.add(key);
    return true;
  }

  /** Remembers `key`, forgetting the least recently seen member when full. */
  add(key: string): void {
    this.#items.delete(key);
    this.#items.add(key);
    while (this.#items.size > this.#capacity) {
      const oldest = this.#items.values().next().value as string;
      this.#items.delete(oldest);
    }
  }
}

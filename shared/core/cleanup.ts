/**
 * A LIFO cleanup stack: undo steps run in reverse order of registration.
 * @module
 */

/** Collects undo steps; {@link run} executes them last-in first-out. */
export class CleanupStack implements AsyncDisposable {
  #steps: { name: string; fn: () => unknown }[] = [];

  /** Registers an undo step. */
  add(name: string, fn: () => unknown): void {
    this.#steps.push({ name, fn });
  }

  /** Forgets all steps (the guarded work succeeded). */
  release(): void {
    this.#steps = [];
  }

  /** Number of registered steps. */
  get size(): number {
    return this.#steps.length;
  }

  /**
   * Runs all steps in reverse order. Every step runs even if an earlier one fails;
   * failures are returned (and passed to `onError`).
   */
  async run(onError?: (name: string, err: unknown) => void): Promise<unknown[]> {
    const errors: unknown[] = [];
    while (this.#steps.length) {
      const step = this.#steps.pop()!;
      try {
        await step.fn();
      } catch (err) {
        errors.push(err);
        onError?.(step.name, err);
      }
    }
    return errors;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.run();
  }
}

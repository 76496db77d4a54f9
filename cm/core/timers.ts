/**
 * Timer port of CM's core: the pipeline waits (instance activation, node statuses, the unit
 * status debounce) go through it so tests drive time instead of sleeping.
 * @module
 */

/** Opaque handle of a scheduled callback. */
export type TimerHandle = unknown;

/** Schedules one-shot callbacks (`setTimeout`/`clearTimeout` shape). */
export interface Timers {
  /** Calls `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a callback that has not run yet; no-op otherwise. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real timers of the runtime. */
export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/**
 * Resolves after `ms` (true) or when `signal` aborts (false), whichever comes first; the timer
 * is always cleared, so nothing outlives the wait.
 */
export function waitFor(timers: Timers, ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      timers.clearTimeout(handle);
      resolve(false);
    };
    const handle = timers.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Retry with exponential back-off.
 * @module
 */

/** Options of {@link retry}. */
export interface RetryOptions {
  /** First delay in ms (default 1000). */
  initialDelayMs?: number;
  /** Upper bound of a delay in ms (default 5000). */
  maxDelayMs?: number;
  /** Total attempts including the first (default 3; `Infinity` for forever). */
  tries?: number;
  /** Multiplier between delays (default 2). */
  factor?: number;
  /** Stops waiting and retrying. */
  signal?: AbortSignal;
  /** Returns false for errors that must not be retried. */
  shouldRetry?: (err: unknown, attempt: number) => boolean;
  /** Called before each wait, e.g. to log. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Sleep port (tests). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Sleeps `ms`, rejecting with the signal's reason when aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The delay before attempt `attempt + 1` (attempt counts from 1). */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, factor = 2) {
  return Math.min(maxMs, initialMs * factor ** (attempt - 1));
}

/** Runs `fn` until it succeeds, the tries run out, or the signal aborts. */
export async function retry<T>(
  fn: (attempt: number, signal?: AbortSignal) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const initial = options.initialDelayMs ?? 1000;
  const max = options.maxDelayMs ?? 5000;
  const tries = options.tries ?? 3;
  const doSleep = options.sleep ?? sleep;
  for (let attempt = 1;; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await fn(attempt, options.signal);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (attempt >= tries || options.shouldRetry?.(err, attempt) === false) throw err;
      const delay = backoffDelay(attempt, initial, max, options.factor);
      options.onRetry?.(err, attempt, delay);
      await doSleep(delay, options.signal);
    }
  }
}

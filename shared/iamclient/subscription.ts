/**
 * A server-streaming subscription that is re-opened whenever the stream ends or fails, until it
 * is stopped. IAM ends every stream when it restarts its servers (for example after its own
 * certificate changed), so subscribers must resubscribe on their own.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "../core/logger.ts";
import { backoffDelay, sleep } from "../core/retry.ts";

/** Back-off between re-subscriptions. */
export interface ResubscribeDelay {
  /** First delay after a stream ended, ms. */
  initialMs: number;
  /** Upper bound, ms (C++ clients resubscribe every 3 s). */
  maxMs: number;
}

/** Default {@link ResubscribeDelay}: 0.5 s, doubling up to the C++ clients' 3 s. */
export const DEFAULT_RESUBSCRIBE_DELAY: ResubscribeDelay = { initialMs: 500, maxMs: 3_000 };

/** Options of {@link keepSubscribed}. */
export interface KeepSubscribedOptions<T> {
  /** For log records, e.g. `SubscribeCertChanged(sm)`. */
  name: string;
  /** Opens a new stream (on whatever channel is current). */
  open: () => grpc.ClientReadableStream<T>;
  /** Receives each message; what it throws is logged and does not end the subscription. */
  onMessage: (message: T) => void;
  /** Back-off between attempts. */
  delay: ResubscribeDelay;
  /** Receives reconnect records. */
  logger: Logger;
}

/** A running {@link keepSubscribed} loop. */
export interface KeptSubscription {
  /** Cancels the stream and any pending wait; resolves when the loop has ended. Idempotent. */
  stop(): Promise<void>;
}

/** Subscribes and re-subscribes with back-off until stopped. */
export function keepSubscribed<T>(options: KeepSubscribedOptions<T>): KeptSubscription {
  const { name, logger } = options;
  const abort = new AbortController();
  let current: grpc.ClientReadableStream<T> | undefined;

  // Resolves when the stream is over; tells whether it delivered anything (to reset back-off).
  const runOnce = (): Promise<{ received: boolean; error?: unknown }> => {
    let stream: grpc.ClientReadableStream<T>;
    try {
      stream = options.open();
    } catch (error) {
      return Promise.resolve({ received: false, error });
    }
    current = stream;
    return new Promise((resolve) => {
      let received = false;
      let error: unknown;
      stream.on("data", (message: T) => {
        received = true;
        try {
          options.onMessage(message);
        } catch (err) {
          logger.error("IAM subscription listener failed", { subscription: name, error: err });
        }
      });
      stream.on("error", (err: unknown) => error = err);
      stream.on("status", () => {
        current = undefined;
        resolve({ received, error });
      });
    });
  };

  const loop = (async () => {
    let failures = 0;
    while (!abort.signal.aborted) {
      const { received, error } = await runOnce();
      if (abort.signal.aborted) break;
      failures = received ? 1 : failures + 1;
      const delayMs = backoffDelay(failures, options.delay.initialMs, options.delay.maxMs);
      logger.debug("IAM subscription ended, resubscribing", {
        subscription: name,
        delayMs,
        ...(error === undefined ? {} : { error }),
      });
      try {
        await sleep(delayMs, abort.signal);
      } catch {
        break;
      }
    }
  })();

  let stopping: Promise<void> | undefined;
  return {
    stop: () =>
      stopping ??= (() => {
        abort.abort();
        current?.cancel();
        return loop;
      })(),
  };
}

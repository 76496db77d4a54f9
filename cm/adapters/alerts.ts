/**
 * CM's alert sender (the part of cm.md §11 this stage needs): alerts from CM's own modules (the
 * image manager's download progress, refused blob hosts) are batched and sent as one `alerts`
 * message every `alerts.sendPeriod`. Download progress of one blob keeps only its latest alert
 * per batch, and the batch is bounded: the oldest alerts go first.
 * @module
 */
import { type Alert, buildAlerts, type WireData } from "@aos/shared/cloudprotocol";
import { type Logger, nullLogger } from "@aos/shared/logger";
import { systemTimers, type TimerHandle, type Timers } from "../core/timers.ts";

/** Most alerts waiting for the next send. */
export const MAX_PENDING_ALERTS = 1000;

/** Options of {@link AlertSender}. */
export interface AlertSenderOptions {
  /** Sends an `alerts` body (the cloud link). */
  send: (message: WireData) => void;
  /** `alerts.sendPeriod` in ms. */
  sendPeriodMs: number;
  /** Whether the cloud is connected now (alerts wait while it is not). */
  connected: () => boolean;
  timers?: Timers;
  logger?: Logger;
}

/** Batches alerts and sends them periodically. */
export class AlertSender implements Disposable {
  readonly #o: AlertSenderOptions;
  readonly #timers: Timers;
  readonly #log: Logger;
  #pending: Alert[] = [];
  #timer: TimerHandle | undefined;
  #closed = false;

  /** Creates the sender (idle until the first alert). */
  constructor(options: AlertSenderOptions) {
    this.#o = options;
    this.#timers = options.timers ?? systemTimers;
    this.#log = options.logger ?? nullLogger;
  }

  /** Alerts waiting to be sent. */
  get pending(): readonly Alert[] {
    return this.#pending;
  }

  /** Queues an alert for the next batch. */
  add(alert: Alert): void {
    if (this.#closed) return;
    if (alert.tag === "downloadProgressAlert") {
      this.#pending = this.#pending.filter((a) =>
        !(a.tag === "downloadProgressAlert" && a.digest === alert.digest && a.url === alert.url)
      );
    }
    this.#pending.push(alert);
    if (this.#pending.length > MAX_PENDING_ALERTS) {
      this.#pending.splice(0, this.#pending.length - MAX_PENDING_ALERTS);
    }
    this.#arm();
  }

  /** Sends what is pending now (when connected). */
  flush(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    if (!this.#o.connected()) {
      this.#arm();
      return;
    }
    const items = this.#pending;
    this.#pending = [];
    try {
      this.#o.send(buildAlerts({ items }));
    } catch (err) {
      this.#log.error("cannot send alerts", { error: err, count: items.length });
    }
  }

  /** Stops the timer; pending alerts are dropped. */
  [Symbol.dispose](): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.#o.sendPeriodMs);
  }
}

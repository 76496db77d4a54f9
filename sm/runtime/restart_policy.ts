/**
 * The `always` restart policy with a crash-loop limit over a sliding window.
 *
 * Upstream counts restarts only within `startInterval` of the first start, so a service that
 * crash-loops after its first few seconds restarts forever. Here every start is timestamped, and
 * a restart is refused when it would make more than `startBurst` starts within any
 * `startInterval` window (the systemd `StartLimitBurst`/`StartLimitIntervalSec` meaning).
 * @module
 */
import { parseDuration } from "@aos/shared/config";
import { type Clock, systemClock } from "@aos/shared/core";
import type { ItemConfig } from "@aos/shared/oci";

/** Restart parameters (item config `runParameters`, resolved). */
export interface RunParameters {
  /** Window of the crash-loop limit (ms, default 5000). */
  startIntervalMs: number;
  /** Starts allowed within the window, the first one included (default 3). */
  startBurst: number;
  /** Delay before a restart (ms, default 1000). */
  restartIntervalMs: number;
}

/** Upstream defaults of `runParameters`. */
export const DEFAULT_RUN_PARAMETERS: Readonly<RunParameters> = {
  startIntervalMs: 5000,
  startBurst: 3,
  restartIntervalMs: 1000,
};

/** Resolves `runParameters` of an item config; absent or zero values take the defaults. */
export function runParameters(item: ItemConfig | undefined): RunParameters {
  const p = item?.runParameters ?? {};
  const ms = (v: string | number | undefined, dflt: number) => {
    if (v === undefined || v === "" || v === 0) return dflt;
    const n = parseDuration(v);
    return n > 0 ? n : dflt;
  };
  return {
    startIntervalMs: ms(p.startInterval, DEFAULT_RUN_PARAMETERS.startIntervalMs),
    startBurst: p.startBurst ? p.startBurst : DEFAULT_RUN_PARAMETERS.startBurst,
    restartIntervalMs: ms(p.restartInterval, DEFAULT_RUN_PARAMETERS.restartIntervalMs),
  };
}

/** What to do after an unrequested exit. */
export type RestartDecision =
  | { restart: true; delayMs: number }
  | { restart: false; reason: string };

/** Per-instance restart bookkeeping. Pure apart from the injected clock. */
export class RestartPolicy {
  readonly params: RunParameters;
  readonly #clock: Clock;
  #starts: number[] = [];

  constructor(params: Partial<RunParameters> = {}, clock: Clock = systemClock) {
    this.params = { ...DEFAULT_RUN_PARAMETERS, ...params };
    this.#clock = clock;
  }

  /** Records a start (the first one and every restart). */
  started(): void {
    this.#starts.push(this.#clock.now());
    // Only starts inside some future window can matter; keep the list bounded.
    if (this.#starts.length > this.params.startBurst + 1) {
      this.#starts = this.#starts.slice(-(this.params.startBurst + 1));
    }
  }

  /** Number of starts recorded so far (bounded by `startBurst + 1`). */
  get recentStarts(): number {
    return this.#starts.length;
  }

  /**
   * Called when the instance exited without being asked to. Restart after `restartInterval`
   * unless that restart would be start number `startBurst + 1` within `startInterval`.
   */
  onExit(): RestartDecision {
    const { startIntervalMs, startBurst, restartIntervalMs } = this.params;
    const next = this.#clock.now() + restartIntervalMs;
    const inWindow = this.#starts.filter((t) => t > next - startIntervalMs).length;
    if (inWindow + 1 > startBurst) {
      return {
        restart: false,
        reason:
          `${inWindow} starts within ${startIntervalMs} ms reached the limit of ${startBurst}`,
      };
    }
    return { restart: true, delayMs: restartIntervalMs };
  }
}

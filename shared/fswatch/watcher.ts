/**
 * Debounced change notification for one file, robust to atomic replace by rename.
 * @module
 */
import { basename, dirname, resolve } from "node:path";
import { AosError } from "../core/errors.ts";
import { type Logger, nullLogger } from "../core/logger.ts";

/** Default quiet time before a burst of events is reported. */
export const DEFAULT_DEBOUNCE_MS = 100;

/** One debounced change of the watched file. */
export interface FileChange {
  /** The watched path (absolute). */
  path: string;
  /** Whether the file exists once the burst is over. */
  exists: boolean;
  /** Kinds of the raw events folded into this change, in order, without repeats. */
  kinds: Deno.FsEvent["kind"][];
}

/** Options of {@link watchFile}. */
export interface WatchFileOptions {
  /** Quiet time in ms after the last event before the change is reported (default 100). */
  debounceMs?: number;
  /** Stops watching. */
  signal?: AbortSignal;
  /**
   * Called once per change; the next change waits until the returned promise settles.
   * Without it, read changes through async iteration.
   */
  onChange?: (change: FileChange) => void | Promise<void>;
  /** Receives callback failures. */
  logger?: Logger;
}

// `access` (close after write here; opens and reads where the platform reports them) adds nothing
// to the `modify` a write already produced, and must never let a consumer that reloads on change
// wake itself.
const RELEVANT = new Set<Deno.FsEvent["kind"]>(["any", "create", "modify", "remove", "rename"]);

/**
 * Watches one file through its parent directory, so creation, deletion and replacement by
 * rename are all seen, including of a file that does not exist yet.
 *
 * Iterate it for changes (single consumer; changes not yet consumed fold into one), or pass
 * `onChange`. Close with {@link close}, `await using`, or the abort signal.
 */
export class FileWatcher implements AsyncIterable<FileChange>, AsyncDisposable, Disposable {
  /** The watched path (absolute). */
  readonly path: string;
  readonly #name: string;
  readonly #debounceMs: number;
  readonly #onChange: WatchFileOptions["onChange"];
  readonly #logger: Logger;
  readonly #signal: AbortSignal | undefined;
  readonly #watcher: Deno.FsWatcher;
  readonly #loop: Promise<void>;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #kinds: Deno.FsEvent["kind"][] = [];
  #emitting: Promise<void> | undefined;
  #again = false;
  #closed = false;
  // Iterator side: the latest unconsumed change and the consumer waiting for one.
  #queued: FileChange | undefined;
  #waiter: ((r: IteratorResult<FileChange>) => void) | undefined;

  /** Use {@link watchFile}. */
  constructor(path: string, options: WatchFileOptions = {}) {
    this.path = resolve(path);
    this.#name = basename(this.path);
    this.#debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.#onChange = options.onChange;
    this.#logger = options.logger ?? nullLogger;
    this.#signal = options.signal;
    const dir = dirname(this.path);
    try {
      this.#watcher = Deno.watchFs(dir, { recursive: false });
    } catch (err) {
      throw new AosError(
        err instanceof Deno.errors.NotFound ? "notFound" : "failed",
        `Cannot watch ${this.path}: directory ${dir} cannot be watched: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.#loop = this.#run();
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (this.#signal?.aborted) this.#onAbort();
  }

  #onAbort = (): void => void this.close();

  async #run(): Promise<void> {
    try {
      for await (const event of this.#watcher) {
        if (!RELEVANT.has(event.kind)) continue;
        if (!event.paths.some((p) => basename(p) === this.#name)) continue;
        if (!this.#kinds.includes(event.kind)) this.#kinds.push(event.kind);
        clearTimeout(this.#timer);
        this.#timer = setTimeout(this.#fire, this.#debounceMs);
      }
    } catch (err) {
      if (!this.#closed) this.#logger.error("File watch failed", { path: this.path, err });
    }
  }

  #fire = (): void => {
    this.#timer = undefined;
    if (this.#closed) return;
    if (this.#emitting) {
      // A change arrived while the callback ran: report it once the callback is done.
      this.#again = true;
      return;
    }
    this.#emitting = this.#emit().finally(() => {
      this.#emitting = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        this.#fire();
      }
    });
  };

  async #emit(): Promise<void> {
    const kinds = this.#kinds;
    this.#kinds = [];
    let exists = true;
    try {
      await Deno.stat(this.path);
    } catch {
      exists = false;
    }
    if (this.#closed) return;
    const change: FileChange = { path: this.path, exists, kinds };
    if (this.#onChange) {
      try {
        await this.#onChange(change);
      } catch (err) {
        this.#logger.error("File change handler failed", { path: this.path, err });
      }
      return;
    }
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) waiter({ value: change, done: false });
    else {
      this.#queued = this.#queued
        ? { ...change, kinds: [...new Set([...this.#queued.kinds, ...change.kinds])] }
        : change;
    }
  }

  /** The next change, or `undefined` once closed. */
  next(): Promise<FileChange | undefined> {
    return this.#next().then((r) => (r.done ? undefined : r.value));
  }

  #next(): Promise<IteratorResult<FileChange>> {
    if (this.#queued) {
      const value = this.#queued;
      this.#queued = undefined;
      return Promise.resolve({ value, done: false });
    }
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    if (this.#waiter) {
      return Promise.reject(new AosError("wrongState", `${this.path} already has a consumer`));
    }
    return new Promise((r) => (this.#waiter = r));
  }

  [Symbol.asyncIterator](): AsyncIterator<FileChange> {
    return {
      next: () => this.#next(),
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }

  /** Stops watching; resolves once the watcher, the timer and a running callback are done. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#signal?.removeEventListener("abort", this.#onAbort);
      clearTimeout(this.#timer);
      try {
        this.#watcher.close();
      } catch {
        // Already closed by the runtime.
      }
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.({ value: undefined, done: true });
    }
    await this.#loop;
    await this.#emitting;
  }

  /** Starts closing without waiting; prefer `await using` so nothing outlives the scope. */
  [Symbol.dispose](): void {
    void this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Watches `path` (which may not exist yet; its directory must) and reports debounced changes.
 * @throws {AosError} `notFound` when the directory does not exist.
 */
export function watchFile(path: string, options: WatchFileOptions = {}): FileWatcher {
  return new FileWatcher(path, options);
}

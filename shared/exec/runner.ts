/**
 * The command-runner port and its real implementation over `Deno.Command`.
 * @module
 */

import { AosError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";

/** Options of one {@link CommandRunner.run} call. */
export interface RunOptions {
  /** Bytes or text written to the child's stdin, which is then closed. No stdin when absent. */
  stdin?: string | Uint8Array;
  /** Aborting kills the child (SIGKILL) and rejects with `canceled`. */
  signal?: AbortSignal;
  /** Kills the child (SIGKILL) after this many milliseconds and rejects with `timeout`. */
  timeoutMs?: number;
  /** Resolve with the result on a non-zero exit instead of throwing `failed`. */
  allowFailure?: boolean;
}

/** What a finished program produced. */
export interface CommandResult {
  /** Exit code (128 + signal number when killed by a signal). */
  code: number;
  /** Captured stdout, UTF-8 decoded. */
  stdout: string;
  /** Captured stderr, UTF-8 decoded. */
  stderr: string;
}

/**
 * Runs external programs. Every module that spawns something takes this port, so a component's
 * `--allow-run` lists exactly the binaries its runner allows, and tests can record arguments.
 */
export interface CommandRunner {
  /**
   * Runs `program` with `args` (no shell) and waits for it to exit.
   * Throws `AosError("failed")` on a non-zero exit unless `allowFailure` is set.
   */
  run(program: string, args: string[], opts?: RunOptions): Promise<CommandResult>;
}

/** Options of {@link DenoCommandRunner}. */
export interface DenoCommandRunnerOptions {
  /**
   * Programs this runner may start, compared verbatim with the `program` argument: `"ip"`
   * allows `ip` looked up in `PATH`, `"/usr/sbin/ip"` allows only that path.
   */
  allow: readonly string[];
  /** Cap of captured bytes per stream; more output kills the child (default 8 MiB). */
  maxOutputBytes?: number;
  /** Timeout applied when a call gives none, in milliseconds (default: none). */
  defaultTimeoutMs?: number;
  /** Receives a debug record per run. */
  logger?: Logger;
}

/** Default cap of captured bytes per stream. */
export const DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

/** Renders a command line for messages, quoting arguments that need it. */
export function formatCommand(program: string, args: readonly string[]): string {
  const quote = (s: string) => /^[\w@%+=:,./-]+$/.test(s) ? s : JSON.stringify(s);
  const line = [program, ...args].map(quote).join(" ");
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** First non-empty line of `text`, bounded, for error messages. */
export function firstLine(text: string): string {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l.length > 0) ?? "";
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/**
 * Throws `AosError("failed")` for a non-zero exit unless `allowFailure` is set; returns the
 * result otherwise. Shared by the real and the fake runner so both fail the same way.
 */
export function checkResult(
  program: string,
  args: readonly string[],
  result: CommandResult,
  allowFailure = false,
): CommandResult {
  if (result.code === 0 || allowFailure) return result;
  const detail = firstLine(result.stderr) || firstLine(result.stdout) || "no output";
  throw new AosError(
    "failed",
    `${formatCommand(program, args)} exited with ${result.code}: ${detail}`,
    { exitCode: result.code },
  );
}

/** Refuses a program outside `allow` (shared by the real and the fake runner). */
export function checkAllowed(allow: ReadonlySet<string>, program: string, args: readonly string[]) {
  if (!allow.has(program)) {
    throw new AosError(
      "notSupported",
      `Cannot run ${
        formatCommand(program, args)
      }: "${program}" is not in this runner's allow-list ` +
        `[${[...allow].join(", ")}]`,
    );
  }
}

class OutputTooLarge extends Error {}

/** Reads a stream into memory up to `cap` bytes; throws {@link OutputTooLarge} beyond it. */
async function collect(
  stream: ReadableStream<Uint8Array>,
  cap: number,
  stop: AbortSignal,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  // Cancelling ends a pending read even when a grandchild still holds the pipe's write end.
  const onStop = () => void reader.cancel().catch(() => {});
  stop.addEventListener("abort", onStop, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > cap) throw new OutputTooLarge();
      chunks.push(value);
    }
  } finally {
    stop.removeEventListener("abort", onStop);
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * {@link CommandRunner} over `Deno.Command`, restricted to an explicit allow-list checked before
 * spawning (defence in depth on top of Deno's `--allow-run` grant).
 */
export class DenoCommandRunner implements CommandRunner {
  readonly #allow: ReadonlySet<string>;
  readonly #maxOutput: number;
  readonly #defaultTimeout: number | undefined;
  readonly #logger: Logger | undefined;

  constructor(options: DenoCommandRunnerOptions) {
    this.#allow = new Set(options.allow);
    this.#maxOutput = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    this.#defaultTimeout = options.defaultTimeoutMs;
    this.#logger = options.logger;
  }

  /** The programs this runner may start (what `--allow-run` must grant). */
  get allowed(): string[] {
    return [...this.#allow];
  }

  async run(program: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
    checkAllowed(this.#allow, program, args);
    const cmdline = formatCommand(program, args);
    if (opts.signal?.aborted) {
      throw new AosError("canceled", `Cannot run ${cmdline}: aborted before start`, {
        cause: opts.signal.reason,
      });
    }
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, {
        args,
        stdin: opts.stdin === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      const code = err instanceof Deno.errors.NotFound ? "notFound" : "failed";
      throw new AosError(code, `Cannot start ${cmdline}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.#logger?.debug("run", { cmd: cmdline });

    // Why the child died early, if we killed it.
    let killedFor: AosError | undefined;
    const stopReading = new AbortController();
    const kill = (reason: AosError) => {
      if (killedFor) return;
      killedFor = reason;
      stopReading.abort();
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    };
    const timeoutMs = opts.timeoutMs ?? this.#defaultTimeout;
    const timer = timeoutMs === undefined ? undefined : setTimeout(
      () => kill(new AosError("timeout", `${cmdline} did not exit within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = () =>
      kill(
        new AosError("canceled", `${cmdline} was aborted`, { cause: opts.signal?.reason }),
      );
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    const tooLarge = () =>
      kill(
        new AosError(
          "outOfRange",
          `${cmdline} wrote more than ${this.#maxOutput} bytes to one stream`,
        ),
      );
    const gather = (s: ReadableStream<Uint8Array>) =>
      collect(s, this.#maxOutput, stopReading.signal).catch((err) => {
        if (err instanceof OutputTooLarge) tooLarge();
        return new Uint8Array();
      });

    try {
      const stdinDone = opts.stdin === undefined ? Promise.resolve() : (async () => {
        const data = typeof opts.stdin === "string"
          ? new TextEncoder().encode(opts.stdin)
          : opts.stdin!;
        const writer = child.stdin.getWriter();
        const onStop = () => void writer.abort().catch(() => {});
        stopReading.signal.addEventListener("abort", onStop, { once: true });
        try {
          await writer.write(data);
          await writer.close();
        } catch {
          // The child exited without reading all input; its exit code tells the story.
          await writer.abort().catch(() => {});
        } finally {
          stopReading.signal.removeEventListener("abort", onStop);
        }
      })();
      const outP = gather(child.stdout);
      const errP = gather(child.stderr);
      const status = await child.status;
      const [out, err] = await Promise.all([outP, errP, stdinDone]);
      if (killedFor) throw killedFor;
      const dec = new TextDecoder();
      const result = { code: status.code, stdout: dec.decode(out), stderr: dec.decode(err) };
      return checkResult(program, args, result, opts.allowFailure);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }
}

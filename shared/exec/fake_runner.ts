/**
 * A recording {@link CommandRunner} for pure unit tests of argument building.
 * @module
 */

import { checkAllowed, checkResult } from "./runner.ts";
import type { CommandResult, CommandRunner, RunOptions } from "./runner.ts";

/** One call seen by a {@link RecordingRunner}. */
export interface RecordedCall {
  program: string;
  args: string[];
  /** stdin as text (bytes are decoded as UTF-8), when given. */
  stdin?: string;
}

/** Produces the result of a recorded call; `undefined` means success with empty output. */
export type FakeResponder = (call: RecordedCall) => Partial<CommandResult> | undefined;

/** Options of {@link RecordingRunner}. */
export interface RecordingRunnerOptions {
  /** When given, programs outside it are refused like the real runner does. */
  allow?: readonly string[];
  /** Answers calls (default: exit 0, no output). */
  respond?: FakeResponder;
}

/**
 * Records every call and answers from a responder; spawns nothing. Non-zero codes throw the
 * same `AosError` as the real runner unless `allowFailure` is set.
 */
export class RecordingRunner implements CommandRunner {
  /** Calls in order. */
  readonly calls: RecordedCall[] = [];
  readonly #allow: ReadonlySet<string> | undefined;
  #respond: FakeResponder;

  constructor(options: RecordingRunnerOptions = {}) {
    this.#allow = options.allow === undefined ? undefined : new Set(options.allow);
    this.#respond = options.respond ?? (() => undefined);
  }

  /** Replaces the responder. */
  respondWith(respond: FakeResponder): void {
    this.#respond = respond;
  }

  /** Calls rendered as `program arg1 arg2` lines, handy for assertions. */
  get lines(): string[] {
    return this.calls.map((c) => [c.program, ...c.args].join(" "));
  }

  run(program: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
    try {
      if (this.#allow) checkAllowed(this.#allow, program, args);
      const call: RecordedCall = { program, args: [...args] };
      if (opts.stdin !== undefined) {
        call.stdin = typeof opts.stdin === "string"
          ? opts.stdin
          : new TextDecoder().decode(opts.stdin);
      }
      this.calls.push(call);
      const answer = this.#respond(call) ?? {};
      const result: CommandResult = {
        code: answer.code ?? 0,
        stdout: answer.stdout ?? "",
        stderr: answer.stderr ?? "",
      };
      return Promise.resolve(checkResult(program, args, result, opts.allowFailure));
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

/**
 * A port for long-running children whose output is streamed (the foreground `runc run` of each
 * instance). {@link CommandRunner} from `@aos/shared/exec` buffers output and waits for the
 * exit, which suits every other runc call but not a container's lifetime; this is its streaming
 * sibling, with the same allow-list discipline.
 * @module
 */
import { AosError } from "@aos/shared/core";
import { checkAllowed, formatCommand } from "@aos/shared/exec";

/** How a spawned child ended. */
export interface ExitStatus {
  /** Exit code (runc reports a container killed by signal N as 128 + N). */
  code: number;
  /** Signal that killed the child itself, if any. */
  signal: string | null;
}

/** A running child. */
export interface SpawnedProcess {
  readonly pid: number;
  /** The child's stdout; must be consumed (or cancelled). */
  readonly stdout: ReadableStream<Uint8Array>;
  /** The child's stderr; must be consumed (or cancelled). */
  readonly stderr: ReadableStream<Uint8Array>;
  /** Resolves when the child exits. */
  readonly status: Promise<ExitStatus>;
  /** Sends a signal; ignored when the child is gone. */
  kill(signal: Deno.Signal): void;
}

/** Starts long-running children with piped stdout/stderr and no stdin. */
export interface ProcessSpawner {
  spawn(program: string, args: string[]): SpawnedProcess;
}

/** Options of {@link DenoProcessSpawner}. */
export interface DenoProcessSpawnerOptions {
  /** Programs this spawner may start, compared verbatim (e.g. `/usr/sbin/runc`). */
  allow: readonly string[];
  /**
   * Environment of every child; the SM's own environment is not inherited, so e.g. a stray
   * `NOTIFY_SOCKET` never reaches runc (upstream strips it too).
   */
  env?: Record<string, string>;
}

/** Default child environment. */
export const DEFAULT_CHILD_ENV: Readonly<Record<string, string>> = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
};

/** {@link ProcessSpawner} over `Deno.Command`. */
export class DenoProcessSpawner implements ProcessSpawner {
  readonly #allow: ReadonlySet<string>;
  readonly #env: Record<string, string>;

  constructor(options: DenoProcessSpawnerOptions) {
    this.#allow = new Set(options.allow);
    this.#env = { ...(options.env ?? DEFAULT_CHILD_ENV) };
  }

  spawn(program: string, args: string[]): SpawnedProcess {
    checkAllowed(this.#allow, program, args);
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, {
        args,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        clearEnv: true,
        env: this.#env,
      }).spawn();
    } catch (err) {
      const code = err instanceof Deno.errors.NotFound ? "notFound" : "failed";
      throw new AosError(
        code,
        `Cannot start ${formatCommand(program, args)}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return {
      pid: child.pid,
      stdout: child.stdout,
      stderr: child.stderr,
      status: child.status.then((s) => ({ code: s.code, signal: s.signal })),
      kill(signal) {
        try {
          child.kill(signal);
        } catch {
          // Already exited.
        }
      },
    };
  }
}

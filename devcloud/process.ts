/**
 * A component process started under its permission manifest: waits for "<name> started",
 * keeps its log, stops with SIGTERM then SIGKILL. Used by the demo and the tests.
 * @module
 */

/** A running component. */
export interface ComponentProcess {
  readonly name: string;
  readonly pid: number;
  /** Everything written to stderr so far (the component's log). */
  readonly log: () => string;
  readonly status: Promise<Deno.CommandStatus>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status. */
  stop(graceMs?: number): Promise<Deno.CommandStatus>;
  /** SIGKILL and wait. */
  kill(): Promise<Deno.CommandStatus>;
}

/** Spawns `deno <args>` and resolves once it logged "<name> started" (rejects if it exits). */
export async function startComponent(name: string, args: string[]): Promise<ComponentProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const drained = (async () => {
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    await drained;
    return s;
  });
  const started = new RegExp(`${name} started`);
  while (!started.test(text)) {
    if (exited) {
      await status;
      throw new Error(`${name} exited before start:\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const signal = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  };
  return {
    name,
    pid: child.pid,
    log: () => text,
    status,
    async stop(graceMs = 30_000) {
      signal("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => timer = setTimeout(r, graceMs));
      const done = await Promise.race([status.then(() => true), late.then(() => false)]);
      clearTimeout(timer);
      if (!done) signal("SIGKILL");
      return await status;
    },
    async kill() {
      signal("SIGKILL");
      return await status;
    },
  };
}

/** Polls `probe` until it returns a value other than `undefined`/`false`. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The real `openssl` CLI for tests: the independent implementation our crypto is checked against
 * and the tool that makes throw-away PKIs. Test-only.
 * @module
 */

/** Options of {@link openssl}. */
export interface OpensslOptions {
  /** Working directory (relative paths in `args`). */
  cwd?: string;
  /** Text written to openssl's stdin (closed at once when absent). */
  stdin?: string;
}

async function run(args: string[], options: OpensslOptions, capture: boolean) {
  const child = new Deno.Command("openssl", {
    args,
    ...(options.cwd ? { cwd: options.cwd } : {}),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: capture ? "piped" : "null",
    stderr: capture ? "piped" : "null",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  return await child.output();
}

/** Runs openssl; returns its stdout, throws with its stderr on failure. */
export async function openssl(args: string[], options: OpensslOptions = {}): Promise<string> {
  const out = await run(args, options, true);
  const text = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed (exit ${out.code}): ${text.decode(out.stderr).trim()}`,
    );
  }
  return text.decode(out.stdout);
}

/** Runs openssl and reports whether it succeeded instead of throwing. */
export async function opensslOk(args: string[], options: OpensslOptions = {}): Promise<boolean> {
  return (await run(args, options, false)).success;
}

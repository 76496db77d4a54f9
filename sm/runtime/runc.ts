/**
 * Typed runc CLI calls (`state`, `list`, `kill`, `delete`) through the {@link CommandRunner}.
 * The long-running `run` goes through the spawn port instead (see `spawn.ts`).
 * @module
 */
import * as z from "zod/mini";
import "@aos/shared/zod_en";
import { AosError } from "@aos/shared/core";
import type { CommandRunner } from "@aos/shared/exec";

/** What `runc state` / `runc list -f json` report for one container. */
export const runcStateSchema = z.looseObject({
  id: z.string(),
  pid: z.number().check(z.int()),
  status: z.string(),
  bundle: z.string(),
});
/** What runc reports for one container. */
export type RuncState = z.infer<typeof runcStateSchema>;

const NOT_FOUND = /container does not exist|not exist|no such file/i;
const NOT_RUNNING = /not running|process already finished/i;

/** runc with a fixed binary and `--root`. */
export class Runc {
  readonly binary: string;
  readonly root: string;
  readonly #runner: CommandRunner;
  readonly #timeoutMs: number;

  constructor(runner: CommandRunner, binary: string, root: string, timeoutMs = 30_000) {
    this.#runner = runner;
    this.binary = binary;
    this.root = root;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Arguments of a foreground `runc run` (to pass to the spawn port with {@link binary}); runc
   * writes `pidFile` once the container process has started.
   */
  runArgs(bundle: string, id: string, pidFile?: string): string[] {
    const pid = pidFile ? ["--pid-file", pidFile] : [];
    return ["--root", this.root, "run", ...pid, "--bundle", bundle, id];
  }

  async #call(args: string[]) {
    return await this.#runner.run(this.binary, ["--root", this.root, ...args], {
      allowFailure: true,
      timeoutMs: this.#timeoutMs,
    });
  }

  #fail(what: string, r: { code: number; stderr: string }): never {
    const msg = /msg="([^"]*)"/.exec(r.stderr)?.[1] ?? r.stderr.trim().split("\n")[0] ?? "";
    throw new AosError("failed", `runc ${what} failed (exit ${r.code}): ${msg.slice(0, 200)}`, {
      exitCode: r.code,
    });
  }

  /** The container's state, or undefined when runc does not know it. */
  async state(id: string): Promise<RuncState | undefined> {
    const r = await this.#call(["state", id]);
    if (r.code !== 0) {
      if (NOT_FOUND.test(r.stderr)) return undefined;
      this.#fail(`state ${id}`, r);
    }
    return parse(`runc state ${id}`, r.stdout, runcStateSchema);
  }

  /**
   * Every container under the root (runc prints `null` for none). runc fails the whole listing
   * when a container's state dir goes away while it reads the root (a concurrent delete); such a
   * listing is taken again, up to 3 times.
   */
  async list(): Promise<RuncState[]> {
    let r = await this.#call(["list", "--format", "json"]);
    for (let i = 0; r.code !== 0 && i < 3 && /no such file or directory/i.test(r.stderr); i++) {
      r = await this.#call(["list", "--format", "json"]);
    }
    if (r.code !== 0) this.#fail("list", r);
    return parse("runc list", r.stdout, z.nullable(z.array(runcStateSchema))) ?? [];
  }

  /** Signals the container's init; false when it is gone or not running. */
  async kill(id: string, signal: string): Promise<boolean> {
    const r = await this.#call(["kill", id, signal]);
    if (r.code === 0) return true;
    if (NOT_FOUND.test(r.stderr) || NOT_RUNNING.test(r.stderr)) return false;
    this.#fail(`kill ${id} ${signal}`, r);
  }

  /** Deletes the container (forcibly, killing what is left); not-found counts as success. */
  async delete(id: string): Promise<void> {
    const r = await this.#call(["delete", "--force", id]);
    if (r.code !== 0 && !NOT_FOUND.test(r.stderr)) this.#fail(`delete ${id}`, r);
  }
}

function parse<S extends z.ZodMiniType>(what: string, text: string, schema: S): z.output<S> {
  if (text.length > 4 * 1024 * 1024) {
    throw new AosError("outOfRange", `${what}: output of ${text.length} bytes is too large`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AosError("failed", `${what}: output is not JSON: ${(err as Error).message}`);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    throw new AosError("failed", `${what}: unexpected output: ${r.error.issues[0]?.message ?? ""}`);
  }
  return r.data;
}

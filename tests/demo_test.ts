/**
 * `deno task demo` as a new user runs it: it reaches the active instances, the service
 * answers, and Ctrl-C (SIGINT) leaves no container, mount or process behind.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const isRoot = Deno.uid() === 0;

/**
 * The `demo` task's own command line, run without the task runner in between: a terminal's
 * Ctrl-C reaches the whole process group, while a test can signal only the process it spawned.
 */
async function demoCommand(): Promise<string[]> {
  const tasks = JSON.parse(await Deno.readTextFile(`${root}/deno.json`)).tasks as Record<
    string,
    string
  >;
  const [deno, ...args] = tasks.demo!.split(" ");
  assert.equal(deno, "deno");
  return args;
}

Deno.test({
  name: "demo: 2 instances active, the service answers, Ctrl-C cleans up",
  ignore: !isRoot,
  async fn() {
    const child = new Deno.Command(Deno.execPath(), {
      args: await demoCommand(),
      cwd: root,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    let out = "";
    const decoder = new TextDecoder();
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.getReader();
    let interrupted = false;
    const deadline = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 240_000);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        out += decoder.decode(value, { stream: true });
        if (!interrupted && out.includes("press Ctrl-C")) {
          interrupted = true;
          child.kill("SIGINT");
        }
      }
      const status = await child.status;
      const err = await stderr;
      assert.equal(status.code, 0, `${out}\n${err}`);
      assert.match(out, /2 instances active/);
      assert.equal(out.match(/Hello from a container run by AosCore on Deno/g)?.length, 2, out);
      assert.match(out, /stopped: no container, mount or process left/);
      const dir = /unit directory: (\S+)/.exec(out)?.[1];
      assert.ok(dir);
      await assert.rejects(() => Deno.stat(dir), Deno.errors.NotFound);
      const ps = await new Deno.Command("ps", { args: ["-eo", "args"], stdout: "piped" }).output();
      assert.ok(!new TextDecoder().decode(ps.stdout).includes(dir), "a component process is left");
    } finally {
      clearTimeout(deadline);
    }
  },
});

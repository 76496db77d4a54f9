import assert from "node:assert/strict";
import { AosError } from "@aos/shared/core";
import { RecordingRunner } from "@aos/shared/exec";
import { mountOverlay, overlayMountArgs, unmount } from "./rootfs.ts";
import { Runc } from "./runc.ts";

Deno.test({
  name: "overlayMountArgs: layers[0] top-most, optional upper, unsafe paths refused",
  permissions: "none",
  fn() {
    assert.deepEqual(
      overlayMountArgs({ lower: ["/b/mounts", "/l/0", "/l/1"], target: "/b/rootfs" }),
      ["-i", "-n", "-t", "overlay", "overlay", "-o", "lowerdir=/b/mounts:/l/0:/l/1", "/b/rootfs"],
    );
    assert.deepEqual(
      overlayMountArgs({
        lower: ["/b/mounts", "/l/0"],
        target: "/b/rootfs",
        upper: { upperdir: "/b/upper", workdir: "/b/work" },
      })[6],
      "lowerdir=/b/mounts:/l/0,upperdir=/b/upper,workdir=/b/work",
    );
    for (const bad of ["/l/a,b", "/l/a:b", "relative", "/l/a b"]) {
      assert.throws(
        () => overlayMountArgs({ lower: ["/m", bad], target: "/r" }),
        (e) => e instanceof AosError && e.code === "invalidArgument",
      );
    }
    assert.throws(() => overlayMountArgs({ lower: ["/m"], target: "/r" }), /at least two/);
    const many = Array.from(
      { length: 100 },
      (_, i) => `/very/long/path/to/layer/${"x".repeat(40)}${i}`,
    );
    assert.throws(() => overlayMountArgs({ lower: many, target: "/r" }), /bytes of options/);
  },
});

Deno.test({
  name: "mountOverlay retries with a force unmount in between; unmount tolerates not-mounted",
  permissions: "none",
  async fn() {
    let mounts = 0;
    const runner = new RecordingRunner({
      respond: (c) => {
        if (c.program === "mount" && ++mounts < 3) return { code: 32, stderr: "busy" };
        if (c.program === "umount" && c.args.at(-1) === "/gone") {
          return { code: 32, stderr: "umount: /gone: not mounted." };
        }
        return undefined;
      },
    });
    await mountOverlay(runner, { lower: ["/m", "/l"], target: "/r" }, {
      sleep: () => Promise.resolve(),
    });
    assert.deepEqual(runner.lines, [
      "mount -i -n -t overlay overlay -o lowerdir=/m:/l /r",
      "umount -f /r",
      "mount -i -n -t overlay overlay -o lowerdir=/m:/l /r",
      "umount -f /r",
      "mount -i -n -t overlay overlay -o lowerdir=/m:/l /r",
    ]);
    await unmount(runner, "/gone");
  },
});

Deno.test({
  name: "Runc wrapper: not-found is undefined/false/success, other errors throw",
  permissions: "none",
  async fn() {
    const runner = new RecordingRunner({
      respond: (c) => {
        const sub = c.args[2];
        if (c.args.includes("ghost")) {
          return { code: 1, stderr: 'time="x" level=error msg="container does not exist"\n' };
        }
        if (sub === "list") return { stdout: "null\n" };
        if (sub === "kill" && c.args.includes("stopped")) {
          return { code: 1, stderr: 'level=error msg="container not running"' };
        }
        if (sub === "state" && c.args.includes("broken")) {
          return { code: 1, stderr: 'level=error msg="permission denied"' };
        }
        if (sub === "state") {
          return { stdout: JSON.stringify({ id: "a", pid: 7, status: "running", bundle: "/b" }) };
        }
        return undefined;
      },
    });
    const runc = new Runc(runner, "/usr/sbin/runc", "/run/x");
    assert.equal(await runc.state("ghost"), undefined);
    assert.equal((await runc.state("a"))?.status, "running");
    await assert.rejects(
      runc.state("broken"),
      /runc state broken failed \(exit 1\): permission denied/,
    );
    assert.deepEqual(await runc.list(), []);
    assert.equal(await runc.kill("ghost", "KILL"), false);
    assert.equal(await runc.kill("stopped", "TERM"), false);
    assert.equal(await runc.kill("a", "TERM"), true);
    await runc.delete("ghost");
    assert.deepEqual(runc.runArgs("/b", "a"), ["--root", "/run/x", "run", "--bundle", "/b", "a"]);
    assert.equal(runner.lines[0], "/usr/sbin/runc --root /run/x state ghost");
  },
});

Deno.test({
  name: "Runc wrapper: a listing broken by a concurrent delete is taken again",
  permissions: "none",
  async fn() {
    let lists = 0;
    const gone = (n: number) => ({
      code: 1,
      stderr: `stat /run/x/c${n}: no such file or directory\n`,
    });
    const runner = new RecordingRunner({
      respond: (c) => {
        if (c.args[2] !== "list") return undefined;
        lists++;
        return lists <= 2 ? gone(lists) : { stdout: "null\n" };
      },
    });
    const runc = new Runc(runner, "runc", "/run/x");
    assert.deepEqual(await runc.list(), []);
    assert.equal(lists, 3);

    // It keeps failing: after 4 listings the error is reported, naming the missing dir.
    lists = 0;
    const broken = new Runc(
      new RecordingRunner({ respond: () => gone(++lists) }),
      "runc",
      "/run/x",
    );
    await assert.rejects(broken.list(), /runc list failed \(exit 1\): stat \/run\/x\/c4/);
    assert.equal(lists, 4);
  },
});

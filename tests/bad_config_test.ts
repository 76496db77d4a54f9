/**
 * A bad config (unknown type, malformed JSON, bad duration) yields a one-line error naming the
 * file and the key, a non-zero exit code and no stack trace — through the launcher and when the
 * component is started directly.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { mainModule } from "../permissions/launch.ts";

const launcher = fileURLToPath(new URL("../permissions/launch.ts", import.meta.url));

const cases: { name: string; component: string; text: string; expect: RegExp }[] = [
  {
    name: "malformed JSON",
    component: "sm",
    text: '{"workingDir": "/x",',
    expect: /sm\.cfg: malformed JSON: /,
  },
  {
    name: "bad duration",
    component: "sm",
    text: '{"workingDir": "/x", "cmReconnectTimeout": "10 sec"}',
    expect: /sm\.cfg: key "cmReconnectTimeout": invalid duration "10 sec"/,
  },
  {
    name: "wrong type",
    component: "cm",
    text:
      '{"workingDir": "/x", "caCert": "/ca", "serviceDiscoveryUrl": "https://x/", "cmServerUrl": 8093}',
    expect: /cm\.cfg: key "cmServerUrl": expected string, got number 8093/,
  },
  {
    name: "unknown runtime plugin",
    component: "sm",
    text: '{"workingDir": "/x", "runtimes": [{"plugin": "xen"}]}',
    expect: /sm\.cfg: key "runtimes\.0\.plugin": /,
  },
  {
    name: "unsupported cert module plugin",
    component: "iam",
    text: JSON.stringify({
      caCert: "/ca",
      workingDir: "/x",
      nodeInfo: {},
      certModules: [{ id: "iam", plugin: "pkcs11module", params: { storagePath: "/s" } }],
    }),
    expect: /iam\.cfg: key "certModules\.0\.plugin": unsupported cert module plugin/,
  },
];

for (const c of cases) {
  Deno.test(`bad config (${c.name}) fails in one line through the launcher and directly`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      const file = `${dir}/${c.component}.cfg`;
      await Deno.writeTextFile(file, c.text);
      for (
        const args of [
          ["run", "-A", launcher, c.component, "-c", file],
          ["run", "--no-prompt", `--allow-read=${dir}`, mainModule(c.component), "-c", file],
        ]
      ) {
        const out = await new Deno.Command(Deno.execPath(), {
          args,
          stdout: "piped",
          stderr: "piped",
        })
          .output();
        const stderr = new TextDecoder().decode(out.stderr).trim();
        assert.notEqual(out.code, 0);
        assert.match(stderr, c.expect);
        assert.equal(stderr.split("\n").length, 1, stderr);
        assert.ok(!/\n\s+at /.test(stderr) && !stderr.includes("Stack"), stderr);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

/**
 * The devcloud dashboard in a real headless Chromium (Debian `chromium`), fed by a fake unit
 * through CM's real cloud link:
 *
 * - live: the page opens with no unit ("No unit connected yet"), then a unit connects and
 *   reports a node and two instances; the page shows them through its event stream, without a
 *   reload. Driven over the DevTools protocol, because `--virtual-time-budget` waits for every
 *   pending request to finish and an event stream never does. A PNG screenshot is saved
 *   (copied to `$AOS_SCREENSHOT_DIR` when set).
 * - fallback: the plain `chromium --headless --dump-dom --virtual-time-budget=5000` run of the
 *   page in polling mode (`?live=0`) shows the same content.
 *
 * Skipped, with the reason in its name, when `chromium` is not installed
 * (`apt-get install -y chromium`).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildAlerts, buildMonitoringData } from "@aos/shared/cloudprotocol";
import { type Devcloud, startDevcloud } from "../devcloud/cloud.ts";
import { startDashboard } from "../devcloud/dashboard.ts";
import { serviceManifestSchema } from "../devcloud/packer.ts";
import { connectFakeUnit, fakeInstances, fakeNode, until } from "../devcloud/dashboard_fixture.ts";

const SYSTEM_ID = "screenshot-unit";
const EVIL_TITLE = `<script>window.pwned=1</script>main node`;
const EVIL_ERROR = `<img src=x onerror="window.pwned=2">exit code 1`;

function findChromium(): string | undefined {
  const fromEnv = Deno.env.get("CHROMIUM");
  if (fromEnv) return fromEnv;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      if (Deno.statSync(join(dir, "chromium")).isFile) return join(dir, "chromium");
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

const CHROMIUM = findChromium();
const SKIP = CHROMIUM === undefined ? " (SKIPPED: chromium not installed)" : "";
if (SKIP) console.warn("dashboard_screenshot_test: chromium not installed, test skipped");

function chromiumArgs(profile: string): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
    "--window-size=1280,900",
  ];
}

/** A headless Chromium driven over the DevTools protocol (one page). */
class Browser implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #stderr: Promise<string>;
  #ws: WebSocket | undefined;
  #closed: Promise<void> = Promise.resolve();
  #next = 1;
  #calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(child: Deno.ChildProcess, stderr: Promise<string>) {
    this.#child = child;
    this.#stderr = stderr;
  }

  static async launch(profile: string): Promise<Browser> {
    const child = new Deno.Command(CHROMIUM!, {
      args: [...chromiumArgs(profile), "--remote-debugging-port=0", "about:blank"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const { promise: announced, resolve: announce } = Promise.withResolvers<string>();
    // Read all of stderr (a full pipe would stall Chromium); the DevTools URL is on it.
    const stderr = (async () => {
      let text = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
        if (m) announce(m[1]!);
      }
      announce("");
      return text;
    })();
    const browser = new Browser(child, stderr);
    try {
      const wsUrl = await announced;
      if (!wsUrl) throw new Error(`chromium exited without DevTools: ${await stderr}`);
      const port = new URL(wsUrl).port;
      const targets: { type: string; webSocketDebuggerUrl: string }[] =
        await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
      const page = targets.find((t) => t.type === "page");
      if (!page) throw new Error("chromium has no page target");
      await browser.#connect(page.webSocketDebuggerUrl);
      return browser;
    } catch (err) {
      await browser.close();
      throw err;
    }
  }

  async #connect(url: string): Promise<void> {
    const ws = new WebSocket(url);
    this.#ws = ws;
    this.#closed = new Promise((r) => ws.addEventListener("close", () => r()));
    ws.addEventListener("message", (e) => {
      const msg = JSON.parse(String(e.data));
      const call = this.#calls.get(msg.id);
      if (!call) return;
      this.#calls.delete(msg.id);
      if (msg.error) call.reject(new Error(`DevTools: ${JSON.stringify(msg.error)}`));
      else call.resolve(msg.result);
    });
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve);
      ws.addEventListener("error", () => reject(new Error("DevTools connection failed")));
    });
  }

  call<T = Record<string, unknown>>(method: string, params: unknown = {}): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#calls.set(id, { resolve: (v) => resolve(v as T), reject });
      this.#ws!.send(JSON.stringify({ id, method, params }));
    });
  }

  async eval<T>(expression: string): Promise<T> {
    const r = await this.call<{ result: { value: T }; exceptionDetails?: unknown }>(
      "Runtime.evaluate",
      { expression, returnByValue: true },
    );
    if (r.exceptionDetails) throw new Error(`page: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  }

  async waitFor(what: string, expression: string, limitMs = 10_000): Promise<void> {
    const end = Date.now() + limitMs;
    while (!(await this.eval<boolean>(expression))) {
      if (Date.now() > end) {
        const text = await this.eval<string>("document.body.innerText");
        throw new Error(`page never showed ${what}; it shows:\n${text}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A full-page PNG. */
  async screenshot(): Promise<Uint8Array> {
    const m = await this.call<{ cssContentSize: { width: number; height: number } }>(
      "Page.getLayoutMetrics",
    );
    const { data } = await this.call<{ data: string }>("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: true,
      clip: {
        x: 0,
        y: 0,
        width: Math.ceil(m.cssContentSize.width),
        height: Math.ceil(Math.max(m.cssContentSize.height, 900)),
        scale: 1,
      },
    });
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }

  async close(): Promise<void> {
    for (const c of this.#calls.values()) c.reject(new Error("browser closed"));
    this.#calls.clear();
    if (this.#ws && this.#ws.readyState <= WebSocket.OPEN) this.#ws.close();
    await this.#closed;
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.#child.status;
    await this.#stderr;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Sends a minute of CPU/RAM samples and two alerts, as a unit's CM would. */
function sendActivity(link: Awaited<ReturnType<typeof connectFakeUnit>>): void {
  const now = Date.now();
  link.send(buildMonitoringData({
    nodes: [{
      node: { codename: "main" },
      nodeStates: [],
      items: Array.from({ length: 60 }, (_, k) => ({
        timestamp: new Date(now - (60 - k) * 1000),
        cpu: Math.round(35 + 25 * Math.sin(k / 6)),
        ram: Math.round((300 + 4 * k) * 2 ** 20),
        download: 0,
        upload: 0,
        partitions: [],
      })),
    }],
    instances: [],
  }));
  link.send(buildAlerts({
    items: [
      {
        tag: "systemAlert",
        timestamp: new Date(now - 30_000),
        node: { codename: "main" },
        message: "node started",
      },
      {
        tag: "coreAlert",
        timestamp: new Date(now - 5000),
        node: { codename: "main" },
        coreComponent: "SM",
        message: `instance 0 of hello failed: <b>exit code 1</b>`,
      },
    ],
  }));
}

async function saveScreenshot(png: Uint8Array, dir: string, name: string): Promise<string> {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const path = join(dir, name);
  await Deno.writeFile(path, png);
  const out = Deno.env.get("AOS_SCREENSHOT_DIR");
  if (out) {
    await Deno.mkdir(out, { recursive: true });
    await Deno.copyFile(path, join(out, name));
  }
  return path;
}

async function setup(dir: string): Promise<Devcloud> {
  return await startDevcloud({
    workingDir: join(dir, "devcloud"),
    cloudListen: "localhost:0",
    blobsListen: "localhost:0",
    ackTimeoutMs: 2000,
  });
}

function unitStatus(itemId: string) {
  return () => ({
    nodes: [fakeNode("main", EVIL_TITLE)],
    items: [{
      item: { id: itemId, type: "service" },
      version: "1.0.0",
      state: "installed" as const,
    }],
    instances: [fakeInstances(itemId, "subject-1", "1.0.0", "main", 2, 1, EVIL_ERROR)],
    unitConfig: [],
    subjects: [],
  });
}

const INSTANCE_ROWS = `document.querySelectorAll("tr.instance").length`;

Deno.test({
  name: `dashboard in headless Chromium: live update over the event stream, screenshot${SKIP}`,
  ignore: CHROMIUM === undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dashboard_screenshot_" });
    try {
      await using cloud = await setup(dir);
      await using dash = await startDashboard({ devcloud: cloud, hostname: "127.0.0.1", port: 0 });
      await using browser = await Browser.launch(join(dir, "profile"));
      await browser.call("Page.enable");
      await browser.call("Page.navigate", { url: `${dash.url}/` });
      await browser.waitFor(
        "the empty page on a live stream",
        `document.getElementById("empty")?.textContent.includes("No unit connected yet") && ` +
          `document.getElementById("live")?.textContent === "live"`,
      );
      assert.equal(dash.clients, 1, "the page holds the event stream");
      await saveScreenshot(await browser.screenshot(), dir, "dashboard-empty.png");

      const rootfs = join(dir, "rootfs");
      await Deno.mkdir(join(rootfs, "bin"), { recursive: true });
      await Deno.writeTextFile(join(rootfs, "bin/app"), "#!/bin/sh\nsleep 1000\n", { mode: 0o755 });
      const manifest = serviceManifestSchema.parse({
        name: "hello",
        version: "1.0.0",
        cmd: ["/bin/app"],
      });
      const { id: itemId } = await cloud.deploy("hello", {
        instances: 2,
        source: rootfs,
        manifest,
      });
      await browser.waitFor("the deployed service", `document.body.innerText.includes("hello")`);

      // The unit connects after the page loaded: what it reports must arrive without reload.
      await using link = await connectFakeUnit(cloud, {
        systemId: SYSTEM_ID,
        status: unitStatus(itemId),
      });
      await until("unit status", () => cloud.units()[0]?.status.instances.length === 2);
      sendActivity(link);
      await browser.waitFor("both instances", `${INSTANCE_ROWS} === 2`);
      await browser.waitFor(
        "the chart's samples and the alerts",
        `document.body.innerText.includes("60 samples") && ` +
          `document.querySelectorAll("#alerts tbody tr").length === 2`,
      );
      assert.equal(await browser.eval("document.getElementById('live').textContent"), "live");
      assert.equal(await browser.eval("location.pathname + location.search"), "/", "no reload");

      const html = await browser.eval<string>("document.documentElement.outerHTML");
      assert.match(html, new RegExp(SYSTEM_ID));
      assert.match(html, />main</, "the node id");
      assert.match(html, new RegExp(itemId));
      const states = await browser.eval<string[]>(
        `[...document.querySelectorAll("tr.instance")].map((r) => r.cells[0].textContent + ":" + ` +
          `r.cells[1].textContent + ":" + r.cells[3].textContent)`,
      );
      assert.deepEqual(states, ["0:main:failed", "1:main:active"]);
      // Unit strings show as text: no element came from them and no script of theirs ran.
      assert.match(html, /&lt;script&gt;window\.pwned=1&lt;\/script&gt;main node/);
      assert.match(html, /&lt;img src=x onerror="window\.pwned=2"&gt;exit code 1/);
      assert.equal(await browser.eval("document.scripts.length"), 1);
      assert.equal(await browser.eval("document.querySelectorAll('img, b').length"), 0);
      assert.equal(await browser.eval("typeof window.pwned"), "undefined");
      // The chart drew something: the canvas is not blank.
      const inked = await browser.eval<number>(
        `(() => { const c = document.querySelector("canvas"); ` +
          `const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data; ` +
          `let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) n++; return n; })()`,
      );
      assert.ok(inked > 500, `chart pixels drawn: ${inked}`);

      const png = await browser.screenshot();
      assert.ok(png.length > 20_000, `screenshot of ${png.length} bytes`);
      const path = await saveScreenshot(png, dir, "dashboard.png");
      console.log(`screenshot: ${path} (${png.length} bytes)`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    `dashboard in headless Chromium: --dump-dom of the polling page shows both instances${SKIP}`,
  ignore: CHROMIUM === undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dashboard_dump_" });
    try {
      await using cloud = await setup(dir);
      await using dash = await startDashboard({ devcloud: cloud, hostname: "127.0.0.1", port: 0 });
      await using link = await connectFakeUnit(cloud, {
        systemId: SYSTEM_ID,
        status: unitStatus(crypto.randomUUID()),
      });
      await until("unit status", () => cloud.units()[0]?.status.instances.length === 2);
      sendActivity(link);
      await until("alerts", () => cloud.alerts().length === 2);
      const out = await new Deno.Command(CHROMIUM!, {
        args: [
          ...chromiumArgs(join(dir, "profile")),
          "--virtual-time-budget=5000",
          "--dump-dom",
          `${dash.url}/?live=0`,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dom = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.equal(dom.match(/<tr class="instance">/g)?.length, 2, dom);
      assert.match(dom, /<span class="badge wait">polling<\/span>|class="badge warn">polling/);
      assert.match(dom, new RegExp(SYSTEM_ID));
      assert.match(dom, /&lt;script&gt;window\.pwned=1/);
      assert.equal(dom.match(/<script/g)?.length, 1, "only the page's own script");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * The SM container runtime over real `runc`: bundle preparation, the overlay rootfs, one
 * foreground `runc run` child per instance (exit code and output come straight from it),
 * per-instance rotating logs, graceful stop, the restart policy, and orphan cleanup.
 * @module
 */
import { existsSync as pathExists } from "node:fs";
import { dirname, normalize } from "node:path";
import {
  AosError,
  type Clock,
  type Logger,
  Mutex,
  sleep,
  systemClock,
  toAosError,
} from "@aos/shared/core";
import type { CommandRunner } from "@aos/shared/exec";
import type { ContainerConfig, ItemConfig } from "@aos/shared/oci";
import {
  buildRuntimeSpec,
  type EnvVar,
  type HostBind,
  mountSkeleton,
  type NodeFacts,
} from "./bundle.ts";
import { type CgroupFiles, cgroupFiles, type CgroupLayout, detectCgroupLayout } from "./cgroups.ts";
import { instanceId, type InstanceIdent, isUuid } from "./instance_id.ts";
import { DEFAULT_LOG_FILES, DEFAULT_LOG_MAX_BYTES, pipeLines, RotatingLog } from "./log_file.ts";
import {
  type HostLookup,
  resolveResources,
  type ResourceConfig,
  systemHostLookup,
} from "./resources.ts";
import { RestartPolicy, runParameters } from "./restart_policy.ts";
import {
  createSkeleton,
  mountOverlay,
  mountsUnder,
  prepareHostWhiteouts,
  unmount,
} from "./rootfs.ts";
import { Runc } from "./runc.ts";
import type { ExitStatus, ProcessSpawner, SpawnedProcess } from "./spawn.ts";

/** Instance states as reported upstream. */
export type InstanceState = "activating" | "active" | "inactive" | "failed";

/** Status of one instance. */
export interface InstanceStatus {
  instanceId: string;
  ident: InstanceIdent;
  state: InstanceState;
  /** Why the instance is failed, or why it is being restarted (exit code in `exitCode`). */
  error?: AosError;
}

/** A container process ended (requested or not). */
export interface ExitEvent {
  instanceId: string;
  /** runc's exit status: the container's exit code, or 128 + N when killed by signal N. */
  exitCode: number;
  /** The signal name when `exitCode` is above 128 (inferred: a program may exit 137 itself). */
  signal?: string;
  /** True when the exit was caused by {@link ContainerRuntime.stopInstance} or disposal. */
  requested: boolean;
}

/** Everything needed to start one instance. */
export interface InstanceDesc {
  ident: InstanceIdent;
  /** `InstanceInfo.uid`/`gid` (allocated by the CM). */
  uid: number;
  gid: number;
  /** `InstanceInfo.storage_path`, relative to the runtime's `storageDir`; bound at `/storage`. */
  storagePath?: string;
  /** `InstanceInfo.state_path`, relative to `stateDir`; bound at `/state.dat`. */
  statePath?: string;
  /** `InstanceInfo.env_vars`, applied last. */
  envVars?: readonly EnvVar[];
  /** Unpacked layer dirs, `layers[0]` top-most (the Aos order). */
  layers: readonly string[];
  /** The image config's `config` member. */
  imageConfig?: ContainerConfig;
  itemConfig?: ItemConfig;
  /** Network namespace to join (the networking hook; the netns must exist). */
  netnsPath?: string;
  /** Share the host network instead of a fresh isolated namespace (when `netnsPath` is absent). */
  hostNetwork?: boolean;
  /** `/etc/hosts` and `/etc/resolv.conf` text for the container (networking hook). */
  etcFiles?: { hosts?: string; resolvConf?: string };
  /** IAM secret for the item's `permissions` (exported as `AOS_SECRET`). */
  secret?: string;
  /** Mount a writable upper layer (under the bundle, discarded on stop). */
  writableRootfs?: boolean;
}

/** What {@link ContainerRuntime.cleanupOrphans} removed. */
export interface OrphanReport {
  containers: string[];
  mounts: string[];
  bundles: string[];
}

/**
 * The runtime port the launcher uses.
 *
 * - `startInstance` resolves once the container runs (`active`), or with the status after an
 *   early exit (`activating` while a restart is pending, `failed` once the policy gives up); it
 *   throws `AosError` when the instance cannot be prepared (bad layers, unknown resource…).
 * - `stopInstance` sends SIGTERM, waits the grace period, then SIGKILLs; idempotent.
 * - `subscribe` receives every status change; `onExit` every container exit.
 * - `cleanupOrphans` removes containers, mounts and bundles this object does not own.
 */
export interface ContainerRuntime extends AsyncDisposable {
  startInstance(desc: InstanceDesc): Promise<InstanceStatus>;
  stopInstance(instanceId: string): Promise<void>;
  listInstances(): InstanceStatus[];
  subscribe(listener: (status: InstanceStatus) => void): () => void;
  onExit(listener: (event: ExitEvent) => void): () => void;
  cleanupOrphans(): Promise<OrphanReport>;
}

/** The runtime section of `sm.cfg` this runtime reads (`SmConfig.runtimes[i].config`). */
export interface RuncRuntimeConfig {
  runtimeDir: string;
  /** runc `--root`. */
  crunStateRoot: string;
  /** runc binary. */
  crunExecutable: string;
  hostWhiteoutsDir: string;
  /** Top-level host dirs visible under the layers; empty = no host `/` layer at all. */
  hostBinds: readonly string[];
  stateDir: string;
  storageDir: string;
}

/** Options of {@link RuncRuntime}. */
export interface RuncRuntimeOptions {
  config: RuncRuntimeConfig;
  /** Must allow `config.crunExecutable`, `mount`, `umount` (and `mknod` with host binds). */
  runner: CommandRunner;
  /** Must allow `config.crunExecutable`. */
  spawner: ProcessSpawner;
  logger: Logger;
  node: NodeFacts;
  /** Parsed `resources.cfg`. */
  resources?: readonly ResourceConfig[];
  /** Named in "resource not defined" errors. */
  resourcesFile?: string;
  hostLookup?: HostLookup;
  /** Parent of every instance cgroup (default `/aos`, so `/aos/<instanceID>`). */
  cgroupParent?: string;
  /** Host files bound read-only when they exist (default `/etc/nsswitch.conf`, `/etc/ssl`). */
  etcBinds?: readonly string[];
  /** SIGTERM → SIGKILL grace (default 10 s; upstream kills at once). */
  stopGraceMs?: number;
  /** How long a start may take to reach `running` (default 15 s). */
  activeTimeoutMs?: number;
  /** Log files: dir (default `runtimeDir`), size cap per file, number of files. */
  log?: { dir?: string; maxBytes?: number; files?: number };
  clock?: Clock;
}

interface Managed {
  id: string;
  ident: InstanceIdent;
  bundle: string;
  state: InstanceState;
  error?: AosError;
  policy: RestartPolicy;
  lock: Mutex;
  log?: RotatingLog;
  child?: SpawnedProcess | undefined;
  /** Resolves when the child's exit has been fully handled. */
  exited?: Promise<ExitStatus>;
  /** Resolves when the exit handler (restart policy) has run for the current child. */
  handled?: Promise<void>;
  stopping: boolean;
  restartTimer?: ReturnType<typeof setTimeout> | undefined;
  mounted: boolean;
  /** Where the last start spent its time (ms): bundle files, the overlay mount, runc. */
  startTimes?: { bundleMs: number; mountMs: number; runcMs: number } | undefined;
}

/** A duration rounded to 0.1 ms, for logs. */
const ms = (x: number) => Math.round(x * 10) / 10;

const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  6: "SIGABRT",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
};

const SIGNAL_NUMBERS: Record<string, number> = Object.fromEntries(
  Object.entries(SIGNALS).map(([n, s]) => [s, Number(n)]),
);

/** Resolves `rel` (from the CM, untrusted) inside `base`; refuses anything that could leave it. */
function confined(base: string, rel: string, what: string): string {
  const parts = rel.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0 || rel.includes("\0") || parts.includes("..")) {
    throw new AosError(
      "invalidArgument",
      `${what} ${JSON.stringify(rel)} is empty or escapes ${base}`,
    );
  }
  return `${normalize(base)}/${parts.join("/")}`;
}

function checkId(what: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) {
    throw new AosError("invalidArgument", `${what} ${n} is not a 32-bit unsigned integer`);
  }
}

async function exists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

async function removeTree(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

// The start path uses synchronous fs calls: each is a few microseconds of metadata work on a
// small bundle, where an async op costs a thread-pool round trip (~0.3 ms each, more under load),
// and a start makes a few dozen of them.

/** The file's info, or undefined when it does not exist. */
function statOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

function removeTreeSync(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** How often a starting instance's pid file is looked for (~2 µs a look; 4 starts at a time). */
const PID_FILE_POLL_MS = 1;
/** How often `runc state` is asked while an instance starts without a pid file. */
const STATE_POLL_MS = 1000;

/** {@link ContainerRuntime} over runc. Create with {@link RuncRuntime.create}. */
export class RuncRuntime implements ContainerRuntime {
  readonly #cfg: RuncRuntimeConfig;
  readonly #runner: CommandRunner;
  readonly #spawner: ProcessSpawner;
  readonly #log: Logger;
  readonly #node: NodeFacts;
  readonly #resources: readonly ResourceConfig[];
  readonly #resourcesFile: string;
  readonly #host: HostLookup;
  readonly #cgroupParent: string;
  readonly #etcBinds: readonly string[];
  readonly #grace: number;
  readonly #activeTimeout: number;
  readonly #logDir: string;
  readonly #logMax: number;
  readonly #logFiles: number;
  readonly #clock: Clock;
  readonly #runc: Runc;
  readonly #instances = new Map<string, Managed>();
  readonly #statusListeners = new Set<(s: InstanceStatus) => void>();
  readonly #exitListeners = new Set<(e: ExitEvent) => void>();
  #layout: CgroupLayout = "v1";
  #whiteouts: Promise<void> | undefined;
  #disposed = false;

  private constructor(o: RuncRuntimeOptions) {
    this.#cfg = o.config;
    this.#runner = o.runner;
    this.#spawner = o.spawner;
    this.#log = o.logger.child({ module: "runtime" });
    this.#node = o.node;
    this.#resources = o.resources ?? [];
    this.#resourcesFile = o.resourcesFile ?? "/etc/aos/resources.cfg";
    this.#host = o.hostLookup ?? systemHostLookup();
    this.#cgroupParent = (o.cgroupParent ?? "/aos").replace(/\/+$/, "");
    this.#etcBinds = o.etcBinds ?? ["/etc/nsswitch.conf", "/etc/ssl"];
    this.#grace = o.stopGraceMs ?? 10_000;
    this.#activeTimeout = o.activeTimeoutMs ?? 15_000;
    this.#logDir = o.log?.dir ?? o.config.runtimeDir;
    this.#logMax = o.log?.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.#logFiles = o.log?.files ?? DEFAULT_LOG_FILES;
    this.#clock = o.clock ?? systemClock;
    this.#runc = new Runc(o.runner, o.config.crunExecutable, o.config.crunStateRoot);
  }

  /** Creates the runtime: makes its dirs and detects the cgroup layout. */
  static async create(options: RuncRuntimeOptions): Promise<RuncRuntime> {
    const rt = new RuncRuntime(options);
    await Deno.mkdir(rt.#cfg.runtimeDir, { recursive: true, mode: 0o755 });
    await Deno.mkdir(rt.#logDir, { recursive: true, mode: 0o755 });
    rt.#layout = await detectCgroupLayout(undefined, options.runner);
    rt.#log.debug("runtime ready", { cgroups: rt.#layout, runtimeDir: rt.#cfg.runtimeDir });
    return rt;
  }

  /** The cgroup layout detected at creation. */
  get cgroupLayout(): CgroupLayout {
    return this.#layout;
  }

  /** `linux.cgroupsPath` of an instance. */
  cgroupsPath(id: string): string {
    return `${this.#cgroupParent}/${id}`;
  }

  /** The files holding an instance's cgroup limits and usage. */
  cgroupFiles(id: string): CgroupFiles {
    return cgroupFiles(this.#layout, this.cgroupsPath(id));
  }

  /** Path of an instance's live log file. */
  logPath(id: string): string {
    return `${this.#logDir}/${id}.log`;
  }

  /** Bundle dir of an instance. */
  bundlePath(id: string): string {
    return `${this.#cfg.runtimeDir}/${id}`;
  }

  /** The runc wrapper (state root and binary of this runtime). */
  get runc(): Runc {
    return this.#runc;
  }

  subscribe(listener: (status: InstanceStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  onExit(listener: (event: ExitEvent) => void): () => void {
    this.#exitListeners.add(listener);
    return () => this.#exitListeners.delete(listener);
  }

  listInstances(): InstanceStatus[] {
    return [...this.#instances.values()].map((m) => this.#status(m));
  }

  #status(m: Managed): InstanceStatus {
    return {
      instanceId: m.id,
      ident: m.ident,
      state: m.state,
      ...(m.error ? { error: m.error } : {}),
    };
  }

  #setState(m: Managed, state: InstanceState, error?: AosError): void {
    m.state = state;
    if (error) m.error = error;
    else delete m.error;
    const s = this.#status(m);
    this.#log.info("instance state", {
      instance: m.id,
      state,
      ...(error ? { error: error.message } : {}),
      ...(state === "active" && m.startTimes ? m.startTimes : {}),
    });
    if (state !== "activating") m.startTimes = undefined;
    for (const l of this.#statusListeners) {
      try {
        l(s);
      } catch (err) {
        this.#log.error("status listener failed", { err });
      }
    }
  }

  async startInstance(desc: InstanceDesc): Promise<InstanceStatus> {
    if (this.#disposed) {
      throw new AosError("wrongState", "Cannot start instance: runtime is stopped");
    }
    const id = instanceId(desc.ident);
    const existing = this.#instances.get(id);
    if (existing && (existing.state === "active" || existing.state === "activating")) {
      throw new AosError("alreadyExist", `Cannot start instance ${id}: it is ${existing.state}`);
    }
    if (existing) await this.stopInstance(id);

    const m: Managed = {
      id,
      ident: desc.ident,
      bundle: this.bundlePath(id),
      state: "activating",
      policy: new RestartPolicy(runParameters(desc.itemConfig), this.#clock),
      lock: new Mutex(),
      stopping: false,
      mounted: false,
    };
    this.#instances.set(id, m);
    this.#setState(m, "activating");
    await m.lock.run(async () => {
      try {
        await this.#prepare(m, desc);
        m.log = await RotatingLog.open(this.logPath(id), {
          maxBytes: this.#logMax,
          files: this.#logFiles,
          clock: this.#clock,
        });
        await this.#launch(m);
      } catch (err) {
        const e = toAosError(err);
        await this.#release(m).catch((cleanupErr) =>
          this.#log.warn("cleanup after failed start", { instance: id, err: cleanupErr })
        );
        this.#setState(m, "failed", e);
        throw e;
      }
    });
    // An early exit: report what the restart policy made of it.
    if (m.state !== "active") await m.handled;
    return this.#status(m);
  }

  /** Builds the bundle: dirs, state/storage, config.json, skeleton, overlay. */
  async #prepare(m: Managed, desc: InstanceDesc): Promise<void> {
    const t0 = performance.now();
    checkId("uid", desc.uid);
    checkId("gid", desc.gid);
    if (desc.layers.length === 0) {
      throw new AosError(
        "invalidArgument",
        `Cannot start instance ${m.id}: the image has no layers`,
      );
    }
    // Leftovers of an earlier run (e.g. an SM crash): never mount over a mounted rootfs.
    if (statOrUndefined(m.bundle)) {
      for (const mp of await mountsUnder(m.bundle)) await unmount(this.#runner, mp);
      removeTreeSync(m.bundle);
    }
    const mountsDir = `${m.bundle}/mounts`;
    const rootfs = `${m.bundle}/rootfs`;
    Deno.mkdirSync(mountsDir, { recursive: true, mode: 0o755 });
    Deno.mkdirSync(rootfs, { mode: 0o755 });

    let stateFile: string | undefined;
    if (desc.statePath) {
      stateFile = confined(this.#cfg.stateDir, desc.statePath, "state path");
      Deno.mkdirSync(dirname(stateFile), { recursive: true, mode: 0o755 });
      Deno.openSync(stateFile, { create: true, write: true, mode: 0o600 }).close();
      Deno.chmodSync(stateFile, 0o600);
      Deno.chownSync(stateFile, desc.uid, desc.gid);
    }
    let storageDir: string | undefined;
    if (desc.storagePath) {
      storageDir = confined(this.#cfg.storageDir, desc.storagePath, "storage path");
      Deno.mkdirSync(storageDir, { recursive: true, mode: 0o755 });
      Deno.chownSync(storageDir, desc.uid, desc.gid);
    }

    const resources = await resolveResources(
      desc.itemConfig?.resources ?? [],
      this.#resources,
      this.#host,
      this.#resourcesFile,
    );
    const hostBinds: HostBind[] = [];
    for (const p of this.#etcBinds) {
      if (statOrUndefined(p)) hostBinds.push({ source: p, destination: p, readOnly: true });
    }
    const spec = buildRuntimeSpec({
      instanceId: m.id,
      ident: desc.ident,
      uid: desc.uid,
      gid: desc.gid,
      imageConfig: desc.imageConfig,
      itemConfig: desc.itemConfig,
      node: this.#node,
      rootfsPath: rootfs,
      cgroupsPath: this.cgroupsPath(m.id),
      resources,
      hostBinds,
      stateFile,
      storageDir,
      netnsPath: desc.netnsPath,
      hostNetwork: desc.hostNetwork,
      secret: desc.secret,
      envOverrides: desc.envVars ?? [],
    });
    const fileSources = new Set<string>();
    for (const mt of spec.mounts ?? []) {
      if (mt.source?.startsWith("/") && statOrUndefined(mt.source)?.isFile) {
        fileSources.add(mt.source);
      }
    }
    createSkeleton(mountsDir, mountSkeleton(spec, (s) => fileSources.has(s)));
    if (desc.etcFiles?.hosts !== undefined || desc.etcFiles?.resolvConf !== undefined) {
      Deno.mkdirSync(`${mountsDir}/etc`, { recursive: true, mode: 0o755 });
      if (desc.etcFiles.hosts !== undefined) {
        Deno.writeTextFileSync(`${mountsDir}/etc/hosts`, desc.etcFiles.hosts, { mode: 0o644 });
      }
      if (desc.etcFiles.resolvConf !== undefined) {
        Deno.writeTextFileSync(`${mountsDir}/etc/resolv.conf`, desc.etcFiles.resolvConf, {
          mode: 0o644,
        });
      }
    }
    Deno.writeTextFileSync(`${m.bundle}/config.json`, JSON.stringify(spec, null, 2), {
      mode: 0o600,
    });

    const lower = [mountsDir, ...desc.layers];
    if (this.#cfg.hostBinds.length > 0) {
      // Instances start in parallel: the first one makes the whiteouts, the others wait for it.
      this.#whiteouts ??= prepareHostWhiteouts(
        this.#runner,
        this.#cfg.hostWhiteoutsDir,
        this.#cfg.hostBinds,
      ).catch((err) => {
        this.#whiteouts = undefined;
        throw err;
      });
      await this.#whiteouts;
      lower.push(this.#cfg.hostWhiteoutsDir, "/");
    }
    let upper: { upperdir: string; workdir: string } | undefined;
    if (desc.writableRootfs) {
      upper = { upperdir: `${m.bundle}/upper`, workdir: `${m.bundle}/work` };
      Deno.mkdirSync(upper.upperdir, { mode: 0o755 });
      Deno.mkdirSync(upper.workdir, { mode: 0o700 });
    }
    const t1 = performance.now();
    await mountOverlay(this.#runner, {
      lower,
      target: rootfs,
      ...(upper ? { upper } : {}),
    }, { logger: this.#log });
    m.mounted = true;
    m.startTimes = { bundleMs: ms(t1 - t0), mountMs: ms(performance.now() - t1), runcMs: 0 };
  }

  /** Spawns `runc run` and waits for `running` (or an early exit). Runs under `m.lock`. */
  async #launch(m: Managed): Promise<void> {
    // A stale container of the same ID (SM crash) would make `runc run` fail. Its state dir
    // tells without running runc, which costs a process per start.
    if (statOrUndefined(`${this.#runc.root}/${m.id}`)) await this.#runc.delete(m.id);
    const runcLog = `${m.bundle}/runc.log`;
    const pidFile = `${m.bundle}/init.pid`;
    removeTreeSync(runcLog);
    removeTreeSync(pidFile);
    const spawnedAt = performance.now();
    const child = this.#spawner.spawn(this.#runc.binary, [
      "--log",
      runcLog,
      "--log-format",
      "json",
      ...this.#runc.runArgs(m.bundle, m.id, pidFile),
    ]);
    m.child = child;
    m.policy.started();
    const log = m.log!;
    const pumps = Promise.all([
      pipeLines(child.stdout, log, "out"),
      pipeLines(child.stderr, log, "err"),
    ]).catch((err) => this.#log.warn("log pump failed", { instance: m.id, err }));
    let done = false;
    m.exited = child.status.then(async (st) => {
      done = true;
      await pumps;
      return st;
    });
    m.handled = m.exited.then((st) => this.#onExit(m, child, st)).catch((err) =>
      this.#log.error("exit handling failed", { instance: m.id, err })
    );

    if (await this.#waitRunning(m, child, pidFile, () => done, spawnedAt)) return;
    // It exited before we saw it running: a runc error is a start failure; a quick exit of the
    // program itself is left to the exit handler and the restart policy.
    const st = await m.exited;
    const runcError = await this.#runcError(runcLog);
    if (runcError) {
      m.child = undefined; // a start failure, not a crash: no restart
      throw new AosError("failed", `Cannot start instance ${m.id}: ${runcError}`, {
        exitCode: st.code,
      });
    }
  }

  /**
   * Waits until the container runs (true), or its `runc run` has exited (false). runc writes the
   * pid file once the container process has started: looking for it every PID_FILE_POLL_MS costs
   * ~2 µs with node's `existsSync` (a `Deno.statSync` that throws NotFound costs ~20 µs, and an
   * inotify watch ~1 ms to open and close). `runc state` (a process) is asked only every
   * STATE_POLL_MS, for an OCI runtime that writes no pid file.
   */
  async #waitRunning(
    m: Managed,
    child: SpawnedProcess,
    pidFile: string,
    exited: () => boolean,
    spawnedAt: number,
  ): Promise<boolean> {
    const deadline = this.#clock.now() + this.#activeTimeout;
    let nextStateAt = this.#clock.now() + STATE_POLL_MS;
    while (!exited()) {
      let running = pathExists(pidFile);
      if (!running && this.#clock.now() >= nextStateAt) {
        nextStateAt = this.#clock.now() + STATE_POLL_MS;
        running = (await this.#runc.state(m.id).catch(() => undefined))?.status === "running";
      }
      if (running && !exited()) {
        if (m.startTimes) m.startTimes.runcMs = ms(performance.now() - spawnedAt);
        this.#setState(m, "active");
        return true;
      }
      if (this.#clock.now() > deadline) {
        m.child = undefined; // not a crash: the exit handler must not restart it
        child.kill("SIGKILL");
        await this.#runc.delete(m.id).catch(() => {});
        await m.exited;
        throw new AosError(
          "timeout",
          `Instance ${m.id} did not reach running within ${this.#activeTimeout} ms`,
        );
      }
      await sleep(PID_FILE_POLL_MS);
    }
    return false;
  }

  /** The last error runc itself logged (its `--log` file), if any. */
  async #runcError(file: string): Promise<string | undefined> {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      return undefined;
    }
    let msg: string | undefined;
    for (const line of text.split("\n").slice(-50)) {
      try {
        const rec = JSON.parse(line) as { level?: string; msg?: string };
        if (rec.level === "error" || rec.level === "fatal") msg = String(rec.msg).slice(0, 300);
      } catch {
        // Not JSON: ignore.
      }
    }
    return msg;
  }

  #exitEvent(m: Managed, st: ExitStatus): ExitEvent {
    const code = st.signal ? 128 + (SIGNAL_NUMBERS[st.signal] ?? 0) : st.code;
    const sig = code > 128 && code < 128 + 65
      ? SIGNALS[code - 128] ?? `SIG${code - 128}`
      : undefined;
    return {
      instanceId: m.id,
      exitCode: code,
      ...(sig ? { signal: sig } : {}),
      requested: m.stopping,
    };
  }

  async #onExit(m: Managed, child: SpawnedProcess, st: ExitStatus): Promise<void> {
    const ev = this.#exitEvent(m, st);
    this.#log.info("instance exited", {
      instance: m.id,
      code: ev.exitCode,
      requested: ev.requested,
    });
    for (const l of this.#exitListeners) {
      try {
        l(ev);
      } catch (err) {
        this.#log.error("exit listener failed", { err });
      }
    }
    if (m.stopping || m.child !== child) return;
    await m.lock.run(async () => {
      if (m.stopping || m.child !== child) return;
      m.child = undefined;
      await this.#runc.delete(m.id).catch((err) =>
        this.#log.warn("runc delete after exit failed", { instance: m.id, err })
      );
      const decision = m.policy.onExit();
      const exitErr = `instance ${m.id} exited with code ${ev.exitCode}${
        ev.signal ? ` (${ev.signal})` : ""
      }`;
      if (decision.restart) {
        this.#setState(
          m,
          "activating",
          new AosError("failed", `${exitErr}; restarting in ${decision.delayMs} ms`, {
            exitCode: ev.exitCode,
          }),
        );
        m.restartTimer = setTimeout(() => {
          m.restartTimer = undefined;
          void this.#restart(m);
        }, decision.delayMs);
        return;
      }
      await this.#release(m).catch((err) =>
        this.#log.warn("cleanup of failed instance", { instance: m.id, err })
      );
      this.#setState(
        m,
        "failed",
        new AosError("failed", `${exitErr}; not restarted: ${decision.reason}`, {
          exitCode: ev.exitCode,
        }),
      );
    });
  }

  async #restart(m: Managed): Promise<void> {
    await m.lock.run(async () => {
      if (m.stopping || this.#disposed) return;
      try {
        await this.#launch(m);
      } catch (err) {
        const e = toAosError(err);
        await this.#release(m).catch(() => {});
        this.#setState(m, "failed", e);
      }
    });
  }

  /** Unmounts and removes the bundle and closes the log (nothing may run any more). */
  async #release(m: Managed): Promise<void> {
    if (m.mounted || await exists(m.bundle)) {
      for (const mp of await mountsUnder(m.bundle)) await unmount(this.#runner, mp);
      m.mounted = false;
      await removeTree(m.bundle);
    }
    await m.log?.close();
  }

  async stopInstance(id: string): Promise<void> {
    const m = this.#instances.get(id);
    if (!m) {
      // Not ours (or already gone): still make sure nothing of it is left behind.
      if (isUuid(id)) await this.#removeForeign(id);
      return;
    }
    m.stopping = true;
    if (m.restartTimer !== undefined) clearTimeout(m.restartTimer);
    m.restartTimer = undefined;
    await m.lock.run(async () => {
      const child = m.child;
      if (child && m.exited) {
        const exited = m.exited.then(() => true);
        const wait = (ms: number) => Promise.race([exited, sleep(ms).then(() => false)]);
        await this.#runc.kill(m.id, "TERM").catch((err) =>
          this.#log.warn("runc kill TERM failed", { instance: m.id, err })
        );
        if (!(await wait(this.#grace))) {
          this.#log.info("grace period over, killing", { instance: m.id, graceMs: this.#grace });
          await this.#runc.kill(m.id, "KILL").catch((err) =>
            this.#log.warn("runc kill KILL failed", { instance: m.id, err })
          );
          if (!(await wait(10_000))) {
            // runc itself hangs: kill it; its container dies with `delete --force` below.
            child.kill("SIGKILL");
            await m.exited;
          }
        }
        m.child = undefined;
      }
      await this.#runc.delete(m.id);
      await this.#release(m);
    });
    this.#instances.delete(id);
    this.#setState(m, "inactive");
  }

  /** Kills and deletes a container and its bundle that no {@link Managed} record owns. */
  async #removeForeign(
    id: string,
  ): Promise<{ container: boolean; mounts: string[]; bundle: boolean }> {
    const st = await this.#runc.state(id).catch(() => undefined);
    let container = false;
    if (st && this.#ownsBundle(st.bundle)) {
      container = true;
      await this.#runc.kill(id, "KILL").catch(() => false);
      await this.#runc.delete(id);
    }
    const bundle = this.bundlePath(id);
    const mounts = await mountsUnder(bundle);
    for (const mp of mounts) await unmount(this.#runner, mp);
    const had = (await exists(bundle)) !== undefined;
    await removeTree(bundle);
    return { container, mounts, bundle: had };
  }

  #ownsBundle(bundle: string): boolean {
    const base = normalize(this.#cfg.runtimeDir);
    return normalize(bundle).startsWith(`${base}/`);
  }

  async cleanupOrphans(): Promise<OrphanReport> {
    const report: OrphanReport = { containers: [], mounts: [], bundles: [] };
    const owned = new Set(this.#instances.keys());
    // Only containers whose bundle lives in our runtime dir: the runc root may be shared.
    for (const c of await this.#runc.list()) {
      if (owned.has(c.id) || !this.#ownsBundle(c.bundle)) continue;
      this.#log.warn("removing orphan container", { instance: c.id, status: c.status });
      await this.#runc.kill(c.id, "KILL").catch(() => false);
      await this.#runc.delete(c.id);
      report.containers.push(c.id);
    }
    const ownedBundles = [...owned].map((id) => this.bundlePath(id));
    for (const mp of await mountsUnder(this.#cfg.runtimeDir)) {
      if (ownedBundles.some((b) => mp === b || mp.startsWith(`${b}/`))) continue;
      await unmount(this.#runner, mp);
      report.mounts.push(mp);
    }
    for await (const e of Deno.readDir(this.#cfg.runtimeDir)) {
      if (!e.isDirectory || !isUuid(e.name) || owned.has(e.name)) continue;
      await removeTree(`${this.#cfg.runtimeDir}/${e.name}`);
      report.bundles.push(e.name);
    }
    if (report.containers.length || report.mounts.length || report.bundles.length) {
      this.#log.info("orphans removed", { ...report });
    }
    return report;
  }

  /** Stops every instance (graceful, in parallel) and refuses new starts. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#disposed = true;
    const results = await Promise.allSettled(
      [...this.#instances.keys()].map((id) => this.stopInstance(id)),
    );
    for (const r of results) {
      if (r.status === "rejected") this.#log.error("stop on dispose failed", { err: r.reason });
    }
  }
}

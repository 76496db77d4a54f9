import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import {
  imageConfigSchema,
  imageIndexSchema,
  imageManifestSchema,
  itemConfigSchema,
  manifestItemConfig,
} from "./schemas.ts";
import { runtimeSpecSchema } from "./runtime_spec.ts";
import {
  loadImageManifest,
  loadItemConfig,
  loadJsonFile,
  loadRuntimeSpec,
  parseOciJson,
  saveItemConfig,
  saveJsonFile,
  saveRuntimeSpec,
} from "./json_file.ts";
import { layerCompression, MediaType } from "./media_types.ts";

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const D3 = `sha256:${"3".repeat(64)}`;

const manifest = {
  schemaVersion: 2,
  mediaType: MediaType.ociManifest,
  config: { mediaType: MediaType.ociConfig, digest: D1, size: 100 },
  aosItemConfig: { mediaType: MediaType.aosItemConfig, digest: D2, size: 10 },
  layers: [{ mediaType: MediaType.ociLayerTarGzip, digest: D3, size: 1000, "x-extra": true }],
  "org.example.unknown": { keep: ["me"] },
};

const itemConfig = {
  created: "2024-01-01T00:00:00Z",
  author: "Aos",
  skipResourceLimits: false,
  hostname: "svc",
  balancingPolicy: "enabled",
  runtimes: [{ codename: "runc" }],
  runParameters: { startInterval: "5s", startBurst: 3, restartInterval: "1m" },
  sysctl: { "net.ipv4.ip_forward": "1" },
  offlineTTL: "10h",
  quotas: { cpuDMIPSLimit: 1000, ramLimit: 1 << 20, pidsLimit: 10, noFileLimit: 100 },
  requestedResources: { cpu: 100, ram: 1024 },
  allowedConnections: { "item1/8080/tcp": {} },
  resources: [{ name: "dbus", mode: "rw" }],
  permissions: { vis: { "*": "rw" } },
  alertRules: {
    ram: { minTimeout: "30s", minThreshold: 10, maxThreshold: 90 },
    partitions: [{ name: "storage", minThreshold: 1, maxThreshold: 2 }],
    download: { minThreshold: 10, maxThreshold: 20 },
  },
  futureKey: 42,
};

Deno.test({
  name: "manifest, index, image config and item config parse and keep unknown keys",
  permissions: "none",
  fn() {
    const m = imageManifestSchema.parse(manifest);
    assert.deepEqual(m, manifest);
    assert.equal(manifestItemConfig(m)?.digest, D2);
    assert.equal(layerCompression(m.layers[0]!.mediaType), "gzip");
    assert.equal(layerCompression(MediaType.ociLayerTarZstd), undefined);

    const idx = imageIndexSchema.parse({
      schemaVersion: 2,
      manifests: [{
        mediaType: MediaType.ociManifest,
        digest: D1,
        size: 5,
        platform: { architecture: "amd64", os: "linux", "os.version": "x" },
      }],
    });
    assert.equal(idx.manifests[0]!.platform?.["os.version"], "x");

    assert.deepEqual(itemConfigSchema.parse(itemConfig), itemConfig);

    // AosCore reads these documents case-insensitively; so do we, canonicalising key names.
    const cfg = imageConfigSchema.parse({
      architecture: "arm64",
      os: "linux",
      config: { entrypoint: ["/bin/sh"], Cmd: ["-c", "true"], workingdir: "/w", Env: null },
      rootfs: { type: "layers", diff_ids: [D1] },
    });
    assert.deepEqual(cfg.config?.Entrypoint, ["/bin/sh"]);
    assert.equal(cfg.config?.WorkingDir, "/w");
    const legacy = imageManifestSchema.parse({
      ...manifest,
      aosItemConfig: undefined,
      AOSSERVICE: manifest.aosItemConfig,
    });
    assert.equal(manifestItemConfig(legacy)?.digest, D2);
  },
});

Deno.test({
  name: "bad documents are rejected with invalidArgument naming the key",
  permissions: "none",
  fn() {
    const bad = { ...manifest, layers: [{ ...manifest.layers[0], digest: "sha256:xyz" }] };
    assert.throws(
      () => parseOciJson("image manifest", JSON.stringify(bad), imageManifestSchema),
      (e) =>
        e instanceof AosError && e.code === "invalidArgument" &&
        e.message.includes('"layers.0.digest"'),
    );
    assert.throws(
      () => parseOciJson("image manifest", "{", imageManifestSchema),
      (e) => e instanceof AosError && /malformed JSON/.test(e.message),
    );
    assert.throws(
      () => parseOciJson("x", "[]".padEnd(100), imageManifestSchema, { maxBytes: 10 }),
      (e) => e instanceof AosError && e.code === "outOfRange",
    );
    assert.throws(() => itemConfigSchema.parse({ balancingPolicy: "sometimes" }));
  },
});

const runtimeSpec = {
  ociVersion: "1.0.2",
  process: {
    terminal: false,
    user: { uid: 1000, gid: 1000, additionalGids: [5] },
    args: ["/bin/sh"],
    env: ["PATH=/bin"],
    cwd: "/",
    capabilities: {
      bounding: ["CAP_KILL"],
      effective: ["CAP_KILL"],
      permitted: ["CAP_KILL"],
    },
    rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
    noNewPrivileges: true,
    apparmorProfile: "keep-me",
  },
  root: { path: "rootfs", readonly: false },
  hostname: "runc",
  mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
  linux: {
    namespaces: [{ type: "pid" }, { type: "network", path: "/run/netns/x" }],
    resources: {
      memory: { limit: 1 << 24 },
      cpu: { quota: 50000, period: 100000 },
      pids: { limit: 10 },
      devices: [{ allow: false, access: "rwm" }],
    },
    cgroupsPath: "/system.slice/x",
    maskedPaths: ["/proc/kcore"],
    readonlyPaths: ["/proc/sys"],
    seccomp: { defaultAction: "SCMP_ACT_ALLOW", syscalls: [] },
  },
  hooks: { prestart: [{ path: "/bin/true" }] },
  annotations: { a: "b" },
};

Deno.test("JSON files round-trip losslessly and saves are atomic", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await saveRuntimeSpec(`${dir}/config.json`, runtimeSpec);
    assert.deepEqual(await loadRuntimeSpec(`${dir}/config.json`), runtimeSpec);
    await saveItemConfig(`${dir}/item.json`, itemConfigSchema.parse(itemConfig));
    assert.deepEqual(await loadItemConfig(`${dir}/item.json`), itemConfig);
    await Deno.writeTextFile(`${dir}/m.json`, JSON.stringify(manifest));
    assert.deepEqual(await loadImageManifest(`${dir}/m.json`), manifest);
    // Nothing but the saved files is left behind (no temp files).
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["config.json", "item.json", "m.json"]);

    // An invalid value is refused and the existing file is untouched.
    await assert.rejects(
      () => saveJsonFile(`${dir}/config.json`, { ociVersion: "" } as never, runtimeSpecSchema),
      (e) => e instanceof AosError && e.code === "invalidArgument",
    );
    assert.deepEqual(await loadRuntimeSpec(`${dir}/config.json`), runtimeSpec);

    await Deno.writeTextFile(`${dir}/big.json`, " ".repeat(2000) + "{}");
    await assert.rejects(
      () => loadJsonFile(`${dir}/big.json`, runtimeSpecSchema, { maxBytes: 1000 }),
      (e) => e instanceof AosError && e.code === "outOfRange",
    );
    await assert.rejects(
      () => loadRuntimeSpec(`${dir}/missing.json`),
      (e) => e instanceof AosError && e.code === "notFound",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { AosError } from "@aos/shared/errors";
import {
  type CurrentPlacement,
  type InstanceRequest,
  type ItemRunConfig,
  itemRunConfigFrom,
  type ManifestCandidate,
  placeInstances,
  type PlacementInput,
  type PlacementNode,
  type PlacementResult,
  platformFrom,
  type PlatformRequirements,
  type RuntimeInfo,
} from "./placement.ts";

const MiB = 1024 * 1024;
const AMD64: PlatformRequirements = { architecture: "amd64", os: "linux" };

function rt(runtimeId: string, type = "runc", extra: Partial<RuntimeInfo> = {}): RuntimeInfo {
  return {
    runtimeId,
    type,
    archInfo: { architecture: "amd64" },
    osInfo: { os: "linux" },
    ...extra,
  };
}

function node(nodeId: string, extra: Partial<PlacementNode> = {}): PlacementNode {
  return {
    nodeId,
    state: "provisioned",
    connected: true,
    maxDmips: 10000,
    totalRam: 1024 * MiB,
    runtimes: [rt(`${nodeId}-runc`)],
    resources: [],
    ...extra,
  };
}

function manifest(
  itemConfig: ItemRunConfig = {},
  platform: PlatformRequirements = AMD64,
  digest = "sha256:" + "a".repeat(64),
): ManifestCandidate {
  return { digest, platform, itemConfig };
}

function req(
  itemId: string,
  numInstances = 1,
  extra: Partial<InstanceRequest> = {},
): InstanceRequest {
  return { itemId, subjectId: "s", priority: 0, numInstances, manifests: [manifest()], ...extra };
}

/** `item/instance` → `node/runtime`, for compact assertions. */
function where(result: PlacementResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of result.placements) {
    out[`${p.ident.itemId}/${p.ident.instance}`] = `${p.nodeId}/${p.runtimeId}`;
  }
  return out;
}

/** `item/instance` → node. */
function nodes(result: PlacementResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of result.placements) out[`${p.ident.itemId}/${p.ident.instance}`] = p.nodeId;
  return out;
}

function failures(result: PlacementResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of result.failures) out[`${f.ident.itemId}/${f.ident.instance}`] = f.error.message;
  return out;
}

function asCurrent(result: PlacementResult): CurrentPlacement[] {
  return result.placements.map((p) => ({
    ident: p.ident,
    nodeId: p.nodeId,
    runtimeId: p.runtimeId,
    manifestDigest: p.manifestDigest,
  }));
}

function test(name: string, fn: () => void): void {
  Deno.test({ name: `placement: ${name}`, permissions: "none", fn });
}

// ---------------------------------------------------------------------------------------------
// Stages in isolation

test("candidate nodes: only connected and provisioned", () => {
  const input: PlacementInput = {
    nodes: [
      node("a", { connected: false }),
      node("b", { state: "paused" }),
      node("c", { state: "unprovisioned" }),
      node("d", { state: "error" }),
      node("e"),
    ],
    requests: [req("svc", 3)],
  };
  assert.deepEqual(Object.values(nodes(placeInstances(input))), ["e", "e", "e"]);
  const none = placeInstances({ ...input, nodes: input.nodes.slice(0, 4) });
  assert.equal(none.placements.length, 0);
  const f = none.failures[0]!;
  assert.ok(f.error instanceof AosError);
  assert.equal(f.error.code, "notFound");
  assert.equal(
    f.error.message,
    "Cannot place instance svc/s/0: no node satisfies connected and provisioned (a is not " +
      "connected; b has state paused; c has state unprovisioned; d has state error)",
  );
  assert.match(
    placeInstances({ nodes: [], requests: [req("x")] }).failures[0]!.error.message,
    /no node is known/,
  );
});

test("labels: a node must have all of them", () => {
  const ns = [
    node("n1", { config: { labels: ["x"] } }),
    node("n2", { config: { labels: ["gpu"] } }),
    node("n3", { config: { labels: ["gpu", "camera"] } }),
  ];
  const cases: [string[], string | undefined][] = [
    [[], "n1"], // no labels: best fit → smallest id
    [["gpu"], "n2"],
    [["gpu", "camera"], "n3"],
    [["camera"], "n3"],
  ];
  for (const [labels, expected] of cases) {
    const r = placeInstances({ nodes: ns, requests: [req("svc", 1, { labels })] });
    assert.equal(r.placements[0]?.nodeId, expected, `labels ${labels}`);
  }
  const r = placeInstances({
    nodes: ns.slice(0, 2),
    requests: [req("svc", 1, { labels: ["gpu", "camera"] })],
  });
  assert.equal(
    r.failures[0]?.error.message,
    "Cannot place instance svc/s/0: no node satisfies labels [gpu, camera] (n1 has [x]; n2 has [gpu])",
  );
});

test("shared resources: sharedCount limits users, 0 = unlimited", () => {
  const ns = [
    node("n1", { resources: [{ name: "cam", sharedCount: 1 }] }),
    node("n2", { resources: [{ name: "cam", sharedCount: 2 }, { name: "gpu", sharedCount: 0 }] }),
  ];
  const cam = manifest({ resources: ["cam"] });
  const r = placeInstances({ nodes: ns, requests: [req("svc", 4, { manifests: [cam] })] });
  assert.deepEqual(nodes(r), { "svc/0": "n1", "svc/1": "n2", "svc/2": "n2" });
  assert.equal(
    failures(r)["svc/3"],
    "Cannot place instance svc/s/3: no node satisfies shared resources [cam] " +
      "(n1 has all 1 shares of cam in use; n2 has all 2 shares of cam in use)",
  );
  const gpu = manifest({ resources: ["gpu"] });
  const g = placeInstances({ nodes: ns, requests: [req("g", 10, { manifests: [gpu] })] });
  assert.equal(g.placements.length, 10);
  assert.ok(g.placements.every((p) => p.nodeId === "n2"));
  const missing = placeInstances({
    nodes: ns,
    requests: [req("m", 1, { manifests: [manifest({ resources: ["gpu", "dsp"] })] })],
  });
  assert.equal(
    failures(missing)["m/0"],
    "Cannot place instance m/s/0: no node satisfies shared resources [gpu, dsp] (n1 lacks gpu, lacks dsp; n2 lacks dsp)",
  );
});

test("runtime type: default crun/runc, else the item config's list", () => {
  const ns = [
    node("n1", { runtimes: [rt("r-xen", "xrun"), rt("r-crun", "crun")] }),
    node("n2", { runtimes: [rt("r-rootfs", "rootfs")] }),
  ];
  const cases: [string[] | undefined, string | undefined][] = [
    [undefined, "n1/r-crun"],
    [[], "n1/r-crun"],
    [["xrun"], "n1/r-xen"],
    [["rootfs"], "n2/r-rootfs"],
  ];
  for (const [runtimes, expected] of cases) {
    const m = manifest(runtimes === undefined ? {} : { runtimes });
    assert.equal(
      where(placeInstances({ nodes: ns, requests: [req("svc", 1, { manifests: [m] })] }))["svc/0"],
      expected,
    );
  }
  const r = placeInstances({
    nodes: ns,
    requests: [req("svc", 1, { manifests: [manifest({ runtimes: ["runx"] })] })],
  });
  assert.equal(
    failures(r)["svc/0"],
    "Cannot place instance svc/s/0: no node satisfies runtime type [runx] " +
      "(n1/r-xen is xrun; n1/r-crun is crun; n2/r-rootfs is rootfs)",
  );
});

test("platform: kernel architecture names match OCI ones (x86_64 = amd64, aarch64 = arm64)", () => {
  for (
    const [kernel, oci, ok] of [
      ["x86_64", "amd64", true],
      ["aarch64", "arm64", true],
      ["AARCH64", "arm64", true],
      ["x86_64", "arm64", false],
      ["amd64", "x86_64", true],
    ] as const
  ) {
    const ns = [
      node("n1", { runtimes: [rt("r", "runc", { archInfo: { architecture: kernel } })] }),
    ];
    const r = placeInstances({
      nodes: ns,
      requests: [req("svc", 1, { manifests: [manifest({}, { architecture: oci })] })],
    });
    assert.equal(r.placements.length === 1, ok, `${kernel} vs ${oci}`);
  }
});

test("platform: architecture, variant, os, os version and features", () => {
  const runtime = rt("r", "runc", {
    archInfo: { architecture: "arm64", variant: "v8" },
    osInfo: { os: "linux", version: "6.1", features: ["a", "b"] },
  });
  const ns = [node("n1", { runtimes: [runtime] })];
  const cases: [PlatformRequirements, boolean][] = [
    [{}, true],
    [{ architecture: "arm64" }, true],
    [{ architecture: "amd64" }, false],
    [{ architecture: "arm64", variant: "v8" }, true],
    [{ architecture: "arm64", variant: "v7" }, false],
    [{ architecture: "arm64", os: "linux" }, true],
    [{ architecture: "arm64", os: "windows" }, false],
    [{ osVersion: "6.1" }, true],
    [{ osVersion: "5.4" }, false],
    [{ osFeatures: ["a"] }, true],
    [{ osFeatures: ["a", "b"] }, true],
    [{ osFeatures: ["a", "c"] }, false],
  ];
  for (const [platform, ok] of cases) {
    const r = placeInstances({
      nodes: ns,
      requests: [req("svc", 1, { manifests: [manifest({}, platform)] })],
    });
    assert.equal(r.placements.length === 1, ok, JSON.stringify(platform));
  }
  const r = placeInstances({
    nodes: ns,
    requests: [
      req("svc", 1, {
        manifests: [manifest({}, { architecture: "amd64", os: "linux", osFeatures: ["c"] })],
      }),
    ],
  });
  assert.equal(
    failures(r)["svc/0"],
    "Cannot place instance svc/s/0: no node satisfies platform arch amd64, os linux, os features [c] " +
      "(n1/r is arm64/v8 linux 6.1 [a, b])",
  );
});

test("CPU budget: quota × node ratio (default 50 %, capped at 100 %)", () => {
  const cfg: ItemRunConfig = { quotas: { cpuDmipsLimit: 1000 } };
  const count = (config: PlacementNode["config"], item: ItemRunConfig = cfg) =>
    placeInstances({
      nodes: [node("n1", { maxDmips: 2000, ...(config ? { config } : {}) })],
      requests: [req("svc", 10, { manifests: [manifest(item)] })],
    }).placements.length;
  assert.equal(count(undefined), 4); // 500 each
  assert.equal(count({ resourceRatios: { cpu: 100 } }), 2);
  assert.equal(count({ resourceRatios: { cpu: 250 } }), 2); // capped at 100 %
  assert.equal(count({ resourceRatios: { cpu: 20 } }), 10); // 200 each
  // requestedResources wins over the ratio and is clamped to the quota.
  assert.equal(
    count(undefined, { quotas: { cpuDmipsLimit: 1000 }, requestedResources: { cpu: 700 } }),
    2,
  );
  assert.equal(
    count(undefined, { quotas: { cpuDmipsLimit: 1000 }, requestedResources: { cpu: 5000 } }),
    2,
  );
  assert.equal(count(undefined, { requestedResources: { cpu: 2000 } }), 1);
  // No quota and no request, or skipResourceLimits: nothing requested.
  assert.equal(count(undefined, {}), 10);
  assert.equal(count(undefined, { ...cfg, skipResourceLimits: true }), 10);

  const r = placeInstances({
    nodes: [node("n1", { maxDmips: 2000 })],
    requests: [req("svc", 5, { manifests: [manifest(cfg)] })],
  });
  assert.equal(r.placements[0]?.requestedCpu, 500);
  assert.equal(
    failures(r)["svc/4"],
    "Cannot place instance svc/s/4: no node satisfies CPU (n1/n1-runc needs 500 DMIPS, 0 available)",
  );
});

test("RAM budget: ratio per node and system usage from monitoring", () => {
  const cfg: ItemRunConfig = { quotas: { ramLimit: 200 * MiB } };
  const r = placeInstances({
    nodes: [
      node("n1", {
        totalRam: 1000 * MiB,
        config: { resourceRatios: { ram: 100 } },
        // 400 MiB used, of which 100 by instances → 300 MiB system → 700 left → 3 × 200.
        monitoring: {
          node: { cpu: 0, ram: 400 * MiB },
          instances: [{
            ident: { itemId: "other", subjectId: "s", instance: 0 },
            usage: { cpu: 0, ram: 100 * MiB },
          }],
        },
      }),
    ],
    requests: [req("svc", 4, { manifests: [manifest(cfg)] })],
  });
  assert.equal(r.placements.length, 3);
  assert.equal(r.placements[0]?.requestedRam, 200 * MiB);
  assert.equal(
    failures(r)["svc/3"],
    `Cannot place instance svc/s/3: no node satisfies RAM (n1/n1-runc needs ${200 * MiB} bytes, ${
      100 * MiB
    } available)`,
  );
});

test("runtime budgets: allowedDmips/allowedRam are separate from the node's", () => {
  const n = node("n1", {
    maxDmips: 1000,
    runtimes: [rt("small", "crun", { allowedDmips: 300 }), rt("big", "runc")],
  });
  const cfg: ItemRunConfig = { requestedResources: { cpu: 200 } };
  // crun sorts first, so the first instance goes to "small"; then it has 100 left.
  const r = placeInstances({
    nodes: [n],
    requests: [req("svc", 7, { manifests: [manifest(cfg)] })],
  });
  assert.deepEqual(
    r.placements.map((p) => p.runtimeId),
    ["small", "big", "big", "big", "big", "big"],
  );
  assert.match(
    failures(r)["svc/6"]!,
    /small needs 200 DMIPS, 100 available; n1\/big needs 200 DMIPS, 0 available/,
  );
});

test("instance count: maxInstances per runtime, 0 = 256", () => {
  const n = node("n1", {
    runtimes: [rt("a", "crun", { maxInstances: 2 }), rt("b", "runc", { maxInstances: 1 })],
  });
  const r = placeInstances({ nodes: [n], requests: [req("svc", 4)] });
  assert.deepEqual(r.placements.map((p) => p.runtimeId), ["a", "a", "b"]);
  assert.equal(
    failures(r)["svc/3"],
    "Cannot place instance svc/s/3: no node satisfies instance count (n1/a runs 2 of 2; n1/b runs 1 of 1)",
  );
  const unlimited = placeInstances({
    nodes: [node("n1", { runtimes: [rt("a", "runc", { maxInstances: 0 })] })],
    requests: [req("x", 256), req("y", 1)],
  });
  assert.equal(unlimited.placements.length, 256);
  assert.match(failures(unlimited)["y/0"]!, /runs 256 of 256/);
});

test("top priority: only the highest-priority nodes that fit", () => {
  const ns = [
    node("n1", { maxDmips: 100000, config: { priority: 1 } }),
    node("n2", { maxDmips: 1000, config: { priority: 5 } }),
    node("n3", { maxDmips: 1000, config: { priority: 5, labels: ["x"] } }),
  ];
  const cfg: ItemRunConfig = { requestedResources: { cpu: 600 } };
  const r = placeInstances({
    nodes: ns,
    requests: [req("svc", 3, { manifests: [manifest(cfg)] })],
  });
  // n2 and n3 share the top priority; once both are full, n1 takes the rest.
  assert.deepEqual(nodes(r), { "svc/0": "n2", "svc/1": "n3", "svc/2": "n1" });
});

test("best fit: most available CPU, then RAM, then smallest node id; smallest runtime type", () => {
  const cases: [PlacementNode[], string][] = [
    [[node("a", { maxDmips: 1000 }), node("b", { maxDmips: 2000 })], "b"],
    [[node("a", { totalRam: 1 * MiB }), node("b", { totalRam: 2 * MiB })], "b"],
    [[node("b"), node("a")], "a"],
    [[node("a", { runtimes: [rt("z", "runc"), rt("y", "crun"), rt("x", "runc")] })], "a/y"],
  ];
  for (const [ns, expected] of cases) {
    const r = placeInstances({ nodes: ns, requests: [req("svc")] });
    const p = r.placements[0]!;
    assert.equal(expected.includes("/") ? `${p.nodeId}/${p.runtimeId}` : p.nodeId, expected);
  }
  // Placed instances consume budget, so instances spread.
  const cfg: ItemRunConfig = { requestedResources: { cpu: 500 } };
  const spread = placeInstances({
    nodes: [node("a", { maxDmips: 2000 }), node("b", { maxDmips: 1500 })],
    requests: [req("svc", 4, { manifests: [manifest(cfg)] })],
  });
  assert.deepEqual(Object.values(nodes(spread)), ["a", "a", "b", "a"]);
});

test("request order: priority desc, then item id; higher priority gets the scarce node", () => {
  const n = node("n1", { runtimes: [rt("r", "runc", { maxInstances: 1 })] });
  const r = placeInstances({
    nodes: [n],
    requests: [req("b"), req("a"), req("c", 1, { priority: 10 })],
  });
  assert.deepEqual(nodes(r), { "c/0": "n1" });
  assert.deepEqual(Object.keys(failures(r)), ["a/0", "b/0"]);
});

test("several manifests: the second is used when the first platform does not fit", () => {
  const arm = manifest({}, { architecture: "arm64", os: "linux" }, "sha256:" + "1".repeat(64));
  const amd = manifest({}, AMD64, "sha256:" + "2".repeat(64));
  const r = placeInstances({
    nodes: [node("n1")],
    requests: [req("svc", 1, { manifests: [arm, amd] })],
  });
  assert.equal(r.placements[0]?.manifestDigest, amd.digest);
  const none = placeInstances({
    nodes: [node("n1")],
    requests: [
      req("svc", 1, {
        manifests: [arm, manifest({ runtimes: ["xrun"] }, AMD64, "sha256:" + "3".repeat(64))],
      }),
    ],
  });
  assert.equal(
    failures(none)["svc/0"],
    "Cannot place instance svc/s/0: manifest sha256:111111111111…: no node satisfies platform " +
      "arch arm64, os linux (n1/n1-runc is amd64 linux); manifest sha256:333333333333…: no node " +
      "satisfies runtime type [xrun] (n1/n1-runc is runc)",
  );
  const empty = placeInstances({
    nodes: [node("n1")],
    requests: [req("svc", 1, { manifests: [] })],
  });
  assert.equal(empty.failures[0]?.error.code, "invalidArgument");
  assert.match(empty.failures[0]!.error.message, /item has no manifest/);
});

test("storage/state: checked against partition size, shared when on the same mount", () => {
  const cfg: ItemRunConfig = { quotas: { storageLimit: 100 * MiB, stateLimit: 100 * MiB } };
  const count = (partitions: PlacementNode["partitions"]) =>
    placeInstances({
      nodes: [node("n1", { ...(partitions ? { partitions } : {}) })],
      requests: [req("svc", 10, { manifests: [manifest(cfg)] })],
    }).placements.length;
  assert.equal(count(undefined), 10); // unknown partitions: not checked
  assert.equal(
    count([
      { name: "st", types: ["storage"], totalSize: 200 * MiB, path: "/var/aos/storage" },
      { name: "sa", types: ["state"], totalSize: 500 * MiB, path: "/var/aos/state" },
    ]),
    4, // 50 MiB storage each
  );
  assert.equal(
    count([
      { name: "st", types: ["storage"], totalSize: 200 * MiB, path: "/var/aos" },
      { name: "sa", types: ["state"], totalSize: 200 * MiB, path: "/var/aos" },
    ]),
    2, // 50 + 50 MiB on one mount
  );
});

test("components: no CPU/RAM/resource checks", () => {
  const r = placeInstances({
    nodes: [node("n1", { maxDmips: 1, runtimes: [rt("rootfs", "rootfs")] })],
    requests: [{
      ...req("comp", 1, {
        manifests: [
          manifest({ runtimes: ["rootfs"], quotas: { cpuDmipsLimit: 1000 }, resources: ["x"] }, {}),
        ],
      }),
      type: "component",
    }],
  });
  assert.equal(r.placements[0]?.runtimeId, "rootfs");
  assert.equal(r.placements[0]?.requestedCpu, 0);
});

test("components with numInstances 0: one per matching node runtime, stable indices", () => {
  const comp: InstanceRequest = {
    ...req("comp", 0, { manifests: [manifest({ runtimes: ["rootfs"] }, {})] }),
    type: "component",
  };
  const withRootfs = (id: string) =>
    node(id, { runtimes: [rt(`${id}-runc`), rt(`${id}-rootfs`, "rootfs")] });
  const first = placeInstances({ nodes: [withRootfs("b"), withRootfs("c")], requests: [comp] });
  assert.deepEqual(where(first), { "comp/0": "b/b-rootfs", "comp/1": "c/c-rootfs" });
  // Node "a" appears: existing instances keep their index and place; "a" gets the next free index.
  const second = placeInstances({
    nodes: [withRootfs("a"), withRootfs("b"), withRootfs("c")],
    requests: [comp],
    current: asCurrent(first),
  });
  assert.deepEqual(where(second), {
    "comp/0": "b/b-rootfs",
    "comp/1": "c/c-rootfs",
    "comp/2": "a/a-rootfs",
  });
  assert.deepEqual(second.placements.map((p) => p.change), ["kept", "kept", "new"]);
  // Node "b" goes: its instance is not re-placed; index 0 becomes free again.
  const third = placeInstances({
    nodes: [withRootfs("a"), withRootfs("c")],
    requests: [comp],
    current: asCurrent(second),
  });
  assert.deepEqual(where(third), { "comp/1": "c/c-rootfs", "comp/2": "a/a-rootfs" });
  assert.equal(third.failures.length, 0);
  // A service request with 0 instances yields nothing.
  assert.deepEqual(placeInstances({ nodes: [node("n")], requests: [req("svc", 0)] }), {
    placements: [],
    failures: [],
  });
});

// ---------------------------------------------------------------------------------------------
// Stability and rebalancing

const cpu500: ItemRunConfig = { requestedResources: { cpu: 500 } };
function unit(): PlacementInput {
  return {
    nodes: [
      node("n1", { maxDmips: 1500 }),
      node("n2", { maxDmips: 1500 }),
      node("n3", { maxDmips: 1500 }),
    ],
    requests: [
      req("web", 3, { manifests: [manifest(cpu500)], priority: 5 }),
      req("db", 2, { manifests: [manifest(cpu500)], priority: 10 }),
      req("log", 2, { manifests: [manifest(cpu500)] }),
    ],
  };
}

test("stability: same input gives the same plan; feeding it back keeps everything", () => {
  const input = unit();
  const a = placeInstances(input);
  const b = placeInstances(structuredClone(input));
  assert.deepEqual(a, b);
  assert.equal(a.failures.length, 0);
  assert.ok(a.placements.every((p) => p.change === "new"));
  const again = placeInstances({ ...input, current: asCurrent(a) });
  assert.deepEqual(where(again), where(a));
  assert.ok(again.placements.every((p) => p.change === "kept"));
  // Input order of requests, nodes and current entries does not matter.
  const shuffled = placeInstances({
    nodes: [...input.nodes].reverse(),
    requests: [...input.requests].reverse(),
    current: asCurrent(a).reverse(),
  });
  assert.deepEqual(shuffled, again);
});

test("stability: adding a node moves nothing; new instances may go there", () => {
  const input = unit();
  const before = placeInstances(input);
  const after = placeInstances({
    ...input,
    nodes: [...input.nodes, node("n0", { maxDmips: 100000 })],
    requests: [...input.requests, req("new", 1, { manifests: [manifest(cpu500)] })],
    current: asCurrent(before),
  });
  const moved = after.placements.filter((p) => p.change !== "kept" && p.ident.itemId !== "new");
  assert.deepEqual(moved, []);
  assert.equal(nodes(after)["new/0"], "n0");
});

test("stability: removing a node moves only its instances", () => {
  const input = unit();
  const before = placeInstances(input);
  const gone = "n1";
  const onGone = new Set(
    before.placements.filter((p) => p.nodeId === gone).map((p) =>
      `${p.ident.itemId}/${p.ident.instance}`
    ),
  );
  assert.ok(onGone.size > 0);
  for (
    const dropped of [
      input.nodes.filter((n) => n.nodeId !== gone),
      input.nodes.map((n) => (n.nodeId === gone ? { ...n, connected: false } : n)),
      input.nodes.map((n) => (n.nodeId === gone ? { ...n, state: "paused" } : n)),
      input.nodes.map((n) => (n.nodeId === gone ? { ...n, state: "error" } : n)),
    ]
  ) {
    const after = placeInstances({ ...input, nodes: dropped, current: asCurrent(before) });
    for (const p of after.placements) {
      const k = `${p.ident.itemId}/${p.ident.instance}`;
      if (onGone.has(k)) {
        assert.equal(p.change, "moved", k);
        assert.equal(p.previousNodeId, gone);
        assert.notEqual(p.nodeId, gone);
      } else {
        assert.equal(p.change, "kept", k);
      }
    }
    // 7 × 500 DMIPS do not fit into 2 × 1500: the lowest-priority one fails.
    assert.deepEqual(Object.keys(failures(after)), ["log/1"]);
  }
});

test("a returning node: moved instances stay where they went; it takes new and unplaced ones", () => {
  const input = unit();
  const before = placeInstances(input);
  const without = input.nodes.filter((n) => n.nodeId !== "n1");
  const during = placeInstances({ ...input, nodes: without, current: asCurrent(before) });
  assert.deepEqual(Object.keys(failures(during)), ["log/1"]);
  const back = placeInstances({ ...input, current: asCurrent(during) });
  assert.ok(
    back.placements.filter((p) => p.ident.itemId !== "log" || p.ident.instance !== 1)
      .every((p) => p.change === "kept"),
  );
  assert.equal(nodes(back)["log/1"], "n1"); // the unplaced one now fits, on the empty node
  // repack spreads everything again: same as a fresh plan.
  const repacked = placeInstances({ ...input, current: asCurrent(during), mode: "repack" });
  assert.deepEqual(where(repacked), where(before));
});

test("no longer fits: an instance moves when its node loses a label it needs", () => {
  const ns = [
    node("n1", { config: { labels: ["gpu"] } }),
    node("n2", { config: { labels: ["gpu"] } }),
  ];
  const request = req("svc", 1, { labels: ["gpu"] });
  const first = placeInstances({ nodes: ns, requests: [request] });
  assert.equal(first.placements[0]?.nodeId, "n1");
  const r = placeInstances({
    nodes: [node("n1", { config: { labels: [] } }), ns[1]!],
    requests: [request],
    current: asCurrent(first),
  });
  assert.equal(r.placements[0]?.nodeId, "n2");
  assert.equal(r.placements[0]?.change, "moved");
});

test("balancingPolicy disabled: stays put regardless of labels and load, moves only when its node drops", () => {
  const pinned = manifest({ balancingPolicy: "disabled", requestedResources: { cpu: 900 } });
  const current: CurrentPlacement[] = [{
    ident: { itemId: "p", subjectId: "s", instance: 0, type: "service" },
    nodeId: "n2",
    runtimeId: "n2-runc",
  }];
  const ns = [node("n1"), node("n2", { maxDmips: 100, config: { labels: [] } })];
  for (const mode of ["stable", "rebalance", "repack"] as const) {
    const r = placeInstances({
      nodes: ns,
      requests: [req("p", 1, { manifests: [pinned], labels: ["x"] })],
      current,
      mode,
    });
    assert.equal(where(r)["p/0"], "n2/n2-runc", mode);
    assert.equal(r.placements[0]?.change, "kept");
  }
  const dropped = placeInstances({
    nodes: [ns[0]!],
    requests: [req("p", 1, { manifests: [pinned] })],
    current,
  });
  assert.equal(dropped.placements[0]?.nodeId, "n1");
  assert.equal(dropped.placements[0]?.change, "moved");
});

test("priority: a new higher-priority instance displaces a running lower-priority one only when it must", () => {
  const cfg: ItemRunConfig = { requestedResources: { cpu: 600 } };
  const ns = [node("n1", { maxDmips: 1000 }), node("n2", { maxDmips: 1000 })];
  const low = req("low", 1, { manifests: [manifest(cfg)], priority: 1 });
  const first = placeInstances({ nodes: ns, requests: [low] });
  assert.equal(first.placements[0]?.nodeId, "n1");
  // Room on n2: the new instance goes there, "low" is untouched (best fit alone would pick n2
  // too here, so also check the case where best fit would have picked n1).
  const high = req("high", 1, { manifests: [manifest(cfg)], priority: 9 });
  const ok = placeInstances({ nodes: ns, requests: [low, high], current: asCurrent(first) });
  assert.deepEqual(nodes(ok), { "high/0": "n2", "low/0": "n1" });
  assert.equal(ok.placements.find((p) => p.ident.itemId === "low")?.change, "kept");
  const biasNodes = [node("n1", { maxDmips: 1100 }), node("n2", { maxDmips: 1000 })];
  const biased = placeInstances({
    nodes: biasNodes,
    requests: [low, high],
    current: asCurrent(first),
  });
  assert.deepEqual(nodes(biased), { "high/0": "n2", "low/0": "n1" });
  // No room anywhere but n1: "high" takes it, "low" fails (nowhere to go).
  const tight = placeInstances({
    nodes: [ns[0]!],
    requests: [low, high],
    current: asCurrent(first),
  });
  assert.deepEqual(nodes(tight), { "high/0": "n1" });
  assert.match(failures(tight)["low/0"]!, /CPU \(n1\/n1-runc needs 600 DMIPS, 400 available\)/);
});

test("rebalance: an overloaded node sheds its lowest-priority instances", () => {
  const cfg: ItemRunConfig = { requestedResources: { cpu: 100 } };
  const busy = (cpuUse: number): PlacementNode =>
    node("n1", {
      maxDmips: 1000,
      config: { alertRules: { cpu: { minThreshold: 70, maxThreshold: 80 } } },
      monitoring: {
        node: { cpu: cpuUse, ram: 0 },
        instances: [
          { ident: { itemId: "hi", subjectId: "s", instance: 0 }, usage: { cpu: 300, ram: 0 } },
          { ident: { itemId: "lo", subjectId: "s", instance: 0 }, usage: { cpu: 300, ram: 0 } },
        ],
      },
    });
  const requests = [
    req("hi", 1, { manifests: [manifest(cfg)], priority: 2 }),
    req("lo", 1, { manifests: [manifest(cfg)], priority: 1 }),
  ];
  const current: CurrentPlacement[] = ["hi", "lo"].map((itemId) => ({
    ident: { itemId, subjectId: "s", instance: 0, type: "service" },
    nodeId: "n1",
    runtimeId: "n1-runc",
  }));
  const ns = (use: number) => [busy(use), node("n2", { maxDmips: 1000 })];
  // 900 DMIPS used > 80 %: budget 70 % = 700, system 300 → 400 left; each counts its measured
  // 300 instead of the requested 100, so "hi" stays and "lo" must go.
  const r = placeInstances({ nodes: ns(900), requests, current, mode: "rebalance" });
  assert.deepEqual(nodes(r), { "hi/0": "n1", "lo/0": "n2" });
  assert.equal(r.placements.find((p) => p.ident.itemId === "hi")?.requestedCpu, 300);
  // Not overloaded, or stable mode: nothing moves.
  assert.deepEqual(
    nodes(placeInstances({ nodes: ns(700), requests, current, mode: "rebalance" })),
    { "hi/0": "n1", "lo/0": "n1" },
  );
  assert.deepEqual(nodes(placeInstances({ nodes: ns(900), requests, current })), {
    "hi/0": "n1",
    "lo/0": "n1",
  });
});

test("kept instance runs its current manifest first", () => {
  const m1 = manifest({}, AMD64, "sha256:" + "1".repeat(64));
  const m2 = manifest({}, AMD64, "sha256:" + "2".repeat(64));
  const current: CurrentPlacement[] = [{
    ident: { itemId: "svc", subjectId: "s", instance: 0, type: "service" },
    nodeId: "n1",
    runtimeId: "n1-runc",
    manifestDigest: m2.digest,
  }];
  const r = placeInstances({
    nodes: [node("n1")],
    requests: [req("svc", 1, { manifests: [m1, m2] })],
    current,
  });
  assert.equal(r.placements[0]?.manifestDigest, m2.digest);
  assert.equal(r.placements[0]?.change, "kept");
});

test("instances no longer requested are not in the result", () => {
  const first = placeInstances({ nodes: [node("n1")], requests: [req("svc", 3)] });
  const r = placeInstances({
    nodes: [node("n1")],
    requests: [req("svc", 1)],
    current: asCurrent(first),
  });
  assert.deepEqual(Object.keys(nodes(r)), ["svc/0"]);
});

test("malformed input throws invalidArgument", () => {
  const cases: [string, PlacementInput][] = [
    ["duplicate node", { nodes: [node("a"), node("a")], requests: [] }],
    ["duplicate request", { nodes: [], requests: [req("x"), req("x")] }],
    ["negative count", { nodes: [], requests: [req("x", -1)] }],
    ["fractional count", { nodes: [], requests: [req("x", 1.5)] }],
    ["too many", { nodes: [], requests: [req("x", 257)] }],
  ];
  for (const [name, input] of cases) {
    assert.throws(
      () => placeInstances(input),
      (e: unknown) => e instanceof AosError && e.code === "invalidArgument",
      name,
    );
  }
});

test("converters from the OCI item config and image config", () => {
  assert.deepEqual(
    itemRunConfigFrom({
      runtimes: [{ codename: "crun" }],
      quotas: { cpuDMIPSLimit: 1000, ramLimit: 5, pidsLimit: 3 },
      requestedResources: { cpu: 10 },
      resources: [{ name: "cam" }],
      balancingPolicy: "disabled",
      skipResourceLimits: false,
    }),
    {
      runtimes: ["crun"],
      quotas: { cpuDmipsLimit: 1000, ramLimit: 5 },
      requestedResources: { cpu: 10 },
      resources: ["cam"],
      balancingPolicy: "disabled",
      skipResourceLimits: false,
    },
  );
  assert.deepEqual(itemRunConfigFrom({}), {});
  assert.deepEqual(
    platformFrom({
      architecture: "arm64",
      variant: "v8",
      os: "linux",
      "os.version": "1",
      "os.features": ["f"],
      rootfs: { type: "layers", diff_ids: [] },
    }),
    { architecture: "arm64", variant: "v8", os: "linux", osVersion: "1", osFeatures: ["f"] },
  );
  assert.deepEqual(platformFrom({ rootfs: { type: "layers", diff_ids: [] } }), {});
});

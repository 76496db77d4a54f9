/**
 * Keeps the ASN.1 libraries out of the components: `@peculiar/x509` with its asn1 tree costs
 * about 11 MB of RSS per process. Devcloud and test helpers may use it; iam, sm and cm may not.
 * Also keeps zod tree-shakable in the bundles `compile.ts` builds: `import { z } from "zod/mini"`
 * (an object of every export) makes the bundler keep all of zod, 48 locales included (~250 KB of
 * source held by each process); `import * as z` keeps only what is used.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ENTRY_POINTS = ["iam/start.ts", "sm/start.ts", "cm/start.ts"];
const FORBIDDEN = /^(@peculiar\/|asn1js$|tsyringe$|reflect-metadata$)/;
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface DenoInfo {
  modules: { specifier: string; kind?: string; npmPackage?: string }[];
  npmPackages: Record<string, { name: string; dependencies?: string[] }>;
}

async function denoInfo(entry: string): Promise<DenoInfo> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, `deno info ${entry}: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** npm packages the graph loads: those imported by modules, plus their dependencies. */
function loadedPackages(info: DenoInfo): Map<string, string> {
  // package id -> how it is reached, for the failure message
  const reached = new Map<string, string>();
  const queue: string[] = [];
  for (const m of info.modules) {
    if (m.npmPackage && !reached.has(m.npmPackage)) {
      reached.set(m.npmPackage, m.specifier);
      queue.push(m.npmPackage);
    }
  }
  for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
    for (const dep of info.npmPackages[id]?.dependencies ?? []) {
      if (reached.has(dep)) continue;
      reached.set(dep, `${reached.get(id)} -> ${dep}`);
      queue.push(dep);
    }
  }
  return reached;
}

for (const entry of ENTRY_POINTS) {
  Deno.test(`runtime deps: ${entry} loads no ASN.1 library`, async () => {
    const info = await denoInfo(entry);
    const packages = loadedPackages(info);
    // The walk sees npm packages at all (else the check would pass vacuously).
    assert.ok([...packages.keys()].some((id) => id.startsWith("@grpc/grpc-js@")), entry);
    const bad = [...packages.entries()]
      .filter(([id]) => FORBIDDEN.test(info.npmPackages[id]?.name ?? id.replace(/@[^@]*$/, "")))
      .map(([id, via]) => `${id} (via ${via})`);
    assert.deepEqual(bad, [], `${entry} loads ${bad.join(", ")}`);
  });
}

const ZOD_OBJECT_IMPORT =
  /(import|export)\s+(type\s+)?\{[^}]*\bz\b[^}]*\}\s+from\s+["']zod\/mini["']/;

for (const entry of ENTRY_POINTS) {
  Deno.test(`runtime deps: ${entry} imports zod/mini as a namespace only`, async () => {
    const local = (await denoInfo(entry)).modules
      .map((m) => m.specifier)
      .filter((s) => s.startsWith("file://"));
    assert.ok(local.length > 20, `${entry}: only ${local.length} local modules`);
    const bad: string[] = [];
    for (const specifier of local) {
      if (ZOD_OBJECT_IMPORT.test(await Deno.readTextFile(new URL(specifier)))) bad.push(specifier);
    }
    assert.deepEqual(bad, [], `use \`import * as z from "zod/mini"\` in ${bad.join(", ")}`);
  });
}

Deno.test("runtime deps: the zod check matches the object import forms", () => {
  assert.ok(ZOD_OBJECT_IMPORT.test('import { z } from "zod/mini";'));
  assert.ok(ZOD_OBJECT_IMPORT.test("import type { z } from 'zod/mini';"));
  assert.ok(ZOD_OBJECT_IMPORT.test('export { z } from "zod/mini";'));
  assert.ok(!ZOD_OBJECT_IMPORT.test('import * as z from "zod/mini";'));
  assert.ok(!ZOD_OBJECT_IMPORT.test('import { config } from "zod/mini";'));
});

Deno.test("runtime deps: the check catches @peculiar/x509", async () => {
  const info = await denoInfo("devcloud/pki.ts");
  const names = [...loadedPackages(info).keys()].map((id) => info.npmPackages[id]?.name);
  assert.ok(names.includes("@peculiar/x509"));
  assert.ok(names.includes("asn1js"));
  assert.ok(names.includes("reflect-metadata"));
});

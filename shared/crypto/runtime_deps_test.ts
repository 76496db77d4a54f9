/**
 * Keeps the ASN.1 libraries out of the components: `@peculiar/x509` with its asn1 tree costs
 * about 11 MB of RSS per process. Devcloud and test helpers may use it; iam, sm and cm may not.
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

Deno.test("runtime deps: the check catches @peculiar/x509", async () => {
  const info = await denoInfo("devcloud/pki.ts");
  const names = [...loadedPackages(info).keys()].map((id) => info.npmPackages[id]?.name);
  assert.ok(names.includes("@peculiar/x509"));
  assert.ok(names.includes("asn1js"));
  assert.ok(names.includes("reflect-metadata"));
});

/**
 * IAM benchmark: a real `iam` process under its permission manifest (provisioning mode,
 * plaintext gRPC on 127.0.0.1).
 *
 * - **Key + certificate round trips per second**: `CreateKey` (P-384 key, CSR), the CSR signed
 *   in this process by a test CA, `ApplyCert` (chain verified to the root, pending key
 *   matched, files written, metadata row, trim to `maxItems`). Printed both for the whole
 *   loop and for the time spent inside the two IAM calls.
 * - **Idle RSS**: `VmRSS` of the iam process 3 s after start and again once V8 has settled
 *   (`--settle S`, default 45 s; its memory reducer runs ~30 s after start), idle (target
 *   ≤ 60 MB), and after the round trips.
 *
 * Run: `deno run -A bench/iam_bench.ts [--rounds N] [--type sm|offline] [--settle S]
 * [--bundles DIR | --source]` (`offline` is an RSA-2048 module). By default iam runs from its
 * bundle, built here as `compile.ts` builds it (what the binaries embed); `--bundles DIR` takes
 * the one `deno run -A compile.ts --out DIR` wrote, `--source` runs `iam/main.ts`.
 * @module
 */
import {
  createCertificate,
  importPrivateKey,
  parseCertificate,
  parseCsr,
} from "../shared/crypto/mod.ts";
import { arg, shippedMain, showRss, vmRss } from "./_support.ts";
import { call, iamClients, IamProcess, makeUnit, ok, writeIamNode } from "../tests/iam_support.ts";

const ROUNDS = Number(arg("rounds", "200"));
const TYPE = arg("type", "sm");
const SETTLE_S = Number(arg("settle", "45"));
const PASSWORD = "bench";

await using unit = await makeUnit();
const node = await writeIamNode(unit.root, unit.ca, {
  nodeId: "bench0",
  main: true,
  modules: [{ id: "iam" }, { id: "sm" }, { id: "offline", algorithm: "rsa", maxItems: 5 }],
});
const main = await shippedMain("iam", `${unit.root}/dist`);
await using iam = await IamProcess.start(node, true, [], main);
await new Promise((r) => setTimeout(r, 3_000));
const early = await vmRss(iam.pid);
await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
const idle = await vmRss(iam.pid);

using c = await iamClients(node.protectedUrl, { mode: "insecure" });
ok(
  await call(c.provisioning, c.provisioning.startProvisioning, { nodeId: "", password: PASSWORD }),
);
const caKeys = await importPrivateKey(await Deno.readTextFile(unit.ca.key));
const caCert = parseCertificate(await Deno.readTextFile(unit.ca.cert));

let inIam = 0;
let inCreate = 0;
const t0 = performance.now();
for (let i = 0; i < ROUNDS; i++) {
  const a = performance.now();
  const { csr } = ok(
    await call(c.certificate, c.certificate.createKey, {
      nodeId: "",
      type: TYPE,
      subject: `bench-${i}`,
      password: PASSWORD,
    }),
  );
  inIam += performance.now() - a;
  inCreate += performance.now() - a;
  const req = await parseCsr(csr);
  const cert = await createCertificate({
    subject: req.subject,
    publicKey: req.publicKey,
    signer: caKeys,
    issuer: caCert,
    extendedKeyUsage: req.extendedKeyUsage,
    dnsNames: req.dnsNames,
  });
  const b = performance.now();
  ok(
    await call(c.certificate, c.certificate.applyCert, { nodeId: "", type: TYPE, cert: cert.pem }),
  );
  inIam += performance.now() - b;
}
const wall = performance.now() - t0;
const busy = await vmRss(iam.pid);
await iam.stop("SIGTERM");

console.log(
  `iam bench (${ROUNDS} rounds, type ${TYPE}, ${main ? `bundle ${main}` : "from source"})`,
);
console.log(
  `  CreateKey+ApplyCert round trips: ${(ROUNDS / (wall / 1000)).toFixed(1)}/s overall, ` +
    `${(ROUNDS / (inIam / 1000)).toFixed(1)}/s counting only the two IAM calls ` +
    `(${(inIam / ROUNDS).toFixed(1)} ms per pair, of which CreateKey ` +
    `${(inCreate / ROUNDS).toFixed(1)} ms)`,
);
console.log(`  VmRSS 3 s after start:  ${showRss(early)}`);
console.log(`  VmRSS idle, ${SETTLE_S + 3} s:     ${showRss(idle)}; target <= 60 MB`);
console.log(`  VmRSS after the loop:   ${showRss(busy)}`);

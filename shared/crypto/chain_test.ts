import assert from "node:assert/strict";
import { AosError } from "../core/errors.ts";
import { type Certificate, parseCertificate } from "./certificate.ts";
import { ChainError, type ChainFailure, verifyChain } from "./chain.ts";
import { CA_EXT, issue, makeRoot, tempDir } from "./_test_pki.ts";

const DAY = 24 * 3600 * 1000;

async function load(path: string): Promise<Certificate> {
  return parseCertificate(await Deno.readTextFile(path));
}

function rejectsWith(reason: ChainFailure, message: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof ChainError, `expected ChainError, got ${e}`);
    assert.equal(e.code, "failed");
    assert.equal(e.reason, reason, e.message);
    assert.match(e.message, message);
    return true;
  };
}

Deno.test("chain: openssl root -> intermediate -> leaf verifies; failures are distinct", async (t) => {
  await using dir = await tempDir();
  const d = dir.path;
  const root = await load(await makeRoot(d, "root", "/CN=Aos Root", { type: "rsa" }));
  const inter = await load(
    await issue(d, "inter", "/CN=Aos Intermediate", "root", { ext: CA_EXT, days: 20 }),
  );
  const leaf = await load(await issue(d, "leaf", "/CN=leaf", "inter", { days: 1 }));
  const now = new Date(leaf.notBefore.getTime() + 3600_000);

  await t.step("valid chain, ordered leaf to root", async () => {
    const chain = await verifyChain(leaf, { roots: [root], intermediates: [inter], now });
    assert.deepEqual(chain.map((c) => c.subject), [
      "CN=leaf",
      "CN=Aos Intermediate",
      "CN=Aos Root",
    ]);
    // Unrelated extra intermediates and roots do not disturb path building.
    const stranger = await load(await makeRoot(d, "stranger", "/CN=Stranger"));
    const again = await verifyChain(leaf, {
      roots: [stranger, root],
      intermediates: [stranger, inter],
      now,
    });
    assert.equal(again.length, 3);
    // A root is trusted on its own.
    assert.equal((await verifyChain(root, { roots: [root], now })).length, 1);
  });

  await t.step("missing intermediate", async () => {
    await assert.rejects(
      () => verifyChain(leaf, { roots: [root], now }),
      rejectsWith(
        "untrusted",
        /chain does not end at the root CA \(no certificate for issuer "CN=Aos Intermediate"/,
      ),
    );
  });

  await t.step("leaf of another CA", async () => {
    await makeRoot(d, "other", "/CN=Other Root");
    const foreign = await load(await issue(d, "foreign", "/CN=foreign", "other"));
    await assert.rejects(
      () => verifyChain(foreign, { roots: [root], intermediates: [inter], now }),
      rejectsWith("untrusted", /of "CN=foreign": chain does not end at the root CA/),
    );
  });

  await t.step("impostor CA with the root's name", async () => {
    await makeRoot(d, "impostor", "/CN=Aos Root", {
      ext: CA_EXT.replace(/.*KeyIdentifier.*\n/g, ""),
    });
    const fake = await load(
      await issue(d, "fake", "/CN=fake", "impostor", {
        // No key identifiers: only the signature can tell the impostor from the root.
        ext: "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n",
      }),
    );
    await assert.rejects(
      () => verifyChain(fake, { roots: [root], now }),
      rejectsWith(
        "badSignature",
        /signature of "CN=fake" does not verify with issuer "CN=Aos Root"/,
      ),
    );
  });

  await t.step("expired and not yet valid", async () => {
    const later = new Date(leaf.notAfter.getTime() + 2 * DAY);
    await assert.rejects(
      () => verifyChain(leaf, { roots: [root], intermediates: [inter], now: later }),
      rejectsWith(
        "expired",
        new RegExp(`certificate "CN=leaf" expired at ${leaf.notAfter.toISOString()}`),
      ),
    );
    const earlier = new Date(leaf.notBefore.getTime() - DAY);
    await assert.rejects(
      () => verifyChain(leaf, { roots: [root], intermediates: [inter], now: earlier }),
      rejectsWith("notYetValid", /certificate "CN=leaf" is not valid before/),
    );
    // The intermediate's period counts too.
    const afterInter = new Date(inter.notAfter.getTime() + DAY);
    await assert.rejects(
      () => verifyChain(inter, { roots: [root], now: afterInter }),
      rejectsWith("expired", /certificate "CN=Aos Intermediate" expired at/),
    );
  });

  await t.step("issuer without CA:TRUE", async () => {
    const notCa = await load(
      await issue(d, "notca", "/CN=Not A CA", "root", { ext: "basicConstraints=CA:FALSE\n" }),
    );
    const under = await load(
      await issue(d, "under", "/CN=under", "notca", { ext: "basicConstraints=CA:FALSE\n" }),
    );
    await assert.rejects(
      () => verifyChain(under, { roots: [root], intermediates: [notCa], now }),
      rejectsWith("notCA", /issuer "CN=Not A CA" is not a CA/),
    );
  });

  await t.step("issuer whose key usage lacks keyCertSign", async () => {
    const noSign = await load(
      await issue(d, "nosign", "/CN=No Sign CA", "root", {
        ext: "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n",
      }),
    );
    const under = await load(
      await issue(d, "under2", "/CN=under2", "nosign", { ext: "basicConstraints=CA:FALSE\n" }),
    );
    await assert.rejects(
      () => verifyChain(under, { roots: [root], intermediates: [noSign], now }),
      rejectsWith("keyUsage", /issuer "CN=No Sign CA" has no keyCertSign key usage/),
    );
  });

  await t.step("path length constraint", async () => {
    await makeRoot(d, "strict", "/CN=Strict Root", {
      ext: CA_EXT.replace("CA:TRUE", "CA:TRUE,pathlen:0"),
    });
    const strictRoot = await load(`${d}/strict.pem`);
    const mid = await load(await issue(d, "mid", "/CN=Mid", "strict", { ext: CA_EXT }));
    const end = await load(await issue(d, "end", "/CN=end", "mid"));
    await assert.rejects(
      () => verifyChain(end, { roots: [strictRoot], intermediates: [mid], now }),
      rejectsWith("pathLength", /issuer "CN=Strict Root" allows 0 CA\(s\) below it, path has 1/),
    );
  });

  await t.step("self-signed leaf that is not a root", async () => {
    const self = await load(await makeRoot(d, "self", "/CN=Self"));
    await assert.rejects(
      () => verifyChain(self, { roots: [root], now }),
      rejectsWith("untrusted", /chain does not end at the root CA \("CN=Self" is self-issued/),
    );
  });

  await t.step("critical extensions we do not process reject the path (RFC 5280)", async () => {
    // An intermediate with nameConstraints: ignoring it would let it issue for any name.
    const constrained = await load(
      await issue(d, "constrained", "/CN=Constrained", "root", {
        ext: CA_EXT + "nameConstraints=critical,permitted;DNS:example.com\n",
      }),
    );
    assert.deepEqual(constrained.unhandledCriticalExtensions, ["2.5.29.30"]);
    const under = await load(await issue(d, "under", "/CN=other.org", "constrained"));
    await assert.rejects(
      () => verifyChain(under, { roots: [root], intermediates: [constrained], now }),
      rejectsWith(
        "unhandledCritical",
        /certificate "CN=Constrained" has unhandled critical extension\(s\) 2\.5\.29\.30/,
      ),
    );
    // An unknown private extension marked critical on the leaf.
    const odd = await load(
      await issue(d, "odd", "/CN=odd", "inter", {
        ext: "basicConstraints=CA:FALSE\n1.2.3.4.5=critical,ASN1:NULL\n",
      }),
    );
    await assert.rejects(
      () => verifyChain(odd, { roots: [root], intermediates: [inter], now }),
      rejectsWith(
        "unhandledCritical",
        /"CN=odd" has unhandled critical extension\(s\) 1\.2\.3\.4\.5/,
      ),
    );
    // The same extension, not critical, is fine.
    const mild = await load(
      await issue(d, "mild", "/CN=mild", "inter", { ext: "1.2.3.4.5=ASN1:NULL\n" }),
    );
    assert.deepEqual(mild.unhandledCriticalExtensions, []);
    assert.equal(
      (await verifyChain(mild, { roots: [root], intermediates: [inter], now })).length,
      3,
    );
  });

  await t.step("path building tries the next issuer when the first one fails", async () => {
    // Two issues of one intermediate (same name, same key): the first expires after a day.
    const short = await load(
      await issue(d, "reissued", "/CN=Aos Reissued", "root", { ext: CA_EXT, days: 1 }),
    );
    const long = await load(
      await issue(d, "reissued-long", "/CN=Aos Reissued", "root", {
        ext: CA_EXT,
        days: 30,
        key: `${d}/reissued.key`,
      }),
    );
    const below = await load(await issue(d, "below", "/CN=below", "reissued", { days: 20 }));
    const later = new Date(short.notAfter.getTime() + 3 * DAY);
    const chain = await verifyChain(below, {
      roots: [root],
      intermediates: [short, long],
      now: later,
    });
    assert.equal(chain[1]!.serial, long.serial);
    // With only the expired issue there is no path, and the failure says why.
    await assert.rejects(
      () => verifyChain(below, { roots: [root], intermediates: [short], now: later }),
      rejectsWith("expired", /certificate "CN=Aos Reissued" expired/),
    );
  });

  await t.step("an invalid verification time is refused, not treated as always valid", async () => {
    await assert.rejects(
      () => verifyChain(leaf, { roots: [root], intermediates: [inter], now: new Date(NaN) }),
      (e) =>
        e instanceof AosError && e.code === "invalidArgument" && /invalid time/.test(e.message),
    );
  });

  await t.step(
    "SHA-1 signatures are refused, a SHA-1 self-signed trust anchor is not",
    async () => {
      const weakInter = await load(
        await issue(d, "weak-inter", "/CN=Aos Weak Intermediate", "root", {
          ext: CA_EXT,
          days: 20,
          sigArgs: ["-sha1"],
        }),
      );
      assert.equal(weakInter.signatureHash, "sha1");
      const weakLeaf = await load(
        await issue(d, "weak-leaf", "/CN=weak leaf", "inter", { days: 1, sigArgs: ["-sha1"] }),
      );
      await assert.rejects(
        () => verifyChain(weakLeaf, { roots: [root], intermediates: [inter], now }),
        rejectsWith("weakSignature", /"CN=weak leaf" is signed with SHA-1, which is refused/),
      );
      const underWeak = await load(
        await issue(d, "under-weak", "/CN=under weak", "weak-inter", { days: 1 }),
      );
      await assert.rejects(
        () => verifyChain(underWeak, { roots: [root], intermediates: [weakInter], now }),
        rejectsWith("weakSignature", /"CN=Aos Weak Intermediate" is signed with SHA-1/),
      );
      // A trust anchor is trusted by configuration: its own self-signature is not checked.
      const oldRoot = await load(
        await makeRoot(d, "old-root", "/CN=Old Root", { sigArgs: ["-sha1"] }),
      );
      assert.equal(oldRoot.signatureHash, "sha1");
      const modern = await load(await issue(d, "modern", "/CN=modern", "old-root", { days: 1 }));
      assert.equal(modern.signatureHash, "sha256");
      const chain = await verifyChain(modern, {
        roots: [oldRoot],
        now: new Date(modern.notBefore.getTime() + 3600_000),
      });
      assert.equal(chain.length, 2);
    },
  );
});

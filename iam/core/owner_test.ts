import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { AosError } from "@aos/shared/errors";
import { OwnerPassword, scryptKdf } from "./owner.ts";

/** scrypt, counting its runs. */
function countingKdf() {
  const kdf = (password: string, salt: Buffer) => {
    kdf.runs++;
    return scryptKdf(password, salt);
  };
  kdf.runs = 0;
  return kdf;
}

async function rejects(p: Promise<unknown>, code: string, re: RegExp) {
  await assert.rejects(p, (e) => e instanceof AosError && e.code === code && re.test(e.message));
}

Deno.test("owner password: checks, one scrypt run for a repeated right password, none cached for wrong ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const kdf = countingKdf();
    const owner = new OwnerPassword(`${dir}/owner`, kdf);
    await rejects(owner.check("pw", "create key"), "wrongState", /no owner password/);
    await owner.set("secret");
    assert.equal((await Deno.stat(`${dir}/owner`)).mode! & 0o777, 0o600);
    assert.equal(kdf.runs, 1);

    await owner.check("secret", "create key");
    assert.equal(kdf.runs, 2);
    // Concurrent repeats of the verified password: no further scrypt run.
    await Promise.all(Array.from({ length: 5 }, () => owner.check("secret", "apply cert")));
    assert.equal(kdf.runs, 2);

    // Wrong passwords always run scrypt (nothing about them is remembered) and are refused.
    await rejects(owner.check("wrong", "apply cert"), "invalidArgument", /wrong password/);
    await rejects(owner.check("wrong", "apply cert"), "invalidArgument", /wrong password/);
    assert.equal(kdf.runs, 4);
    await rejects(owner.check("x".repeat(41), "apply cert"), "invalidArgument", /longer than 40/);

    // A new password: the old one is refused even though it was verified before.
    await owner.set("other");
    await rejects(owner.check("secret", "apply cert"), "invalidArgument", /wrong password/);
    await owner.check("other", "apply cert");

    // A record replaced behind our back (another salt/hash) is checked afresh.
    const other = new OwnerPassword(`${dir}/owner`, kdf);
    await other.set("third");
    await rejects(owner.check("other", "apply cert"), "invalidArgument", /wrong password/);
    await owner.check("third", "apply cert");

    await owner.clear();
    await rejects(owner.check("third", "finish"), "wrongState", /no owner password/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("owner password: concurrent sets and checks are serialized; the record is never torn", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const owner = new OwnerPassword(`${dir}/owner`);
    await Promise.all(["a", "b", "c", "d"].map((p) => owner.set(p)));
    // The last set wins (the lock keeps call order) and the file is one whole record.
    JSON.parse(await Deno.readTextFile(`${dir}/owner`));
    await owner.check("d", "apply cert");
    await rejects(owner.check("a", "apply cert"), "invalidArgument", /wrong password/);
    const [, cleared] = await Promise.allSettled([owner.check("d", "x"), owner.clear()]);
    assert.equal(cleared.status, "fulfilled");
    await rejects(owner.check("d", "x"), "wrongState", /no owner password/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

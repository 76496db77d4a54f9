/**
 * The owner password set by `StartProvisioning` and checked by later provisioning calls
 * (upstream uses it as the PKCS#11 SO PIN; our file storage keeps only a scrypt hash).
 * @module
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import { AosError } from "@aos/shared/errors";

/** Upstream limit of a provisioning password. */
export const MAX_PASSWORD = 40;

interface OwnerRecord {
  salt: string;
  hash: string;
}

/** scrypt off the event loop: a synchronous check stalls every IAM call for ~60 ms. */
function hashPassword(password: string, salt: Buffer | Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, 32, (err, key) => (err ? reject(err) : resolve(key)))
  );
}

/** Owner password stored as `<file>` (JSON with salt and scrypt hash, mode 0600). */
export class OwnerPassword {
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  /** Sets the owner password (atomically replaces an earlier one). */
  async set(password: string): Promise<void> {
    checkLength(password);
    const salt = randomBytes(16);
    const record: OwnerRecord = {
      salt: salt.toString("hex"),
      hash: (await hashPassword(password, salt)).toString("hex"),
    };
    const tmp = `${this.#file}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(record), { mode: 0o600 });
    await Deno.rename(tmp, this.#file);
  }

  /** Throws unless `password` is the owner password; `wrongState` when there is no owner. */
  async check(password: string, what: string): Promise<void> {
    checkLength(password);
    let record: OwnerRecord;
    try {
      record = JSON.parse(await Deno.readTextFile(this.#file));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new AosError(
          "wrongState",
          `Cannot ${what}: no owner password is set (run StartProvisioning first)`,
        );
      }
      throw new AosError(
        "failed",
        `Cannot ${what}: owner record unreadable: ${(err as Error).message}`,
      );
    }
    const expected = Buffer.from(record.hash, "hex");
    const actual = await hashPassword(password, Buffer.from(record.salt, "hex"));
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
      throw new AosError("invalidArgument", `Cannot ${what}: wrong password`);
    }
  }

  /** Forgets the owner (deprovisioning). */
  async clear(): Promise<void> {
    await Deno.remove(this.#file).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
  }
}

function checkLength(password: string): void {
  if (password.length > MAX_PASSWORD) {
    throw new AosError("invalidArgument", `Password longer than ${MAX_PASSWORD} characters`);
  }
}

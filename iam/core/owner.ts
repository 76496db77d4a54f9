/**
 * The owner password set by `StartProvisioning` and checked by later provisioning calls
 * (upstream uses it as the PKCS#11 SO PIN; our file storage keeps only a scrypt hash).
 * @module
 */
import { createHmac, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import { AosError } from "@aos/shared/errors";
import { Mutex } from "@aos/shared/core";

/** Upstream limit of a provisioning password. */
export const MAX_PASSWORD = 40;

interface OwnerRecord {
  salt: string;
  hash: string;
}

/** Derives the stored hash of a password. */
export type PasswordKdf = (password: string, salt: Buffer) => Promise<Buffer>;

/** scrypt off the event loop: a synchronous check stalls every IAM call for ~60 ms. */
export function scryptKdf(password: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, 32, (err, key) => (err ? reject(err) : resolve(key)))
  );
}

/**
 * Owner password stored as `<file>` (JSON with salt and scrypt hash, mode 0600).
 *
 * A provisioning client sends the same password with every call (`CreateKey` per cert type,
 * `ApplyCert`, `FinishProvisioning`), and each scrypt run needs a 16 MB work buffer that glibc
 * keeps in the arena of whichever pool thread ran it (measured: 200 checks left IAM at ~360 MB).
 * So checks run one at a time, and a password once verified is remembered as an HMAC under a
 * key that lives only in this process: repeating it costs a hash, not a scrypt run.
 */
export class OwnerPassword {
  readonly #file: string;
  readonly #kdf: PasswordKdf;
  readonly #lock = new Mutex();
  readonly #cacheKey = randomBytes(32);
  /** HMAC of the record and the verified password; it matches only while the record is unchanged. */
  #verified: Buffer | undefined;

  constructor(file: string, kdf: PasswordKdf = scryptKdf) {
    this.#file = file;
    this.#kdf = kdf;
  }

  #mac(record: OwnerRecord, password: string): Buffer {
    return createHmac("sha256", this.#cacheKey)
      .update(JSON.stringify([record.salt, record.hash, password]))
      .digest();
  }

  /** Sets the owner password (atomically replaces an earlier one). */
  async set(password: string): Promise<void> {
    checkLength(password);
    await this.#lock.run(() => this.#set(password));
  }

  async #set(password: string): Promise<void> {
    const salt = randomBytes(16);
    const record: OwnerRecord = {
      salt: salt.toString("hex"),
      hash: (await this.#kdf(password, salt)).toString("hex"),
    };
    // Writers are serialized by the lock, so one fixed temp name is safe (and a crash leaves at
    // most this one file, replaced by the next write).
    const tmp = `${this.#file}.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(record), { mode: 0o600 });
    await Deno.rename(tmp, this.#file);
    this.#verified = undefined;
  }

  /** Throws unless `password` is the owner password; `wrongState` when there is no owner. */
  async check(password: string, what: string): Promise<void> {
    checkLength(password);
    return await this.#lock.run(() => this.#check(password, what));
  }

  async #check(password: string, what: string): Promise<void> {
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
    const mac = this.#mac(record, password);
    if (this.#verified && timingSafeEqual(this.#verified, mac)) return;
    const expected = Buffer.from(record.hash, "hex");
    const actual = await this.#kdf(password, Buffer.from(record.salt, "hex"));
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
      throw new AosError("invalidArgument", `Cannot ${what}: wrong password`);
    }
    this.#verified = mac;
  }

  /** Forgets the owner (deprovisioning). */
  async clear(): Promise<void> {
    await this.#lock.run(() => this.#clear());
  }

  async #clear(): Promise<void> {
    this.#verified = undefined;
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

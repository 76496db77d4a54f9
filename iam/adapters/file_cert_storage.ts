/**
 * The `filemodule` cert storage: one directory per cert type holding PEM files.
 *
 * Layout: `pending/<uuid>.key.pem` (keys waiting for a certificate), `<id>.cert.pem` (the chain,
 * leaf first) with its `<id>.key.pem` (PKCS#8, mode 0600), where `<id>` derives from the leaf's
 * fingerprint. Every file is written to a temp name and renamed, so a crash leaves whole files;
 * a cert without its key (or the reverse) is an interrupted apply and is removed at start.
 * @module
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  type Certificate,
  certificateMatchesPrivateKey,
  exportPrivateKeyPem,
  generateKeyPair,
  type KeyAlgorithm,
  type KeyPair,
  parseCertificates,
} from "@aos/shared/crypto";
import type { Logger } from "@aos/shared/logger";

/** Upstream keeps at most this many keys waiting for a certificate. */
export const MAX_PENDING_KEYS = 5;

const CLEARING_MARKER = ".clearing";

/** A stored certificate with its key. */
export interface StoredCert {
  id: string;
  leaf: Certificate;
  certUrl: string;
  keyUrl: string;
}

async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, data, { mode });
  await Deno.chmod(tmp, mode);
  await Deno.rename(tmp, path);
}

async function removeIfExists(path: string): Promise<void> {
  await Deno.remove(path).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}

/** PEM files of one cert type in a directory. */
export class FileCertStorage {
  readonly dir: string;
  readonly #pending: string;
  readonly #logger: Logger;

  constructor(dir: string, logger: Logger) {
    this.dir = dir;
    this.#pending = join(dir, "pending");
    this.#logger = logger;
  }

  /** Creates the directories (0700) and completes an interrupted clear. */
  async init(): Promise<{ clearedInterrupted: boolean }> {
    await Deno.mkdir(this.#pending, { recursive: true, mode: 0o700 });
    await Deno.chmod(this.dir, 0o700);
    const interrupted = await Deno.stat(join(this.dir, CLEARING_MARKER)).then(
      () => true,
      () => false,
    );
    if (interrupted) {
      this.#logger.warn("completing an interrupted clear of the cert storage", { dir: this.dir });
      await this.clear();
    }
    for await (const e of Deno.readDir(this.dir)) {
      if (e.name.endsWith(".tmp")) await removeIfExists(join(this.dir, e.name));
    }
    return { clearedInterrupted: interrupted };
  }

  /** Generates a key and keeps it as pending (the oldest pending keys beyond the limit go). */
  async createPendingKey(alg: KeyAlgorithm): Promise<KeyPair> {
    const keys = await generateKeyPair(alg);
    const pem = await exportPrivateKeyPem(keys.privateKey);
    await writeAtomic(join(this.#pending, `${crypto.randomUUID()}.key.pem`), pem, 0o600);
    const pending: { path: string; mtime: number }[] = [];
    for await (const e of Deno.readDir(this.#pending)) {
      if (!e.name.endsWith(".key.pem")) continue;
      const path = join(this.#pending, e.name);
      pending.push({ path, mtime: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
    }
    pending.sort((a, b) => a.mtime - b.mtime);
    for (const old of pending.slice(0, Math.max(0, pending.length - MAX_PENDING_KEYS))) {
      await removeIfExists(old.path);
    }
    return keys;
  }

  /** The pending key file whose public key is the certificate's, if any. */
  async findPendingKey(leaf: Certificate): Promise<string | undefined> {
    for await (const e of Deno.readDir(this.#pending)) {
      if (!e.name.endsWith(".key.pem")) continue;
      const path = join(this.#pending, e.name);
      if (await certificateMatchesPrivateKey(leaf, await Deno.readTextFile(path))) return path;
    }
    return undefined;
  }

  /** Stores a chain with its pending key (which leaves the pending set). */
  async store(leaf: Certificate, chainPem: string, pendingKeyPath: string): Promise<StoredCert> {
    const id = leaf.fingerprintSha256.slice(0, 16);
    const certPath = join(this.dir, `${id}.cert.pem`);
    const keyPath = join(this.dir, `${id}.key.pem`);
    await writeAtomic(certPath, chainPem, 0o644);
    await Deno.rename(pendingKeyPath, keyPath);
    return { id, leaf, certUrl: pathToFileURL(certPath).href, keyUrl: pathToFileURL(keyPath).href };
  }

  /** Stores a certificate whose key is in memory (self-signed). */
  async storeWithKey(leaf: Certificate, chainPem: string, keys: KeyPair): Promise<StoredCert> {
    const pendingPath = join(this.#pending, `${crypto.randomUUID()}.key.pem`);
    await writeAtomic(pendingPath, await exportPrivateKeyPem(keys.privateKey), 0o600);
    return await this.store(leaf, chainPem, pendingPath);
  }

  /** Removes a stored certificate and its key. */
  async remove(id: string): Promise<void> {
    await removeIfExists(join(this.dir, `${id}.cert.pem`));
    await removeIfExists(join(this.dir, `${id}.key.pem`));
  }

  /** Stored certificates with both files; half-stored leftovers are removed. */
  async list(): Promise<StoredCert[]> {
    const names = new Set<string>();
    for await (const e of Deno.readDir(this.dir)) if (e.isFile) names.add(e.name);
    const out: StoredCert[] = [];
    for (const name of names) {
      const m = /^([0-9a-f]{16})\.(cert|key)\.pem$/.exec(name);
      if (!m) continue;
      const id = m[1]!;
      const certPath = join(this.dir, `${id}.cert.pem`);
      const keyPath = join(this.dir, `${id}.key.pem`);
      if (!names.has(`${id}.cert.pem`) || !names.has(`${id}.key.pem`)) {
        this.#logger.warn("removing an incomplete certificate entry", { dir: this.dir, id });
        await this.remove(id);
        continue;
      }
      if (m[2] !== "cert") continue;
      try {
        const leaf = parseCertificates(await Deno.readTextFile(certPath))[0];
        if (!leaf) throw new Error("no certificate in file");
        out.push({
          id,
          leaf,
          certUrl: pathToFileURL(certPath).href,
          keyUrl: pathToFileURL(keyPath).href,
        });
      } catch (err) {
        this.#logger.warn("removing an unreadable certificate", { path: certPath, error: err });
        await this.remove(id);
      }
    }
    return out;
  }

  /**
   * Removes every certificate and key. A marker makes the clear resumable: a crash part-way
   * is completed by the next {@link init}.
   */
  async clear(): Promise<void> {
    const marker = join(this.dir, CLEARING_MARKER);
    await Deno.writeTextFile(marker, "");
    for (const dir of [this.dir, this.#pending]) {
      for await (const e of Deno.readDir(dir)) {
        if (e.isFile && e.name !== CLEARING_MARKER) await removeIfExists(join(dir, e.name));
      }
    }
    await removeIfExists(marker);
  }

  /** Marks the storage as being cleared (so a crash before {@link clear} ends still clears). */
  async markClearing(): Promise<void> {
    await Deno.writeTextFile(join(this.dir, CLEARING_MARKER), "");
  }
}

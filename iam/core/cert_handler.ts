/**
 * The cert handler: per cert type, key creation with CSRs, applying certificates (the chain must
 * verify to the root CA, which upstream never checks), trimming to `maxItems`, look-ups and
 * change notifications. Storage and metadata live behind ports; all calls are serialised.
 * @module
 */
import {
  type Certificate,
  createCertificate,
  createCsr,
  generateKeyPair,
  type KeyAlgorithm,
  type KeyPair,
  parseCertificates,
  toHex,
  verifyChain,
} from "@aos/shared/crypto";
import { AosError, Mutex } from "@aos/shared/core";
import type { Logger } from "@aos/shared/logger";
import type { CertModuleConfig } from "../config.ts";
import type { CertInfo, CertProvider, Unsubscribe } from "./types.ts";

/** Largest PEM chain accepted by `ApplyCert` (bytes). */
export const MAX_CHAIN_PEM = 64 * 1024;
/** Longest CSR subject accepted (upstream DN limit). */
export const MAX_SUBJECT = 128;

/** A stored certificate as the storage port reports it. */
export interface StoredCertRef {
  id: string;
  leaf: Certificate;
  certUrl: string;
  keyUrl: string;
}

/** Where keys and certificates of one type live (the `filemodule` adapter implements it). */
export interface CertStoragePort {
  init(): Promise<{ clearedInterrupted: boolean }>;
  createPendingKey(alg: KeyAlgorithm): Promise<KeyPair>;
  findPendingKey(leaf: Certificate): Promise<string | undefined>;
  store(leaf: Certificate, chainPem: string, pendingKeyPath: string): Promise<StoredCertRef>;
  storeWithKey(leaf: Certificate, chainPem: string, keys: KeyPair): Promise<StoredCertRef>;
  remove(id: string): Promise<void>;
  list(): Promise<StoredCertRef[]>;
  clear(): Promise<void>;
  markClearing(): Promise<void>;
}

/** Certificate metadata (the `certificates` table). */
export interface CertMetadataPort {
  addCert(info: CertInfo): void;
  removeCert(issuer: Uint8Array, serial: string): void;
  removeCertsOfType(type: string): void;
  certsOfType(type: string): CertInfo[];
  certByIssuerSerial(issuer: Uint8Array, serial: string): CertInfo | undefined;
}

/** Dependencies of {@link CertHandler}. */
export interface CertHandlerDeps {
  modules: CertModuleConfig[];
  storageFor: (module: CertModuleConfig) => CertStoragePort;
  metadata: CertMetadataPort;
  /** Trusted root CAs (`caCert`). */
  roots: Certificate[];
  logger: Logger;
  now?: () => Date;
}

function keyAlgorithm(m: CertModuleConfig): KeyAlgorithm {
  // Upstream generates P-384 for every ECC module and RSA-2048 for RSA ones.
  return m.algorithm === "rsa" ? "rsa-2048" : "ecdsa-p384";
}

function infoOf(type: string, s: StoredCertRef): CertInfo {
  return {
    type,
    certUrl: s.certUrl,
    keyUrl: s.keyUrl,
    serial: s.leaf.serial,
    issuer: s.leaf.issuerDer,
    notAfter: s.leaf.notAfter,
  };
}

function sameCert(a: CertInfo | undefined, b: CertInfo | undefined): boolean {
  if (!a || !b) return a === b;
  return a.serial === b.serial && toHex(a.issuer) === toHex(b.issuer);
}

/** Certificates of all configured cert types. */
export class CertHandler implements CertProvider {
  readonly #modules = new Map<string, { config: CertModuleConfig; storage: CertStoragePort }>();
  readonly #meta: CertMetadataPort;
  readonly #roots: Certificate[];
  readonly #logger: Logger;
  readonly #now: () => Date;
  readonly #mutex = new Mutex();
  readonly #listeners = new Map<string, Set<(cert: CertInfo) => void>>();
  readonly #newest = new Map<string, CertInfo | undefined>();

  constructor(deps: CertHandlerDeps) {
    for (const m of deps.modules) {
      if (!m.disabled) this.#modules.set(m.id, { config: m, storage: deps.storageFor(m) });
    }
    this.#meta = deps.metadata;
    this.#roots = deps.roots;
    this.#logger = deps.logger;
    this.#now = deps.now ?? (() => new Date());
  }

  /**
   * Prepares the storages and makes the metadata agree with them: rows without files go,
   * complete files without rows are added (an apply interrupted between the two steps).
   */
  init(): Promise<void> {
    return this.#mutex.run(async () => {
      for (const [type, { config, storage }] of this.#modules) {
        const { clearedInterrupted } = await storage.init();
        if (clearedInterrupted) this.#meta.removeCertsOfType(type);
        if (!config.skipValidation) await this.#sync(type, storage);
        // A crash between storing a certificate and trimming leaves one too many.
        await this.#trim(type, config.maxItems, storage);
        this.#newest.set(type, this.#meta.certsOfType(type)[0]);
      }
    });
  }

  async #sync(type: string, storage: CertStoragePort): Promise<void> {
    const stored = await storage.list();
    const rows = this.#meta.certsOfType(type);
    const key = (c: { serial: string; issuer: Uint8Array }) => `${toHex(c.issuer)}/${c.serial}`;
    const onDisk = new Map(stored.map((s) => [key(infoOf(type, s)), s]));
    for (const row of rows) {
      if (!onDisk.has(key(row))) {
        this.#logger.warn("removing certificate metadata without files", {
          type,
          serial: row.serial,
        });
        this.#meta.removeCert(row.issuer, row.serial);
      }
    }
    const inDb = new Set(rows.map(key));
    for (const [k, s] of onDisk) {
      if (!inDb.has(k)) {
        this.#logger.warn("adding metadata of a stored certificate", {
          type,
          serial: s.leaf.serial,
        });
        this.#meta.addCert(infoOf(type, s));
      }
    }
  }

  #module(type: string) {
    const m = this.#modules.get(type);
    if (!m) {
      throw new AosError(
        "notFound",
        `Unknown cert type "${type}" (known: ${[...this.#modules.keys()].join(", ")})`,
      );
    }
    return m;
  }

  /** Module config of a type. */
  moduleConfig(type: string): CertModuleConfig {
    return this.#module(type).config;
  }

  /** All enabled cert types, self-signed ones included. */
  allCertTypes(): string[] {
    return [...this.#modules.keys()];
  }

  getCertTypes(): string[] {
    return [...this.#modules.values()].filter((m) => !m.config.selfSigned).map((m) => m.config.id);
  }

  /** Removes every key, certificate and metadata row of a type. */
  clear(type: string): Promise<void> {
    return this.#mutex.run(async () => {
      const { storage } = this.#module(type);
      await storage.markClearing();
      this.#meta.removeCertsOfType(type);
      await storage.clear();
      this.#notifyIfChanged(type);
    });
  }

  /**
   * Marks every storage as being cleared before anything is removed, so a crash during
   * `StartProvisioning` completes the clear of all of them on the next start.
   */
  async clearAll(): Promise<void> {
    await this.#mutex.run(async () => {
      for (const { storage } of this.#modules.values()) await storage.markClearing();
    });
    for (const type of this.#modules.keys()) await this.clear(type);
  }

  /** Creates a key pair for `type` and returns a PEM CSR for `subject` (`CN=<subject>`). */
  createKey(type: string, subject: string): Promise<string> {
    return this.#mutex.run(async () => {
      const { config, storage } = this.#module(type);
      if (!subject) {
        throw new AosError("invalidArgument", `Cannot create key "${type}": empty subject`);
      }
      if (subject.length > MAX_SUBJECT) {
        throw new AosError(
          "invalidArgument",
          `Cannot create key "${type}": subject longer than ${MAX_SUBJECT}`,
        );
      }
      const keys = await storage.createPendingKey(keyAlgorithm(config));
      const csr = await createCsr({
        subject: subject.includes("=") ? subject : `CN=${subject}`,
        keys,
        dnsNames: config.alternativeNames,
        extendedKeyUsage: config.extendedKeyUsage,
      });
      this.#logger.info("key created", { type, subject });
      return csr;
    });
  }

  /** Applies a PEM chain (leaf first) to the pending key it certifies. */
  applyCert(type: string, pemChain: string): Promise<CertInfo> {
    return this.#mutex.run(async () => {
      const { config, storage } = this.#module(type);
      const fail = (
        code: ConstructorParameters<typeof AosError>[0],
        why: string,
        cause?: unknown,
      ) =>
        new AosError(
          code,
          `Cannot apply cert "${type}": ${why}`,
          cause === undefined ? {} : { cause },
        );
      if (pemChain.length > MAX_CHAIN_PEM) {
        throw fail("outOfRange", `chain larger than ${MAX_CHAIN_PEM} bytes`);
      }
      let certs: Certificate[];
      try {
        certs = parseCertificates(pemChain);
      } catch (err) {
        throw fail("invalidArgument", (err as Error).message, err);
      }
      const leaf = certs[0];
      if (!leaf) throw fail("invalidArgument", "no certificate in the PEM data");
      if (!config.skipValidation && !config.selfSigned) {
        try {
          await verifyChain(leaf, {
            roots: this.#roots,
            intermediates: certs.slice(1),
            now: this.#now(),
          });
        } catch (err) {
          throw fail("invalidArgument", (err as Error).message, err);
        }
      }
      const pendingKey = await storage.findPendingKey(leaf);
      if (!pendingKey) {
        throw fail("notFound", "no pending key matches the certificate (create a key first)");
      }
      const stored = await storage.store(leaf, certs.map((c) => c.pem).join(""), pendingKey);
      const info = infoOf(type, stored);
      this.#meta.addCert(info);
      await this.#trim(type, config.maxItems, storage);
      this.#logger.info("certificate applied", {
        type,
        serial: info.serial,
        notAfter: info.notAfter.toISOString(),
      });
      this.#notifyIfChanged(type);
      return info;
    });
  }

  /** Creates a self-signed certificate (`CN=Aos Core`, 100 years) for a `selfSigned` module. */
  createSelfSignedCert(type: string): Promise<CertInfo> {
    return this.#mutex.run(async () => {
      const { config, storage } = this.#module(type);
      const keys = await generateKeyPair(keyAlgorithm(config));
      const now = this.#now();
      const cert = await createCertificate({
        subject: "CN=Aos Core",
        publicKey: keys.publicKey,
        signer: keys,
        notBefore: now,
        notAfter: new Date(now.getTime() + 100 * 365.25 * 86_400_000),
        ...(config.extendedKeyUsage.length ? { extendedKeyUsage: config.extendedKeyUsage } : {}),
        ...(config.alternativeNames.length ? { dnsNames: config.alternativeNames } : {}),
      });
      const stored = await storage.storeWithKey(cert, cert.pem, keys);
      const info = infoOf(type, stored);
      this.#meta.addCert(info);
      await this.#trim(type, config.maxItems, storage);
      this.#notifyIfChanged(type);
      return info;
    });
  }

  /** Keeps at most `maxItems`, dropping the earliest `notAfter` first (metadata, then files). */
  async #trim(type: string, maxItems: number, storage: CertStoragePort): Promise<void> {
    const rows = this.#meta.certsOfType(type);
    const byId = new Map(
      (await storage.list()).map((s) => [`${toHex(s.leaf.issuerDer)}/${s.leaf.serial}`, s]),
    );
    for (const old of rows.slice(maxItems)) {
      this.#meta.removeCert(old.issuer, old.serial);
      const s = byId.get(`${toHex(old.issuer)}/${old.serial}`);
      if (s) await storage.remove(s.id);
      this.#logger.info("old certificate removed", { type, serial: old.serial });
    }
  }

  getCert(type: string, issuer: Uint8Array, serial: string): Promise<CertInfo> {
    return this.#mutex.run(() => {
      this.#module(type);
      const info = serial === ""
        ? this.#meta.certsOfType(type)[0]
        : this.#meta.certByIssuerSerial(issuer, serial.toLowerCase());
      if (!info || info.type !== type) {
        throw new AosError(
          "notFound",
          serial === ""
            ? `No certificate of type "${type}"`
            : `No certificate "${type}" with serial ${serial}`,
        );
      }
      return info;
    });
  }

  subscribeCertChanged(type: string, listener: (cert: CertInfo) => void): Unsubscribe {
    this.#module(type);
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, set = new Set());
    set.add(listener);
    return () => set.delete(listener);
  }

  #notifyIfChanged(type: string): void {
    const newest = this.#meta.certsOfType(type)[0];
    if (sameCert(newest, this.#newest.get(type))) return;
    this.#newest.set(type, newest);
    if (!newest) return;
    for (const l of this.#listeners.get(type) ?? []) {
      try {
        l(newest);
      } catch (err) {
        this.#logger.error("cert change listener failed", { type, error: err });
      }
    }
  }
}

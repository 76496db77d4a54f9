/**
 * Test-only: a signing PKI, OCI test images, and a blob "cloud" (an HTTP server on 127.0.0.1
 * serving AES-encrypted blobs, plus the `requestBlobUrls` answers describing them).
 * @module
 */
import { createHash } from "node:crypto";
import {
  type Certificate,
  createCertificate,
  encryptBytes,
  generateKeyPair,
  type KeyPair,
  sha256Hex,
  sha3_256Hex,
  signBlob,
  toBase64,
} from "@aos/shared/crypto";
import { MediaType } from "@aos/shared/oci";
import type { BlobInfo, BlobInfoSource, BlobTrust, DesiredItem } from "./types.ts";

/** Root CA, intermediate and RSA blob signer, plus a key outside the chain. */
export interface TestPki {
  roots: Certificate[];
  rootPem: string;
  signer: KeyPair;
  other: KeyPair;
  trust: BlobTrust;
}

/** Builds the PKI (EC CAs for speed, an RSA signer as AosCloud uses). */
export async function makePki(): Promise<TestPki> {
  const rootKey = await generateKeyPair("ecdsa-p256");
  const root = await createCertificate({
    subject: "CN=Test Aos Root,O=Test",
    publicKey: rootKey.publicKey,
    signer: rootKey,
    isCA: true,
  });
  const interKey = await generateKeyPair("ecdsa-p256");
  const inter = await createCertificate({
    subject: "CN=Test Aos Signing CA,O=Test",
    publicKey: interKey.publicKey,
    signer: rootKey,
    issuer: root,
    isCA: true,
  });
  const signer = await generateKeyPair("rsa-2048");
  const signerCert = await createCertificate({
    subject: "CN=Test Aos Blob Signer,O=Test",
    publicKey: signer.publicKey,
    signer: interKey,
    issuer: inter,
    keyUsage: ["digitalSignature"],
  });
  const other = await generateKeyPair("rsa-2048");
  const entry = (c: Certificate) => ({
    certificate: toBase64(c.der),
    fingerprint: c.fingerprintSha1.toUpperCase(),
  });
  return {
    roots: [root],
    rootPem: root.pem,
    signer,
    other,
    trust: {
      certificates: [entry(signerCert), entry(inter)],
      chains: [{
        name: "aos-test-chain",
        fingerprints: [signerCert.fingerprintSha1, inter.fingerprintSha1.toUpperCase()],
      }],
    },
  };
}

/** Deterministic pseudo-random bytes. */
export function bytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** `sha256:<hex>` of bytes. */
export function digestOf(data: Uint8Array): string {
  return `sha256:${sha256Hex(data)}`;
}

/** How a blob is published. */
export interface PublishOptions {
  /** Cipher (default CBC); `none` publishes the plain file. */
  cipher?: "cbc" | "gcm" | "none";
  /** Signature: by the chain's signer (default), by a key outside the chain, or none. */
  sign?: "signer" | "other" | "none";
  /** Serve (and correctly describe) other content than what the digest names. */
  serve?: Uint8Array;
  /** Sign the named content but serve content with one byte changed. */
  tamper?: boolean;
  /** URL host override (to test the allow-list). */
  host?: string;
  /** Describe the file with a wrong SHA3-256. */
  badSha3?: boolean;
}

/** A published blob. */
export interface Published {
  digest: string;
  plain: Uint8Array;
  served: Uint8Array;
  info: BlobInfo;
}

/** One request the server saw. */
export interface Seen {
  hex: string;
  range: string | null;
}

interface Gate {
  after: number;
  release: () => void;
  released: Promise<void>;
  used: boolean;
}

/** The blob server and the `requestBlobUrls` answers. */
export class TestCloud implements BlobInfoSource, AsyncDisposable {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #files = new Map<string, Uint8Array>();
  readonly #infos = new Map<string, BlobInfo>();
  readonly #gates = new Map<string, Gate>();
  readonly seen: Seen[] = [];
  readonly base: string;
  /** Number of `requestBlobUrls` calls. */
  infoRequests = 0;

  constructor(readonly pki: TestPki) {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#handle(req),
    );
    this.base = `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** Requests seen for a blob. */
  count(digest: string): number {
    const hex = digest.slice(7);
    return this.seen.filter((s) => s.hex === hex).length;
  }

  /** Ranges asked for a blob, in order. */
  ranges(digest: string): (string | null)[] {
    const hex = digest.slice(7);
    return this.seen.filter((s) => s.hex === hex).map((s) => s.range);
  }

  /** Every blob description, for a child process. */
  get infos(): BlobInfo[] {
    return [...this.#infos.values()];
  }

  /** The next response for `digest` sends `after` bytes, then waits for the release. */
  gate(digest: string, after: number): { release: () => void } {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    this.#gates.set(digest.slice(7), { after, release, released, used: false });
    return { release };
  }

  async requestBlobUrls(digests: string[]): Promise<BlobInfo[]> {
    this.infoRequests++;
    await Promise.resolve();
    return digests.flatMap((d) => {
      const info = this.#infos.get(d);
      return info ? [info] : [];
    });
  }

  /** Encrypts, signs and serves `plain`; returns its digest and description. */
  async publish(plain: Uint8Array, opts: PublishOptions = {}): Promise<Published> {
    const digest = digestOf(plain);
    let content = opts.serve ?? plain;
    if (opts.tamper) {
      content = content.slice();
      content[content.length >> 1]! ^= 0x55;
    }
    const cipher = opts.cipher ?? "cbc";
    const key = crypto.getRandomValues(new Uint8Array(32));
    const iv = crypto.getRandomValues(new Uint8Array(cipher === "gcm" ? 12 : 16));
    const alg = cipher === "gcm" ? "AES256/GCM/" : "AES256/CBC/pkcs7";
    const served = cipher === "none" ? content : await encryptBytes({ alg, key, iv }, content);
    const sha3 = opts.badSha3 ? sha3_256Hex(new Uint8Array([1])) : sha3_256Hex(served);
    const host = opts.host ?? this.base;
    const info: BlobInfo = {
      digest,
      urls: [`${host}/b/${digest.slice(7)}`],
      sha256: sha3,
      size: served.length,
    };
    if (cipher !== "none") {
      info.decryptInfo = { blockAlg: alg, blockIv: toBase64(iv), blockKey: toBase64(key) };
    }
    const sign = opts.sign ?? "signer";
    if (sign !== "none") {
      // What the cloud signs is the content the digest names (the tampered/served bytes differ).
      const signed = opts.serve ?? plain;
      info.signInfo = {
        chainName: "aos-test-chain",
        alg: "RSA/SHA256",
        value: await signBlob(signed, sign === "signer" ? this.pki.signer : this.pki.other),
        trustedTimestamp: new Date().toISOString(),
        ocspValues: [],
      };
    }
    this.#files.set(digest.slice(7), served);
    this.#infos.set(digest, info);
    return { digest, plain, served, info };
  }

  /** Publishes a JSON document. */
  publishJson(doc: unknown, opts: PublishOptions = {}): Promise<Published> {
    return this.publish(new TextEncoder().encode(JSON.stringify(doc)), opts);
  }

  /**
   * Publishes an image: index → one manifest → config, item config, two layers.
   * `layerOpts[i]` publishes layer i differently (tampered, wrong key…).
   */
  async publishImage(
    seed: number,
    opts: {
      layerSizes?: [number, number];
      layerOpts?: [(PublishOptions | undefined)?, (PublishOptions | undefined)?];
      indexOpts?: PublishOptions;
      /** Reuse a published blob as the first layer (blobs shared between items). */
      firstLayer?: Published;
    } = {},
  ): Promise<TestImage> {
    const [s1, s2] = opts.layerSizes ?? [40_000, 70_000];
    const layers = [
      opts.firstLayer ??
        await this.publish(bytes(s1, seed * 10 + 1), { cipher: "cbc", ...opts.layerOpts?.[0] }),
      await this.publish(bytes(s2, seed * 10 + 2), { cipher: "gcm", ...opts.layerOpts?.[1] }),
    ];
    const config = await this.publishJson({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/bin/app", String(seed)] },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
    });
    const itemConfig = await this.publishJson({ created: "2025-01-01T00:00:00Z", seed }, {
      cipher: "none",
    });
    const desc = (p: Published, mediaType: string) => ({
      mediaType,
      digest: p.digest,
      size: p.plain.length,
    });
    const manifest = await this.publishJson({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: desc(config, MediaType.ociConfig),
      aosItemConfig: desc(itemConfig, MediaType.aosItemConfig),
      layers: layers.map((l) => desc(l, MediaType.ociLayerTarGzip)),
    });
    const index = await this.publishJson({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [{
        ...desc(manifest, MediaType.ociManifest),
        platform: { architecture: "amd64", os: "linux" },
      }],
    }, opts.indexOpts);
    return {
      index,
      manifest,
      config,
      itemConfig,
      layers,
      all: [index, manifest, config, itemConfig, ...layers],
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const g of this.#gates.values()) g.release();
    await this.#server.shutdown();
  }

  #handle(req: Request): Response {
    const m = /^\/b\/([0-9a-f]{64})$/.exec(new URL(req.url).pathname);
    const file = m ? this.#files.get(m[1]!) : undefined;
    if (!m || !file) return new Response("not found", { status: 404 });
    const hex = m[1]!;
    const range = req.headers.get("range");
    this.seen.push({ hex, range });
    const etag = `"${hex}"`;
    const headers = new Headers({ etag, "accept-ranges": "bytes" });
    let start = 0;
    const r = range ? /^bytes=(\d+)-$/.exec(range) : null;
    const ifRange = req.headers.get("if-range");
    if (r && (ifRange === null || ifRange === etag)) {
      start = Number(r[1]);
      if (start >= file.length) {
        headers.set("content-range", `bytes */${file.length}`);
        return new Response(null, { status: 416, headers });
      }
      headers.set("content-range", `bytes ${start}-${file.length - 1}/${file.length}`);
    }
    headers.set("content-length", String(file.length - start));
    const body = file.slice(start);
    const gate = this.#gates.get(hex);
    if (gate && !gate.used) {
      gate.used = true;
      return new Response(gated(body, gate), { status: start ? 206 : 200, headers });
    }
    return new Response(body, { status: start ? 206 : 200, headers });
  }
}

function gated(body: Uint8Array, gate: Gate): ReadableStream<Uint8Array> {
  let step = 0;
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (step === 0) {
        step = 1;
        c.enqueue(body.slice(0, gate.after));
        return;
      }
      const go = await Promise.race([gate.released.then(() => true), stopped.then(() => false)]);
      if (!go) return;
      c.enqueue(body.slice(gate.after));
      c.close();
    },
    cancel() {
      stop();
    },
  }, { highWaterMark: 0 });
}

/** The blobs of a published image. */
export interface TestImage {
  index: Published;
  manifest: Published;
  config: Published;
  itemConfig: Published;
  layers: Published[];
  all: Published[];
}

/** The desired item of an image. */
export function desired(id: string, version: string, image: TestImage): DesiredItem {
  return { id, type: "service", version, indexDigest: image.index.digest };
}

/** SHA-256 hex of a file. */
export async function fileSha256(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

/** Names of the files under a directory, recursively (empty when it does not exist). */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`, `${prefix}${e.name}/`);
      else out.push(`${prefix}${e.name}`);
    }
  };
  try {
    await walk(dir, "");
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

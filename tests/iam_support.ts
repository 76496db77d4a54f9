/**
 * Support for the `iam` process tests: a unit directory with a test CA and `iam.cfg`, a real
 * `iam` process started under its permission manifest, typed gRPC clients, and CSR signing
 * with openssl.
 * @module
 */
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import {
  IAMCertificateServiceClient,
  IAMNodesServiceClient,
  IAMProvisioningServiceClient,
  IAMPublicCertServiceClient,
  IAMPublicCurrentNodeServiceClient,
  IAMPublicIdentityServiceClient,
  IAMPublicNodesServiceClient,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import { IAMVersionServiceClient } from "@aos/proto/iamanager/version.ts";
import type { ErrorInfo } from "@aos/proto/common/v2/common.ts";
import { fromErrorInfo } from "@aos/shared/errors";
import {
  callUnary,
  type ClientSecurity,
  createGrpcClient,
  type GrpcClientConstructor,
  type UnaryMethod,
} from "@aos/shared/grpc";
import { makeTestCa, openssl, type TestCa } from "@aos/shared/testing";
import { commandFor } from "../permissions/launch.ts";

/** A port that was free a moment ago (iam.cfg needs fixed URLs). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Options of {@link writeIamNode}. */
export interface IamNodeOptions {
  nodeId: string;
  main: boolean;
  /** Cert modules (default: iam and sm, ECC). */
  modules?: { id: string; algorithm?: "ecc" | "rsa"; maxItems?: number }[];
  /** URLs of the main IAM (secondary nodes). */
  mainPublicUrl?: string;
  mainProtectedUrl?: string;
  /** Extra top-level keys of iam.cfg. */
  extra?: Record<string, unknown>;
}

/** A node's files. */
export interface IamNode {
  dir: string;
  config: string;
  nodeId: string;
  publicUrl: string;
  protectedUrl: string;
  certsDir: string;
  workingDir: string;
  subjectsPath: string;
}

/** Writes `iam.cfg` and identity files of one node under `root/<nodeId>`. */
export async function writeIamNode(
  root: string,
  ca: TestCa,
  o: IamNodeOptions,
): Promise<IamNode> {
  const dir = join(root, o.nodeId);
  const etc = join(dir, "etc");
  const workingDir = join(dir, "var/iam");
  const certsDir = join(dir, "var/crypt");
  await Deno.mkdir(etc, { recursive: true });
  await Deno.mkdir(workingDir, { recursive: true });
  await Deno.writeTextFile(join(etc, "machine-id"), `${o.nodeId}\n`);
  await Deno.writeTextFile(join(etc, "system-id"), `system-${o.nodeId}\n`);
  await Deno.writeTextFile(join(etc, "unit_model"), "test-unit;1.0\n");
  const subjectsPath = join(etc, "subjects");
  await Deno.writeTextFile(subjectsPath, "subject1\n");
  const publicUrl = `127.0.0.1:${freePort()}`;
  const protectedUrl = `127.0.0.1:${freePort()}`;
  const modules = o.modules ?? [{ id: "iam" }, { id: "sm" }];
  const cfg = {
    caCert: ca.cert,
    certStorage: "iam",
    iamPublicServerUrl: publicUrl,
    iamProtectedServerUrl: protectedUrl,
    workingDir,
    nodeReconnectInterval: "1s",
    ...(o.mainPublicUrl ? { mainIamPublicServerUrl: o.mainPublicUrl } : {}),
    ...(o.mainProtectedUrl ? { mainIamProtectedServerUrl: o.mainProtectedUrl } : {}),
    nodeInfo: {
      nodeIdPath: join(etc, "machine-id"),
      nodeName: o.nodeId,
      nodeType: o.main ? "main" : "secondary",
      maxDmips: 1000,
      provisioningStatePath: join(workingDir, ".provisionstate"),
      attrs: o.main ? { MainNode: "", AosComponents: "cm,iam,sm" } : { AosComponents: "iam,sm" },
    },
    identifier: {
      plugin: "fileidentifier",
      params: {
        systemIdPath: join(etc, "system-id"),
        unitModelPath: join(etc, "unit_model"),
        subjectsPath,
      },
    },
    certModules: modules.map((m) => ({
      id: m.id,
      plugin: "filemodule",
      algorithm: m.algorithm ?? "ecc",
      maxItems: m.maxItems ?? 2,
      extendedKeyUsage: ["clientAuth", "serverAuth"],
      alternativeNames: ["localhost"],
      params: { storagePath: join(certsDir, m.id) },
    })),
    ...o.extra,
  };
  const config = join(etc, "iam.cfg");
  await Deno.writeTextFile(config, JSON.stringify(cfg, null, 2));
  return {
    dir,
    config,
    nodeId: o.nodeId,
    publicUrl,
    protectedUrl,
    certsDir,
    workingDir,
    subjectsPath,
  };
}

/** A unit: a temp root with a test CA. */
export interface TestUnit extends AsyncDisposable {
  root: string;
  ca: TestCa;
  otherCa: TestCa;
}

/** Creates a temp root with a CA and an unrelated CA; removed on dispose. */
export async function makeUnit(): Promise<TestUnit> {
  const root = await Deno.makeTempDir({ prefix: "aos-iam-test-" });
  const pki = join(root, "pki");
  await Deno.mkdir(pki);
  const [ca, otherCa] = await Promise.all([
    makeTestCa(pki, "Aos Test Root CA"),
    makeTestCa(pki, "Other Root CA"),
  ]);
  return {
    root,
    ca,
    otherCa,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

/** A running `iam` process under its permission manifest. */
export class IamProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly node: IamNode;
  #log = "";
  #reading: Promise<void>;
  #exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  private constructor(child: Deno.ChildProcess, node: IamNode) {
    this.child = child;
    this.node = node;
    this.status = child.status.then((s) => {
      this.#exited = true;
      return s;
    });
    this.#reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        this.#log += decoder.decode(chunk, { stream: true });
        if (Deno.env.get("IAM_TEST_LOG")) {
          Deno.stderr.writeSync(
            new TextEncoder().encode(`[${node.nodeId}] ${decoder.decode(chunk)}`),
          );
        }
      }
    })();
  }

  /**
   * Starts `iam -c <config> [-p]` with the flags of its manifest; waits for "iam started".
   * `main` runs another entry module, e.g. the bundle `compile.ts` writes.
   */
  static async start(
    node: IamNode,
    provisioning: boolean,
    extraArgs: string[] = [],
    main?: string,
  ): Promise<IamProcess> {
    const { args } = await commandFor("iam", [
      "-c",
      node.config,
      ...(provisioning ? ["-p"] : []),
      ...extraArgs,
    ], { main });
    const child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const p = new IamProcess(child, node);
    await p.waitFor(/ iam started /, 20_000).catch(async (err) => {
      await p[Symbol.asyncDispose]();
      throw err;
    });
    return p;
  }

  /** Everything the process logged so far. */
  get log(): string {
    return this.#log;
  }

  /** The process ID. */
  get pid(): number {
    return this.child.pid;
  }

  /** Waits until the log matches `re` (or fails naming what was logged). */
  async waitFor(re: RegExp, limitMs = 15_000, from = 0): Promise<void> {
    const deadline = Date.now() + limitMs;
    while (!re.test(this.#log.slice(from))) {
      if (this.#exited) throw new Error(`iam exited while waiting for ${re}:\n${this.#log}`);
      if (Date.now() > deadline) throw new Error(`gave up waiting for ${re}:\n${this.#log}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Sends a signal and waits for the exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (!this.#exited) {
      try {
        this.child.kill(signal);
      } catch {
        // Already exited.
      }
    }
    const status = await this.status;
    await this.#reading;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

/** Typed clients of all iamanager services for one server. */
export interface IamClients extends Disposable {
  version: InstanceType<typeof IAMVersionServiceClient>;
  currentNode: InstanceType<typeof IAMPublicCurrentNodeServiceClient>;
  cert: InstanceType<typeof IAMPublicCertServiceClient>;
  identity: InstanceType<typeof IAMPublicIdentityServiceClient>;
  publicNodes: InstanceType<typeof IAMPublicNodesServiceClient>;
  nodes: InstanceType<typeof IAMNodesServiceClient>;
  provisioning: InstanceType<typeof IAMProvisioningServiceClient>;
  certificate: InstanceType<typeof IAMCertificateServiceClient>;
}

/** Opens clients of every service at `url`. */
export async function iamClients(url: string, security: ClientSecurity): Promise<IamClients> {
  const make = <C extends grpc.Client>(ctor: GrpcClientConstructor<C>) =>
    createGrpcClient(ctor, url, { security });
  const clients = {
    version: await make(IAMVersionServiceClient),
    currentNode: await make(IAMPublicCurrentNodeServiceClient),
    cert: await make(IAMPublicCertServiceClient),
    identity: await make(IAMPublicIdentityServiceClient),
    publicNodes: await make(IAMPublicNodesServiceClient),
    nodes: await make(IAMNodesServiceClient),
    provisioning: await make(IAMProvisioningServiceClient),
    certificate: await make(IAMCertificateServiceClient),
  };
  return {
    ...clients,
    [Symbol.dispose]() {
      for (const c of Object.values(clients)) c.close();
    },
  };
}

/** Calls a unary method bound to its client, with a 20 s deadline. */
export function call<Req, Res>(
  client: grpc.Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
): Promise<Res> {
  return callUnary(method.bind(client), request, { timeoutMs: 20_000 });
}

/** Throws the `error` of a response, if any. */
export function ok<T extends { error: ErrorInfo | undefined }>(res: T): T {
  const err = fromErrorInfo(res.error);
  if (err) throw err;
  return res;
}

/** Signs a PEM CSR with `ca` (extensions of the CSR copied); returns the PEM chain. */
export async function signCsr(
  ca: TestCa,
  csrPem: string,
  options: { days?: number; withCa?: boolean } = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: ca.dir });
  try {
    const csr = join(dir, "req.csr");
    const out = join(dir, "cert.pem");
    await Deno.writeTextFile(csr, csrPem);
    const serial = "0x" +
      Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0"))
        .join("").replace(/^./, "1");
    await openssl([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-set_serial",
      serial,
      "-days",
      String(options.days ?? 30),
      "-copy_extensions",
      "copyall",
      "-out",
      out,
    ]);
    const leaf = await Deno.readTextFile(out);
    return options.withCa ? leaf + await Deno.readTextFile(ca.cert) : leaf;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Serial (lowercase hex, no leading zero bytes) of the first certificate of a PEM text. */
export async function serialOf(pem: string): Promise<string> {
  const out = await openssl(["x509", "-noout", "-serial"], { stdin: pem });
  return out.trim().replace(/^serial=/, "").toLowerCase().replace(/^(00)+(?=..)/, "");
}

/** Provisions a node through `clients` (node `nodeId`, "" = the server's own node). */
export async function provisionNode(
  c: IamClients,
  ca: TestCa,
  nodeId: string,
  password: string,
): Promise<Map<string, string>> {
  const { types } = await call(c.provisioning, c.provisioning.getCertTypes, { nodeId });
  ok(await call(c.provisioning, c.provisioning.startProvisioning, { nodeId, password }));
  const serials = new Map<string, string>();
  for (const type of types) {
    const { csr } = ok(
      await call(c.certificate, c.certificate.createKey, { nodeId, type, subject: "", password }),
    );
    const chain = await signCsr(ca, csr);
    const res = ok(
      await call(c.certificate, c.certificate.applyCert, { nodeId, type, cert: chain }),
    );
    serials.set(type, new TextDecoder().decode(res.certInfo!.serial));
  }
  ok(await call(c.provisioning, c.provisioning.finishProvisioning, { nodeId, password }));
  return serials;
}

/** Waits until `cond` holds (polling), failing with `what`. */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  limitMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A small in-process IAM for client tests: public server (server-only TLS or plaintext) and
 * protected server (mTLS or plaintext) with the generated `iamanager.v6` service definitions.
 * Answers come from plain fields the test sets; server streams are fanned out by `push*`.
 * It records each protected call with the serial of the client certificate presented.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { pathToFileURL } from "node:url";
import {
  type CertInfo,
  IAMCertificateServiceService,
  IAMNodesServiceService,
  IAMPermissionsServiceService,
  IAMProvisioningServiceService,
  IAMPublicCertServiceService,
  IAMPublicCurrentNodeServiceService,
  IAMPublicIdentityServiceService,
  IAMPublicNodesServiceService,
  type NodeInfo,
  type Subjects,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import type { ErrorInfo } from "@aos/proto/common/v2/common.ts";
import { AosError } from "../../core/errors.ts";
import {
  createGrpcServer,
  type GrpcServer,
  type GrpcService,
  unaryHandler,
} from "../../grpc/mod.ts";
import type { CertFiles } from "../../testing/mod.ts";

/** A NodeInfo with only id and state set. */
export function nodeInfo(nodeId: string, state = "provisioned"): NodeInfo {
  return {
    nodeId,
    nodeType: "test",
    title: nodeId,
    maxDmips: 1000n,
    totalRam: 1n << 30n,
    physicalRam: 0n,
    osInfo: undefined,
    cpus: [],
    partitions: [],
    attrs: [],
    state,
    error: undefined,
  };
}

/** CertInfo pointing at `files` (as IAM's file storage would answer). */
export function certInfoOf(type: string, files: CertFiles): CertInfo {
  return {
    type,
    certUrl: pathToFileURL(files.cert).href,
    keyUrl: pathToFileURL(files.key).href,
    serial: new Uint8Array(),
    issuer: new Uint8Array(),
  };
}

/** One recorded protected call. */
export interface RecordedCall {
  method: string;
  /** Lowercase hex serial of the client certificate ("" when none was presented). */
  peerSerial: string;
}

/** Options of {@link startFakeIam}. */
export interface FakeIamOptions {
  /** IAM's server certificate; absent: both servers plaintext (provisioning mode). */
  server?: CertFiles;
  /** CA client certificates must chain to (protected server). */
  ca?: string;
  /** Ports to bind (a restart reuses the old ones); default ephemeral. */
  publicPort?: number;
  protectedPort?: number;
}

/** The fake IAM; mutate the public fields to change answers. */
export class FakeIam implements AsyncDisposable {
  /** GetCert answers by type. */
  certs = new Map<string, CertInfo>();
  /** GetCurrentNodeInfo answer. */
  currentNode: NodeInfo = nodeInfo("main");
  /** GetNodeInfo answers by id (unknown ids: NOT_FOUND). */
  nodes = new Map<string, NodeInfo>([["main", nodeInfo("main")]]);
  /** GetSubjects answer. */
  subjects: string[] = ["subject1"];
  /** Set to answer the next provisioning/cert calls with this ErrorInfo. */
  responseError: ErrorInfo | undefined;
  /** Protected calls in order. */
  readonly calls: RecordedCall[] = [];
  /** Registered instances: key → secret. */
  readonly instances = new Map<string, string>();

  #options: FakeIamOptions;
  #servers: GrpcServer[] = [];
  #certStreams = new Set<grpc.ServerWritableStream<{ type: string }, CertInfo>>();
  #nodeStreams = new Set<grpc.ServerWritableStream<unknown, NodeInfo>>();
  #subjectStreams = new Set<grpc.ServerWritableStream<unknown, Subjects>>();

  constructor(options: FakeIamOptions) {
    this.#options = options;
  }

  /** Bound ports (valid after {@link start}). */
  publicPort = 0;
  protectedPort = 0;

  /** `127.0.0.1:<public port>`. */
  get publicUrl(): string {
    return `127.0.0.1:${this.publicPort}`;
  }

  /** `127.0.0.1:<protected port>`. */
  get protectedUrl(): string {
    return `127.0.0.1:${this.protectedPort}`;
  }

  /** Open cert-change streams of `type` (to wait for a (re)subscription). */
  certSubscribers(type: string): number {
    return [...this.#certStreams].filter((s) => s.request.type === type).length;
  }

  /** Open node-change streams. */
  get nodeSubscribers(): number {
    return this.#nodeStreams.size;
  }

  /** Open subjects-change streams. */
  get subjectSubscribers(): number {
    return this.#subjectStreams.size;
  }

  /** Sets the cert of `type` and tells its subscribers. */
  pushCert(info: CertInfo): void {
    this.certs.set(info.type, info);
    for (const s of this.#certStreams) if (s.request.type === info.type) s.write(info);
  }

  /** Tells node subscribers. */
  pushNode(info: NodeInfo): void {
    this.nodes.set(info.nodeId, info);
    for (const s of this.#nodeStreams) s.write(info);
  }

  /** Tells subjects subscribers. */
  pushSubjects(subjects: string[]): void {
    this.subjects = subjects;
    for (const s of this.#subjectStreams) s.write({ subjects });
  }

  /** Binds both servers (on the previous ports after a {@link stop}). */
  async start(): Promise<void> {
    const { server, ca } = this.#options;
    const publicSecurity = server
      ? { mode: "tls" as const, cert: server.cert, key: server.key }
      : { mode: "insecure" as const };
    const protectedSecurity = server && ca
      ? { mode: "mtls" as const, cert: server.cert, key: server.key, ca }
      : { mode: "insecure" as const };
    const pub = await createGrpcServer({
      address: `127.0.0.1:${this.publicPort || this.#options.publicPort || 0}`,
      security: publicSecurity,
      services: this.#publicServices(),
      shutdownTimeoutMs: 500,
    });
    this.#servers.push(pub);
    this.publicPort = pub.port;
    const prot = await createGrpcServer({
      address: `127.0.0.1:${this.protectedPort || this.#options.protectedPort || 0}`,
      security: protectedSecurity,
      services: [...this.#publicServices(), ...this.#protectedServices()],
      shutdownTimeoutMs: 500,
    });
    this.#servers.push(prot);
    this.protectedPort = prot.port;
  }

  /** Ends every stream with OK (as IAM does when it stops) and shuts both servers down. */
  async stop(): Promise<void> {
    for (const set of [this.#certStreams, this.#nodeStreams, this.#subjectStreams]) {
      for (const s of set) s.end();
      set.clear();
    }
    await Promise.all(this.#servers.splice(0).map((s) => s.shutdown()));
  }

  /** Same as {@link stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #record(
    method: string,
    call: { getAuthContext(): { sslPeerCertificate?: { serialNumber?: string } } },
  ): void {
    const serial = call.getAuthContext().sslPeerCertificate?.serialNumber ?? "";
    this.calls.push({ method, peerSerial: serial.toLowerCase() });
  }

  // deno-lint-ignore no-explicit-any
  #stream<T>(set: Set<grpc.ServerWritableStream<any, T>>) {
    // deno-lint-ignore no-explicit-any
    return (call: grpc.ServerWritableStream<any, T>) => {
      set.add(call);
      call.on("cancelled", () => set.delete(call));
    };
  }

  #publicServices(): GrpcService[] {
    return [
      {
        definition: IAMPublicCertServiceService,
        implementation: {
          getCert: unaryHandler((req: { type: string }) => {
            const info = this.certs.get(req.type);
            if (!info) throw new AosError("notFound", `no cert of type "${req.type}"`);
            return info;
          }),
          subscribeCertChanged: this.#stream(this.#certStreams),
        },
      },
      {
        definition: IAMPublicIdentityServiceService,
        implementation: {
          getSystemInfo: unaryHandler(() => ({
            systemId: "system-1",
            unitModel: "model;1.0",
            version: "9.1.0",
          })),
          getSubjects: unaryHandler(() => ({ subjects: this.subjects })),
          subscribeSubjectsChanged: this.#stream(this.#subjectStreams),
        },
      },
      {
        definition: IAMPublicCurrentNodeServiceService,
        implementation: {
          getCurrentNodeInfo: unaryHandler(() => this.currentNode),
          subscribeCurrentNodeChanged: this.#stream(new Set()),
        },
      },
      {
        definition: IAMPublicNodesServiceService,
        implementation: {
          getAllNodeIDs: unaryHandler(() => ({ ids: [...this.nodes.keys()] })),
          getNodeInfo: unaryHandler((req: { nodeId: string }) => {
            const info = this.nodes.get(req.nodeId);
            if (!info) throw new AosError("notFound", `node "${req.nodeId}" not found`);
            return info;
          }),
          subscribeNodeChanged: this.#stream(this.#nodeStreams),
          registerNode: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.end(),
        },
      },
    ];
  }

  #protectedServices(): GrpcService[] {
    const error = () => this.responseError;
    return [
      {
        definition: IAMPermissionsServiceService,
        implementation: {
          registerInstance: unaryHandler(
            (req: { instance?: { itemId: string; instance: bigint } }, call) => {
              this.#record("RegisterInstance", call);
              const key = `${req.instance?.itemId}/${req.instance?.instance}`;
              const secret = this.instances.get(key) ?? crypto.randomUUID();
              this.instances.set(key, secret);
              return { secret };
            },
          ),
          unregisterInstance: unaryHandler(
            (req: { instance?: { itemId: string; instance: bigint } }, call) => {
              this.#record("UnregisterInstance", call);
              const key = `${req.instance?.itemId}/${req.instance?.instance}`;
              // Upstream answers INTERNAL for an unknown instance.
              if (!this.instances.delete(key)) {
                throw Object.assign(new Error(`instance ${key} not found`), {
                  code: grpc.status.INTERNAL,
                  details: `instance ${key} not found`,
                });
              }
              return {};
            },
          ),
        },
      },
      {
        definition: IAMCertificateServiceService,
        implementation: {
          createKey: unaryHandler((req: { nodeId: string; type: string }, call) => {
            this.#record("CreateKey", call);
            return {
              nodeId: req.nodeId,
              type: req.type,
              csr: "-----BEGIN CERTIFICATE REQUEST-----\n",
              error: error(),
            };
          }),
          applyCert: unaryHandler((req: { nodeId: string; type: string }, call) => {
            this.#record("ApplyCert", call);
            return {
              nodeId: req.nodeId,
              certInfo: {
                type: req.type,
                certUrl: "file:///x.pem",
                keyUrl: "",
                serial: new TextEncoder().encode("0a1b"),
                issuer: new Uint8Array([48, 0]),
              },
              error: error(),
            };
          }),
        },
      },
      {
        definition: IAMProvisioningServiceService,
        implementation: {
          getCertTypes: unaryHandler((_req, call) => {
            this.#record("GetCertTypes", call);
            return { types: ["online", "sm"] };
          }),
          startProvisioning: unaryHandler((_req, call) => {
            this.#record("StartProvisioning", call);
            return { error: error() };
          }),
          finishProvisioning: unaryHandler((_req, call) => {
            this.#record("FinishProvisioning", call);
            return { error: error() };
          }),
          deprovision: unaryHandler((_req, call) => {
            this.#record("Deprovision", call);
            return { error: error() };
          }),
        },
      },
      {
        definition: IAMNodesServiceService,
        implementation: {
          pauseNode: unaryHandler((_req, call) => {
            this.#record("PauseNode", call);
            return { error: error() };
          }),
          resumeNode: unaryHandler((_req, call) => {
            this.#record("ResumeNode", call);
            return { error: error() };
          }),
        },
      },
    ];
  }
}

/** Creates and starts a {@link FakeIam}. */
export async function startFakeIam(options: FakeIamOptions): Promise<FakeIam> {
  const iam = new FakeIam(options);
  await iam.start();
  return iam;
}

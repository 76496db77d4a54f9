/**
 * The public and the protected gRPC server of IAM, and their restart on a new certificate.
 *
 * Normal mode: public = server-only TLS, protected = mutual TLS against `caCert`, both with the
 * newest certificate of IAM's own cert type. Provisioning mode: both plaintext. When IAM's
 * certificate changes, both servers are rebuilt on the new one after a short delay (upstream
 * 1 s) without restarting the process; credentials are loaded before anything stops, so a bad
 * new certificate leaves the old servers running.
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { Mutex, retry } from "@aos/shared/core";
import { AosError } from "@aos/shared/errors";
import {
  createGrpcServer,
  type GrpcServer,
  type GrpcService,
  loadServerCredentials,
  type ServerSecurity,
} from "@aos/shared/grpc";
import type { Logger } from "@aos/shared/logger";
import type { ServerKind } from "./node_controller.ts";
import { listenAddress } from "./address.ts";
import { MAX_MESSAGE_BYTES } from "./validation.ts";

/** Security of both servers. */
export interface IamServerSecurity {
  public: ServerSecurity;
  protected: ServerSecurity;
}

/** Options of {@link IamServers.start}. */
export interface IamServersOptions {
  /** `host:port` (`:port` = all interfaces; port 0 = ephemeral, kept across restarts). */
  publicUrl: string;
  protectedUrl: string;
  /** Resolves the current security (re-read on every restart, e.g. the newest cert files). */
  security: () => Promise<IamServerSecurity>;
  /** The services of a server. */
  services: (server: ServerKind) => GrpcService[];
  /** Ends long-lived streams (subscriptions, node streams) before the servers stop. */
  endStreams: () => void;
  logger: Logger;
  /** Grace for running unary calls on stop, ms (default 2 000). */
  shutdownTimeoutMs?: number;
}

/** The two running IAM servers. */
export class IamServers implements AsyncDisposable {
  readonly #o: IamServersOptions;
  readonly #mutex = new Mutex();
  #public: GrpcServer;
  #protected: GrpcServer;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** The old servers are stopped and the new ones are not bound yet. */
  #down = false;
  #restarts = 0;

  private constructor(o: IamServersOptions, pub: GrpcServer, prot: GrpcServer) {
    this.#o = o;
    this.#public = pub;
    this.#protected = prot;
  }

  /** Binds both servers. */
  static async start(o: IamServersOptions): Promise<IamServers> {
    const security = await o.security();
    const creds = await loadBoth(security);
    const pub = await bind(o, "public", o.publicUrl, creds.public);
    let prot: GrpcServer;
    try {
      prot = await bind(o, "protected", o.protectedUrl, creds.protected);
    } catch (err) {
      await pub.shutdown();
      throw err;
    }
    o.logger.info("IAM servers started", {
      public: pub.address,
      protected: prot.address,
      security: `${security.public.mode}/${security.protected.mode}`,
    });
    return new IamServers(o, pub, prot);
  }

  /** Port of the public server. */
  get publicPort(): number {
    return this.#public.port;
  }

  /** Port of the protected server. */
  get protectedPort(): number {
    return this.#protected.port;
  }

  /** How many times the servers were rebuilt. */
  get restarts(): number {
    return this.#restarts;
  }

  /** Restarts both servers after `delayMs`; calls within the delay fold into one restart. */
  scheduleRestart(delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      this.restart().catch((err) => {
        this.#o.logger.error("IAM servers restart failed", { error: err });
        // Stopped but not bound again: keep trying rather than stay unreachable.
        if (this.#down) this.scheduleRestart(RETRY_RESTART_MS);
      });
    }, delayMs);
  }

  /** Rebuilds both servers with freshly resolved security, on the same ports. */
  restart(): Promise<void> {
    return this.#mutex.run(async () => {
      if (this.#stopped) return;
      let creds: { public: grpc.ServerCredentials; protected: grpc.ServerCredentials };
      try {
        creds = await loadBoth(await this.#o.security());
      } catch (err) {
        throw new AosError(
          "failed",
          `Cannot restart IAM servers, keeping the running ones: ${(err as Error).message}`,
          { cause: err },
        );
      }
      this.#o.logger.info("restarting IAM servers on new credentials");
      if (!this.#down) await this.#stopServers();
      this.#down = true;
      // Keep the bound ports so clients find the servers again (matters for port 0); the
      // old sockets may take a moment to be released.
      const again = (kind: ServerKind, url: string, port: number, c: grpc.ServerCredentials) =>
        retry(() => bind(this.#o, kind, withPort(url, port), c), {
          tries: 10,
          initialDelayMs: 100,
          maxDelayMs: 1_000,
        });
      const pub = await again("public", this.#o.publicUrl, this.#public.port, creds.public);
      let prot: GrpcServer;
      try {
        prot = await again(
          "protected",
          this.#o.protectedUrl,
          this.#protected.port,
          creds.protected,
        );
      } catch (err) {
        await pub.shutdown();
        throw err;
      }
      this.#public = pub;
      this.#protected = prot;
      this.#down = false;
      this.#restarts++;
      this.#o.logger.info("IAM servers restarted", {
        public: this.#public.address,
        protected: this.#protected.address,
      });
    });
  }

  async #stopServers(): Promise<void> {
    this.#o.endStreams();
    // Give the trailers of the ended streams a moment to leave before the connections go.
    await new Promise((r) => setTimeout(r, STREAM_FLUSH_MS));
    await Promise.all([this.#public.shutdown(), this.#protected.shutdown()]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restartTimer);
    await this.#mutex.run(() => this.#down ? undefined : this.#stopServers());
  }
}

/** Wait before another attempt when a restart could not bind the servers again, ms. */
const RETRY_RESTART_MS = 5_000;

/** Time between ending the long-lived streams and dropping the connections, ms. */
const STREAM_FLUSH_MS = 100;

function withPort(url: string, port: number): string {
  return url.replace(/:\d+$/, `:${port}`);
}

async function loadBoth(s: IamServerSecurity) {
  const [pub, prot] = await Promise.all([
    loadServerCredentials(s.public),
    loadServerCredentials(s.protected),
  ]);
  return { public: pub, protected: prot };
}

async function bind(
  o: IamServersOptions,
  kind: ServerKind,
  address: string,
  security: grpc.ServerCredentials,
): Promise<GrpcServer> {
  const server = await createGrpcServer({
    address: listenAddress(address),
    security,
    services: o.services(kind),
    shutdownTimeoutMs: o.shutdownTimeoutMs ?? 2_000,
    options: {
      "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    },
    logger: o.logger.child({ server: kind }),
  });
  return server;
}

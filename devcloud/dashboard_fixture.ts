/**
 * Test fixture: a fake unit talking to a real devcloud through CM's real `CloudLink` (mTLS
 * discovery + WSS), sending the full unit status on connect as CM does. Used by the dashboard
 * tests only.
 * @module
 */
import {
  buildUnitStatus,
  type InstanceStatus,
  type NodeInfo,
  type UnitStatus,
} from "@aos/shared/cloudprotocol";
import { CloudLink } from "../cm/cloud/mod.ts";
import type { Devcloud } from "./cloud.ts";

/** A node as CM reports it; `title` may carry anything a unit sends. */
export function fakeNode(codename: string, title = codename): NodeInfo {
  return {
    identity: { codename, title },
    nodeGroupSubject: { codename },
    maxDmips: 10000,
    totalRam: 1 << 30,
    osInfo: { os: "linux", features: [] },
    cpus: [],
    attrs: {},
    partitions: [],
    runtimes: [{
      identity: { codename: "runc" },
      runtimeType: "runc",
      archInfo: { architecture: "x86_64" },
      osInfo: { os: "linux", features: [] },
      maxInstances: 0,
    }],
    resources: [],
    state: "provisioned",
    isConnected: true,
  };
}

/** `count` instances of one item on node `node`, the first `failed` ones failed with `error`. */
export function fakeInstances(
  itemId: string,
  subjectId: string,
  version: string,
  node: string,
  count: number,
  failed = 0,
  error = "exit code 1",
): NonNullable<UnitStatus["instances"]>[number] {
  const instances: InstanceStatus[] = [];
  for (let i = 0; i < count; i++) {
    instances.push({
      node: { codename: node },
      runtime: { codename: "runc" },
      instance: i,
      ...(i < failed
        ? { state: "failed" as const, errorInfo: { aosCode: 1, exitCode: 1, message: error } }
        : { state: "active" as const }),
    });
  }
  return { item: { id: itemId }, subject: { id: subjectId }, version, instances };
}

/** Options of {@link connectFakeUnit}. */
export interface FakeUnitOptions {
  /** System id. */
  systemId: string;
  /** The full status sent on every connect. */
  status: () => Omit<UnitStatus, "messageType" | "isDeltaInfo">;
}

/**
 * Issues a unit certificate from devcloud's dev CA and starts a `CloudLink` to it; dispose the
 * link to stop.
 */
export async function connectFakeUnit(
  cloud: Devcloud,
  options: FakeUnitOptions,
): Promise<CloudLink> {
  const unit = await cloud.pki.issueUnitCert(options.systemId, {
    discoveryUrl: cloud.cloudBaseUrl,
  });
  const link = new CloudLink({
    systemId: options.systemId,
    config: {
      serviceDiscoveryUrl: cloud.discoveryUrl,
      overrideServiceDiscoveryUrl: "",
      allowedHosts: [],
    },
    credentials: () => ({ cert: unit.cert, key: unit.key, ca: cloud.pki.rootPem }),
    timing: { responseWaitMs: 3000, reconnectInitialMs: 50, minSessionMs: 0, closeTimeoutMs: 200 },
  });
  link.onMessage(() => {});
  link.on("connect", () => {
    link.send(buildUnitStatus({ isDeltaInfo: false, ...options.status() }));
  });
  link.start();
  return link;
}

/** Polls `cond` every 20 ms until it holds; throws after `limitMs`. */
export async function until(what: string, cond: () => boolean, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

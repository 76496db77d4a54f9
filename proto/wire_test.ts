// Proves the generated code speaks the upstream 9.1.0 wire format: exact
// method paths and streaming kinds, field numbers via hand-computed bytes,
// and lossless binary round trips (bigint beyond 2^53, oneofs, maps, bytes).
import { deepStrictEqual, strictEqual } from "node:assert/strict";

import { ErrorInfo, InstanceFilter, InstanceIdent, ItemType } from "@aos/proto/common/v2/common.ts";
import { APIVersion, IAMVersionServiceService } from "@aos/proto/iamanager/version.ts";
import {
  ApplyCertResponse,
  CertInfo,
  IAMCertificateServiceService,
  IAMIncomingMessages,
  IAMNodesServiceService,
  IAMOutgoingMessages,
  IAMPermissionsServiceService,
  IAMProvisioningServiceService,
  IAMPublicCertServiceService,
  IAMPublicCurrentNodeServiceService,
  IAMPublicIdentityServiceService,
  IAMPublicNodesServiceService,
  IAMPublicPermissionsServiceService,
  NodeInfo,
  PauseNodeResponse,
  PermissionsResponse,
  RegisterInstanceRequest,
  StartProvisioningRequest,
  SystemInfo,
} from "@aos/proto/iamanager/v6/iamanager.ts";
import {
  Alert,
  BlobsInfosRequest,
  ConnectionEnum,
  ProxyOutgoingMessages,
  ProxyServiceService,
  SMIncomingMessages,
  SMOutgoingMessages,
  SMServiceService,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";
import {
  AllocateInstanceNetworkResponse,
  InstanceNetworkUpdateNotification,
  NetworkServiceService,
  SyncNetworkStateRequest,
} from "@aos/proto/servicemanager/v5/network.ts";

type Kind = "unary" | "server-stream" | "client-stream" | "bidi";

interface MethodDef {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** Every RPC of the 9.x local APIs, as listed in spec/grpc-apis.md §1.2–1.3. */
const expectedMethods: ReadonlyArray<readonly [string, Kind]> = [
  ["/iamanager.IAMVersionService/GetAPIVersion", "unary"],
  ["/iamanager.v6.IAMPublicIdentityService/GetSystemInfo", "unary"],
  ["/iamanager.v6.IAMPublicIdentityService/GetSubjects", "unary"],
  ["/iamanager.v6.IAMPublicIdentityService/SubscribeSubjectsChanged", "server-stream"],
  ["/iamanager.v6.IAMPublicCurrentNodeService/GetCurrentNodeInfo", "unary"],
  ["/iamanager.v6.IAMPublicCurrentNodeService/SubscribeCurrentNodeChanged", "server-stream"],
  ["/iamanager.v6.IAMPublicCertService/GetCert", "unary"],
  ["/iamanager.v6.IAMPublicCertService/SubscribeCertChanged", "server-stream"],
  ["/iamanager.v6.IAMPublicPermissionsService/GetPermissions", "unary"],
  ["/iamanager.v6.IAMPublicNodesService/GetAllNodeIDs", "unary"],
  ["/iamanager.v6.IAMPublicNodesService/GetNodeInfo", "unary"],
  ["/iamanager.v6.IAMPublicNodesService/SubscribeNodeChanged", "server-stream"],
  ["/iamanager.v6.IAMPublicNodesService/RegisterNode", "bidi"],
  ["/iamanager.v6.IAMNodesService/PauseNode", "unary"],
  ["/iamanager.v6.IAMNodesService/ResumeNode", "unary"],
  ["/iamanager.v6.IAMProvisioningService/GetCertTypes", "unary"],
  ["/iamanager.v6.IAMProvisioningService/StartProvisioning", "unary"],
  ["/iamanager.v6.IAMProvisioningService/FinishProvisioning", "unary"],
  ["/iamanager.v6.IAMProvisioningService/Deprovision", "unary"],
  ["/iamanager.v6.IAMCertificateService/CreateKey", "unary"],
  ["/iamanager.v6.IAMCertificateService/ApplyCert", "unary"],
  ["/iamanager.v6.IAMPermissionsService/RegisterInstance", "unary"],
  ["/iamanager.v6.IAMPermissionsService/UnregisterInstance", "unary"],
  ["/servicemanager.v5.SMService/RegisterSM", "bidi"],
  ["/servicemanager.v5.SMService/GetBlobsInfos", "unary"],
  ["/servicemanager.v5.ProxyService/RegisterSM", "bidi"],
  ["/servicemanager.v5.NetworkService/GetNodeNetworkParams", "unary"],
  ["/servicemanager.v5.NetworkService/AllocateInstanceNetwork", "unary"],
  ["/servicemanager.v5.NetworkService/ReleaseInstanceNetwork", "unary"],
  ["/servicemanager.v5.NetworkService/ReleaseNodeNetwork", "unary"],
  ["/servicemanager.v5.NetworkService/SubscribeInstanceNetworkUpdates", "server-stream"],
  ["/servicemanager.v5.NetworkService/SyncNetworkState", "unary"],
];

const allServices: ReadonlyArray<Readonly<Record<string, MethodDef>>> = [
  IAMVersionServiceService,
  IAMPublicIdentityServiceService,
  IAMPublicCurrentNodeServiceService,
  IAMPublicCertServiceService,
  IAMPublicPermissionsServiceService,
  IAMPublicNodesServiceService,
  IAMNodesServiceService,
  IAMProvisioningServiceService,
  IAMCertificateServiceService,
  IAMPermissionsServiceService,
  SMServiceService,
  ProxyServiceService,
  NetworkServiceService,
];

function kindOf(def: MethodDef): Kind {
  if (def.requestStream) return def.responseStream ? "bidi" : "client-stream";
  return def.responseStream ? "server-stream" : "unary";
}

Deno.test({
  name: "generated services expose exactly the upstream method paths and streaming kinds",
  permissions: "none",
  fn() {
    const actual = allServices.flatMap((service) =>
      Object.values(service).map((def) => [def.path, kindOf(def)] as const)
    );
    const sortByPath = (a: readonly [string, Kind], b: readonly [string, Kind]) =>
      a[0].localeCompare(b[0]);
    deepStrictEqual([...actual].sort(sortByPath), [...expectedMethods].sort(sortByPath));
  },
});

Deno.test({
  name: "client method names are camelCase while paths keep the wire spelling",
  permissions: "none",
  fn() {
    strictEqual(SMServiceService.registerSm.path, "/servicemanager.v5.SMService/RegisterSM");
    strictEqual(SMServiceService.getBlobsInfos.path, "/servicemanager.v5.SMService/GetBlobsInfos");
    strictEqual(
      IAMVersionServiceService.getApiVersion.path,
      "/iamanager.IAMVersionService/GetAPIVersion",
    );
    strictEqual(
      IAMProvisioningServiceService.startProvisioning.path,
      "/iamanager.v6.IAMProvisioningService/StartProvisioning",
    );
    strictEqual(
      IAMPublicNodesServiceService.registerNode.path,
      "/iamanager.v6.IAMPublicNodesService/RegisterNode",
    );
    strictEqual(
      IAMPublicNodesServiceService.getAllNodeIDs.path,
      "/iamanager.v6.IAMPublicNodesService/GetAllNodeIDs",
    );
  },
});

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function unhex(text: string): Uint8Array {
  return new Uint8Array(text.split(" ").map((b) => parseInt(b, 16)));
}

Deno.test({
  name: "hand-computed wire bytes match field numbers and types",
  permissions: "none",
  fn() {
    // tag(1,varint)=08 5, tag(2,varint)=10 2, tag(3,len)=1a len 1 "x"
    strictEqual(
      hex(ErrorInfo.encode({ aosCode: 5, exitCode: 2, message: "x" }).finish()),
      "08 05 10 02 1a 01 78",
    );
    // item_id "s" (0a), instance 300 as varint ac 02 (18), type 1 (20), preinstalled (28)
    strictEqual(
      hex(
        InstanceIdent.encode({
          itemId: "s",
          subjectId: "",
          instance: 300n,
          type: ItemType.COMPONENT,
          preinstalled: true,
        }).finish(),
      ),
      "0a 01 73 18 ac 02 20 01 28 01",
    );
    // uint64 max and int64 -1 both take the full ten-byte varint.
    strictEqual(
      hex(
        InstanceIdent.encode(InstanceIdent.fromPartial({ instance: 2n ** 64n - 1n })).finish(),
      ),
      "18 ff ff ff ff ff ff ff ff ff 01",
    );
    strictEqual(
      hex(InstanceFilter.encode(InstanceFilter.fromPartial({ instance: -1n })).finish()),
      "18 ff ff ff ff ff ff ff ff ff 01",
    );
    // oneof case 9 (tag 4a) holding ConnectionStatus{cloud_status=CONNECTED}.
    strictEqual(
      hex(
        SMIncomingMessages.encode({
          SMIncomingMessage: {
            $case: "connectionStatus",
            connectionStatus: { cloudStatus: ConnectionEnum.CONNECTED },
          },
        }).finish(),
      ),
      "4a 02 08 01",
    );
    // An empty request message in a oneof must still be sent (case 1, length 0).
    strictEqual(
      hex(
        SMIncomingMessages.encode({
          SMIncomingMessage: { $case: "getNodeConfigStatus", getNodeConfigStatus: {} },
        }).finish(),
      ),
      "0a 00",
    );
    // SM->CM case 4 node_instances_status with one empty InstanceStatus.
    strictEqual(
      hex(
        SMOutgoingMessages.encode(
          SMOutgoingMessages.fromPartial({
            SMOutgoingMessage: {
              $case: "nodeInstancesStatus",
              nodeInstancesStatus: { instances: [{}] },
            },
          }),
        ).finish(),
      ),
      "22 02 0a 00",
    );
  },
});

Deno.test({
  name: "decoding keeps unknown enum numbers and skips unknown fields",
  permissions: "none",
  fn() {
    // type = 2 is not declared in ItemType but C++ peers send it (layer).
    strictEqual(InstanceIdent.decode(unhex("20 02")).type, 2);
    // Field 15 (varint) is unknown to ErrorInfo and must be ignored.
    deepStrictEqual(
      ErrorInfo.decode(unhex("08 05 78 07 1a 01 78")),
      { aosCode: 5, exitCode: 0, message: "x" },
    );
  },
});

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

function roundTrip<T>(codec: Codec<T>, message: T): void {
  const bytes = codec.encode(message).finish();
  deepStrictEqual(codec.decode(bytes), message);
}

/** Above Number.MAX_SAFE_INTEGER, so a lossy number path would corrupt it. */
const big = 2n ** 60n + 7n;
const ident: InstanceIdent = {
  itemId: "item-1",
  subjectId: "subject-1",
  instance: big,
  type: ItemType.SERVICE,
  preinstalled: false,
};
const okError: ErrorInfo = { aosCode: 0, exitCode: 0, message: "" };
const badError: ErrorInfo = { aosCode: 9, exitCode: 16, message: "wrong state [16]" };

Deno.test({
  name: "iamanager messages survive a binary round trip",
  permissions: "none",
  fn() {
    roundTrip(APIVersion, { version: 6n });
    roundTrip(SystemInfo, { systemId: "sys", unitModel: "model;1.0", version: "9.1.0" });
    const nodeInfo: NodeInfo = {
      nodeId: "node0",
      nodeType: "main",
      title: "Main node",
      maxDmips: big,
      totalRam: 2n ** 63n + 1n,
      physicalRam: 2n ** 64n - 1n,
      osInfo: { os: "linux", version: "6.1", features: ["cgroups2"] },
      cpus: [{
        modelName: "cpu",
        numCores: 4n,
        numThreads: 8n,
        archInfo: { architecture: "x86_64", variant: "" },
        maxDmips: big,
      }],
      partitions: [{ name: "var", types: ["storages", "states"], totalSize: big, path: "/var" }],
      attrs: [{ name: "MainNode", value: "" }],
      state: "provisioned",
      error: badError,
    };
    roundTrip(NodeInfo, nodeInfo);
    roundTrip(CertInfo, {
      type: "sm",
      certUrl: "file:///c.pem",
      keyUrl: "pkcs11:object=sm",
      serial: new TextEncoder().encode("0a1b"),
      issuer: new Uint8Array([0x30, 0x00, 0xff]),
    });
    roundTrip(PermissionsResponse, {
      instance: ident,
      permissions: { permissions: { "vis.get": "r", "vis.set": "rw" } },
    });
    roundTrip(RegisterInstanceRequest, {
      instance: ident,
      permissions: { vis: { permissions: { "*": "rw" } }, other: { permissions: {} } },
    });
    roundTrip(IAMOutgoingMessages, { IAMOutgoingMessage: { $case: "nodeInfo", nodeInfo } });
    roundTrip(IAMOutgoingMessages, {
      IAMOutgoingMessage: { $case: "certTypesResponse", certTypesResponse: { types: ["iam"] } },
    });
    roundTrip(IAMIncomingMessages, {
      IAMIncomingMessage: {
        $case: "createKeyRequest",
        createKeyRequest: { nodeId: "node1", subject: "", type: "iam", password: "pw" },
      },
    });
    roundTrip(PauseNodeResponse, { error: badError });
    roundTrip(StartProvisioningRequest, { nodeId: "node0", password: "pw" });
    roundTrip(ApplyCertResponse, {
      nodeId: "node0",
      certInfo: {
        type: "iam",
        certUrl: "file:///iam.pem",
        keyUrl: "",
        serial: new Uint8Array(),
        issuer: new Uint8Array(),
      },
      error: undefined,
    });
  },
});

Deno.test({
  name: "servicemanager messages survive a binary round trip",
  permissions: "none",
  fn() {
    const duration = { seconds: 30n, nanos: 5 };
    roundTrip(SMIncomingMessages, {
      SMIncomingMessage: {
        $case: "updateInstances",
        updateInstances: {
          startInstances: [{
            instance: ident,
            version: "1.0.0",
            manifestDigest: "sha256:" + "ab".repeat(32),
            ownerId: "owner",
            runtimeId: "runc",
            uid: 5000,
            gid: 5000,
            priority: big,
            storagePath: "/s",
            statePath: "/st",
            envVars: [{ name: "A", value: "1" }],
            monitoringParameters: {
              alertRules: {
                ram: { duration, minThreshold: 0.5, maxThreshold: 0.9 },
                cpu: undefined,
                partitions: [{ name: "p", duration, minThreshold: 1, maxThreshold: 2 }],
                download: { duration, minThreshold: big, maxThreshold: big + 1n },
                upload: undefined,
              },
            },
          }],
          stopInstances: [ident],
        },
      },
    });
    roundTrip(SMIncomingMessages, {
      SMIncomingMessage: {
        $case: "instanceLogRequest",
        instanceLogRequest: {
          correlationId: "c1",
          filter: { itemId: "item-1", subjectId: "", instance: -1n },
          from: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)),
          till: undefined,
        },
      },
    });
    roundTrip(SMOutgoingMessages, {
      SMOutgoingMessage: {
        $case: "nodeInstancesStatus",
        nodeInstancesStatus: {
          instances: [{
            instance: ident,
            version: "1.0.0",
            runtimeId: "runc",
            manifestDigest: "sha256:00",
            envVars: [{ name: "A", error: okError }],
            state: "active",
            error: okError,
          }],
        },
      },
    });
    roundTrip(SMOutgoingMessages, {
      SMOutgoingMessage: {
        $case: "smInfo",
        smInfo: {
          nodeId: "node0",
          runtimes: [{
            runtimeId: "runc",
            type: "runc",
            maxDmips: big,
            allowedDmips: big,
            totalRam: big,
            allowedRam: big,
            maxInstances: 10n,
            osInfo: { os: "linux", version: "", features: [] },
            archInfo: { architecture: "amd64", variant: "" },
          }],
          resources: [{ name: "gpu", sharedCount: 2n }],
        },
      },
    });
    roundTrip(SMOutgoingMessages, {
      SMOutgoingMessage: {
        $case: "log",
        log: {
          correlationId: "c1",
          partCount: 2n,
          part: 1n,
          data: new Uint8Array([0x1f, 0x8b, 0]),
          status: "ok",
          error: okError,
        },
      },
    });
    roundTrip(Alert, {
      timestamp: new Date(Date.UTC(2024, 5, 1)),
      AlertItem: {
        $case: "instanceQuotaAlert",
        instanceQuotaAlert: { instance: ident, parameter: "ram", value: big, status: "raise" },
      },
    });
    // The C++ SM can send an alert with no case set.
    roundTrip(Alert, { timestamp: undefined, AlertItem: undefined });
    roundTrip(BlobsInfosRequest, { digests: ["sha256:aa", "sha256:bb"] });
    roundTrip(ProxyOutgoingMessages, { ProxyOutgoingMessage: { $case: "nodeId", nodeId: "n" } });
  },
});

Deno.test({
  name: "network messages survive a binary round trip",
  permissions: "none",
  fn() {
    const rule = { dstIp: "10.0.0.2", dstPort: "80", proto: "tcp", srcIp: "10.0.0.3" };
    roundTrip(AllocateInstanceNetworkResponse, {
      subnet: "10.0.0.0/24",
      ip: "10.0.0.3",
      dnsServers: ["10.0.0.1"],
      error: undefined,
      firewallRules: [rule],
    });
    roundTrip(InstanceNetworkUpdateNotification, {
      update: {
        $case: "pendingFirewallUpdate",
        pendingFirewallUpdate: { instance: ident, firewallRules: [rule] },
      },
    });
    roundTrip(SyncNetworkStateRequest, {
      nodeId: "node0",
      instances: [{ instance: ident, networkId: "net", ip: "10.0.0.3", firewallRules: [rule] }],
    });
  },
});

// Drives the generated grpc-js server definitions and clients over a real
// loopback HTTP/2 connection: one unary call and one bidi exchange with
// oneof envelopes, so serialization hooks and paths are exercised end to end.
import { deepStrictEqual, strictEqual } from "node:assert/strict";

import {
  credentials,
  type sendUnaryData,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
} from "@grpc/grpc-js";

import type { Empty } from "@aos/proto/google/protobuf/empty.ts";
import {
  type APIVersion,
  IAMVersionServiceClient,
  IAMVersionServiceService,
} from "@aos/proto/iamanager/version.ts";
import {
  type BlobsInfos,
  ConnectionEnum,
  type SMIncomingMessages,
  type SMOutgoingMessages,
  SMServiceClient,
  SMServiceService,
} from "@aos/proto/servicemanager/v5/servicemanager.ts";

function bind(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
      if (err) reject(err);
      else resolve(port);
    });
  });
}

function shutdown(server: Server): Promise<void> {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}

Deno.test("IAMVersionService.GetAPIVersion and SMService.RegisterSM work over grpc-js", async () => {
  const server = new Server();
  const seenBySm: SMIncomingMessages[] = [];
  const seenByCm: SMOutgoingMessages[] = [];

  server.addService(IAMVersionServiceService, {
    getApiVersion(_call: ServerUnaryCall<Empty, APIVersion>, done: sendUnaryData<APIVersion>) {
      done(null, { version: 6n });
    },
  });
  server.addService(SMServiceService, {
    // CM side: announce the cloud state at once, then answer the first SMInfo
    // with a request so both directions carry oneof cases.
    registerSm(stream: ServerDuplexStream<SMOutgoingMessages, SMIncomingMessages>) {
      stream.write({
        SMIncomingMessage: {
          $case: "connectionStatus",
          connectionStatus: { cloudStatus: ConnectionEnum.CONNECTED },
        },
      });
      stream.on("data", (msg: SMOutgoingMessages) => {
        seenByCm.push(msg);
        stream.write({
          SMIncomingMessage: { $case: "getNodeConfigStatus", getNodeConfigStatus: {} },
        });
        stream.end();
      });
    },
    getBlobsInfos(_call: ServerUnaryCall<unknown, BlobsInfos>, done: sendUnaryData<BlobsInfos>) {
      done(null, { urls: [] });
    },
  });

  const port = await bind(server);
  const address = `127.0.0.1:${port}`;
  const iam = new IAMVersionServiceClient(address, credentials.createInsecure());
  const cm = new SMServiceClient(address, credentials.createInsecure());
  try {
    const version = await new Promise<APIVersion>((resolve, reject) => {
      iam.getApiVersion({}, (err, res) => err ? reject(err) : resolve(res));
    });
    strictEqual(version.version, 6n);

    const call = cm.registerSm();
    const ended = new Promise<void>((resolve, reject) => {
      call.on("data", (msg: SMIncomingMessages) => {
        seenBySm.push(msg);
        if (msg.SMIncomingMessage?.$case === "connectionStatus") {
          call.write({
            SMOutgoingMessage: {
              $case: "smInfo",
              smInfo: {
                nodeId: "node0",
                runtimes: [],
                resources: [{ name: "r", sharedCount: 2n ** 60n }],
              },
            },
          });
          call.end();
        }
      });
      call.on("error", reject);
      call.on("end", resolve);
    });
    await ended;

    deepStrictEqual(seenBySm.map((m) => m.SMIncomingMessage?.$case), [
      "connectionStatus",
      "getNodeConfigStatus",
    ]);
    deepStrictEqual(seenByCm, [{
      SMOutgoingMessage: {
        $case: "smInfo",
        smInfo: {
          nodeId: "node0",
          runtimes: [],
          resources: [{ name: "r", sharedCount: 2n ** 60n }],
        },
      },
    }]);
  } finally {
    iam.close();
    cm.close();
    await shutdown(server);
  }
});

/**
 * A hand-made raw-bytes gRPC service for tests (independent of the generated protos):
 * `/test.Echo/Echo` answers with its request; how the tests implement it varies.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";

const identity = (b: Buffer): Buffer => b;

/** Service definition with one unary raw-bytes method. */
export const ECHO_SERVICE = {
  echo: {
    path: "/test.Echo/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
} satisfies grpc.ServiceDefinition;

/** Client of {@link ECHO_SERVICE}. */
export interface EchoClient extends grpc.Client {
  echo(
    request: Buffer,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: (err: grpc.ServiceError | null, response?: Buffer) => void,
  ): grpc.ClientUnaryCall;
}

/** Client class for {@link ECHO_SERVICE}. */
export const EchoClient = grpc.makeGenericClientConstructor(
  ECHO_SERVICE,
  "Echo",
) as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => EchoClient;

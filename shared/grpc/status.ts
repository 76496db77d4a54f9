/**
 * AosError <-> gRPC status, through the one mapping table in `core/errors.ts`.
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { AosError, fromGrpcStatus, toAosError, toGrpcStatus } from "../core/errors.ts";

function isStatusError(err: unknown): err is { code: number; details?: unknown } {
  if (err instanceof AosError || err === null || typeof err !== "object") return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === "number" && Number.isInteger(code) && code >= 0 && code <= 16;
}

/**
 * Turns anything thrown by a handler into the error object grpc-js sends as the call status.
 * An error that already carries a gRPC status (e.g. from an upstream call) keeps it.
 */
export function grpcErrorFrom(err: unknown): grpc.ServiceError {
  let status: { code: number; details: string };
  if (isStatusError(err) && err.code !== grpc.status.OK) {
    const details = typeof err.details === "string" ? err.details : String(err);
    status = { code: err.code, details };
  } else {
    status = toGrpcStatus(err);
  }
  return Object.assign(new Error(status.details), {
    code: status.code,
    details: status.details,
    metadata: new grpc.Metadata(),
  });
}

/** Turns an error from a gRPC call into an {@link AosError} (the original as `cause`). */
export function aosErrorFromGrpc(err: unknown): AosError {
  if (!isStatusError(err)) return toAosError(err);
  const details = typeof err.details === "string" ? err.details : "";
  const mapped = fromGrpcStatus(err.code, details);
  return new AosError(mapped.code, mapped.message, { cause: err });
}

/**
 * Adapts an async function to a grpc-js unary handler: its result is the response, and
 * whatever it throws is sent as a status through {@link grpcErrorFrom}.
 */
export function unaryHandler<Req, Res>(
  fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then((res) => callback(null, res), (err) => callback(grpcErrorFrom(err)));
  };
}

/** A grpc-js unary client method (the callback form generated clients have). */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (err: grpc.ServiceError | null, response?: Res) => void,
) => grpc.ClientUnaryCall;

/** Options of {@link callUnary}. */
export interface CallUnaryOptions {
  /** Milliseconds until the call fails with `timeout` (default: no deadline). */
  timeoutMs?: number;
  /** Cancels the call (it then fails with `canceled`). */
  signal?: AbortSignal;
  /** Request metadata. */
  metadata?: grpc.Metadata;
}

/**
 * Calls a unary method and resolves with its response; failures reject with an
 * {@link AosError} mapped from the status. Pass the method bound to its client:
 * `callUnary(client.getCert.bind(client), request, { timeoutMs: 10_000 })`.
 */
export function callUnary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  request: Req,
  options: CallUnaryOptions = {},
): Promise<Res> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(toAosError(signal.reason, "canceled"));
  return new Promise<Res>((resolve, reject) => {
    const callOptions: Partial<grpc.CallOptions> = options.timeoutMs === undefined
      ? {}
      : { deadline: new Date(Date.now() + options.timeoutMs) };
    const onAbort = () => call.cancel();
    const call = method(
      request,
      options.metadata ?? new grpc.Metadata(),
      callOptions,
      (err, response) => {
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(aosErrorFromGrpc(err));
        else if (response === undefined) {
          reject(new AosError("failed", "gRPC call completed without a response"));
        } else resolve(response);
      },
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

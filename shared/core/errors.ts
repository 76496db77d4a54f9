/**
 * One error type for the whole stack, with the upstream AosCore `ErrorEnum` codes.
 *
 * Each transport maps it in exactly one place: {@link toErrorInfo} for `common.v2.ErrorInfo`,
 * {@link toGrpcStatus} for a gRPC status, {@link toCloudErrorInfo} for the cloud `errorInfo`.
 * @module
 */

/** Upstream `ErrorEnum` names in wire order (index = `aos_code`). */
export const ERROR_CODES = [
  "none",
  "failed",
  "runtime",
  "noMemory",
  "outOfRange",
  "notFound",
  "invalidArgument",
  "timeout",
  "alreadyExist",
  "wrongState",
  "invalidChecksum",
  "alreadyLoggedIn",
  "notSupported",
  "eof",
  "canceled",
] as const;

/** A code from the upstream `ErrorEnum`. */
export type ErrorCode = typeof ERROR_CODES[number];

/** Options of an {@link AosError}. */
export interface AosErrorOptions {
  /** The underlying error. */
  cause?: unknown;
  /** errno or process exit code, carried as `exit_code` on the wire. */
  exitCode?: number;
}

/** An error with an upstream error code; the message says what failed and the current state. */
export class AosError extends Error {
  /** The upstream error code. */
  readonly code: ErrorCode;
  /** errno or process exit code (0 when not applicable). */
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options: AosErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AosError";
    this.code = code;
    this.exitCode = options.exitCode ?? 0;
  }
}

/** Index of a code on the wire (`aos_code` / `aosCode`). */
export function errorCodeNumber(code: ErrorCode): number {
  return ERROR_CODES.indexOf(code);
}

/** Code for a wire number; unknown numbers map to `failed`. */
export function errorCodeFromNumber(n: number): ErrorCode {
  return ERROR_CODES[n] ?? "failed";
}

/** Wraps anything thrown into an {@link AosError}, keeping an existing one as is. */
export function toAosError(err: unknown, fallback: ErrorCode = "failed"): AosError {
  if (err instanceof AosError) return err;
  if (err instanceof Error) {
    const errno = (err as { errno?: unknown }).errno;
    return new AosError(fallback, err.message, {
      cause: err,
      ...(typeof errno === "number" ? { exitCode: Math.abs(errno) } : {}),
    });
  }
  return new AosError(fallback, String(err));
}

/** Shape of `common.v2.ErrorInfo` (protobuf field names in camelCase). */
export interface ErrorInfoMessage {
  aosCode: number;
  exitCode: number;
  message: string;
}

/** Maps an error to `common.v2.ErrorInfo`. */
export function toErrorInfo(err: unknown): ErrorInfoMessage {
  const e = toAosError(err);
  return { aosCode: errorCodeNumber(e.code), exitCode: e.exitCode, message: e.message };
}

/** Reads a received `ErrorInfo`; `undefined` when it means success (all zero). */
export function fromErrorInfo(
  info: Partial<ErrorInfoMessage> | undefined | null,
): AosError | undefined {
  if (!info) return undefined;
  const aosCode = info.aosCode ?? 0;
  const exitCode = info.exitCode ?? 0;
  if (aosCode === 0 && exitCode === 0) return undefined;
  // aos_code 0 with an exit code set is errno-based upstream: report it as a runtime error.
  const code = aosCode === 0 ? "runtime" : errorCodeFromNumber(aosCode);
  return new AosError(code, info.message || code, { exitCode });
}

/** Cloud protocol `errorInfo` (C++ writes all three fields whenever there is an error). */
export interface CloudErrorInfo {
  aosCode: number;
  exitCode: number;
  message: string;
}

/** Maps an error to the cloud `errorInfo`. */
export function toCloudErrorInfo(err: unknown): CloudErrorInfo {
  return toErrorInfo(err);
}

/** gRPC status codes (numbers from the gRPC spec). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const GRPC_BY_CODE: Record<ErrorCode, number> = {
  none: GrpcStatus.OK,
  failed: GrpcStatus.INTERNAL,
  runtime: GrpcStatus.INTERNAL,
  noMemory: GrpcStatus.RESOURCE_EXHAUSTED,
  outOfRange: GrpcStatus.OUT_OF_RANGE,
  notFound: GrpcStatus.NOT_FOUND,
  invalidArgument: GrpcStatus.INVALID_ARGUMENT,
  timeout: GrpcStatus.DEADLINE_EXCEEDED,
  alreadyExist: GrpcStatus.ALREADY_EXISTS,
  wrongState: GrpcStatus.FAILED_PRECONDITION,
  invalidChecksum: GrpcStatus.DATA_LOSS,
  alreadyLoggedIn: GrpcStatus.ALREADY_EXISTS,
  notSupported: GrpcStatus.UNIMPLEMENTED,
  eof: GrpcStatus.OUT_OF_RANGE,
  canceled: GrpcStatus.CANCELLED,
};

/**
 * Maps an error to a gRPC status `{code, details}`.
 *
 * Upstream C++ servers answer `INTERNAL` for every failure; clients only look at the message,
 * so a more precise code is compatible and helps our own callers.
 */
export function toGrpcStatus(err: unknown): { code: number; details: string } {
  const e = toAosError(err);
  return { code: GRPC_BY_CODE[e.code], details: e.message };
}

/** Maps a gRPC status back to an {@link AosError}. */
export function fromGrpcStatus(code: number, details: string): AosError {
  const entry = (Object.entries(GRPC_BY_CODE) as [ErrorCode, number][])
    .find(([name, c]) => c === code && name !== "none" && name !== "runtime");
  return new AosError(entry?.[0] ?? "failed", details || `gRPC status ${code}`);
}

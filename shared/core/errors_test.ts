import assert from "node:assert/strict";
import {
  AosError,
  errorCodeNumber,
  fromErrorInfo,
  fromGrpcStatus,
  GrpcStatus,
  toAosError,
  toCloudErrorInfo,
  toErrorInfo,
  toGrpcStatus,
} from "./errors.ts";

const pure = { permissions: "none" } as const;

Deno.test({
  name: "error codes keep the upstream ErrorEnum numbering",
  ...pure,
  fn() {
    assert.deepEqual(errorCodeNumber("none"), 0);
    assert.deepEqual(errorCodeNumber("notFound"), 5);
    assert.deepEqual(errorCodeNumber("invalidArgument"), 6);
    assert.deepEqual(errorCodeNumber("invalidChecksum"), 10);
    assert.deepEqual(errorCodeNumber("canceled"), 14);
  },
});

Deno.test({
  name: "AosError maps to ErrorInfo, cloud errorInfo and gRPC status",
  ...pure,
  fn() {
    const err = new AosError("notFound", 'Cannot get cert "cm": no such storage', { exitCode: 2 });
    assert.deepEqual(toErrorInfo(err), {
      aosCode: 5,
      exitCode: 2,
      message: 'Cannot get cert "cm": no such storage',
    });
    assert.deepEqual(toCloudErrorInfo(err).aosCode, 5);
    assert.deepEqual(toGrpcStatus(err), {
      code: GrpcStatus.NOT_FOUND,
      details: 'Cannot get cert "cm": no such storage',
    });
    assert.deepEqual(fromGrpcStatus(GrpcStatus.NOT_FOUND, "x").code, "notFound");
    assert.deepEqual(fromGrpcStatus(GrpcStatus.INTERNAL, "x").code, "failed");
  },
});

Deno.test({
  name: "ErrorInfo all zero means success; aos_code 0 with errno is an error",
  ...pure,
  fn() {
    assert.deepEqual(fromErrorInfo({ aosCode: 0, exitCode: 0, message: "" }), undefined);
    assert.deepEqual(fromErrorInfo(undefined), undefined);
    const errno = fromErrorInfo({ aosCode: 0, exitCode: 13, message: "permission denied" });
    assert.ok(errno instanceof AosError);
    assert.deepEqual(errno.code, "runtime");
    assert.deepEqual(errno.exitCode, 13);
    assert.deepEqual(fromErrorInfo({ aosCode: 7, exitCode: 0, message: "t" })?.code, "timeout");
    assert.deepEqual(fromErrorInfo({ aosCode: 99, exitCode: 0, message: "?" })?.code, "failed");
  },
});

Deno.test({
  name: "toAosError wraps foreign errors and keeps the cause",
  ...pure,
  fn() {
    const cause = new TypeError("boom");
    const e = toAosError(cause, "runtime");
    assert.deepEqual(e.code, "runtime");
    assert.deepEqual(e.message, "boom");
    assert.deepEqual(e.cause, cause);
    assert.deepEqual(toAosError("text").message, "text");
    const same = new AosError("timeout", "t");
    assert.deepEqual(toAosError(same), same);
  },
});

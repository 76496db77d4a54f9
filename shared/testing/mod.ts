/**
 * Helpers for tests across the workspace. Test-only: never import from production code.
 *
 * {@link makeTestPki} writes a throw-away PKI with the real `openssl` (root CA, server and
 * client certs, and the certs an mTLS server must reject); {@link issueTestCert} issues more.
 * @module
 */
export {
  type CertFiles,
  type IssueOptions,
  issueTestCert,
  makeTestCa,
  makeTestPki,
  type TestCa,
  type TestPki,
} from "./pki.ts";
export { openssl, opensslOk, type OpensslOptions } from "./openssl.ts";

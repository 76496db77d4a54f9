/**
 * Certificate references from IAM (`iamanager.v6.CertInfo`) and the local files they name.
 * @module
 */
import type { CertInfo as CertInfoMessage } from "@aos/proto/iamanager/v6/iamanager.ts";
import { fileURLToPath } from "node:url";
import { AosError } from "../core/errors.ts";

/** A certificate IAM holds for a cert type (storage). */
export interface CertInfo {
  /** Cert type (IAM storage): `online`, `offline`, `iam`, `sm`, `cm`, … */
  type: string;
  /** Where the PEM chain is, normally a `file://` URL into IAM's storage. */
  certUrl: string;
  /** Where the private key is, normally a `file://` URL (empty in `ApplyCert` answers). */
  keyUrl: string;
  /** Serial number as lowercase hex text (empty when IAM did not send it). */
  serial: string;
  /** DER of the issuer name (empty when IAM did not send it). */
  issuer: Uint8Array;
}

/** PEM files for mutual TLS: the component's own certificate and key plus the root CA. */
export interface TlsFiles {
  /** PEM certificate chain of the component. */
  certFile: string;
  /** PEM private key of the component. */
  keyFile: string;
  /** PEM root CA every Aos peer is verified against (`caCert`). */
  caFile: string;
}

const HEX_TEXT = /^[0-9a-fA-F]*$/;

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Decodes a wire `CertInfo`. The serial is a bytes field that C++ IAM fills with hex ASCII; a
 * peer that sends the raw serial bytes instead still yields the hex text.
 */
export function certInfoFromMessage(msg: CertInfoMessage): CertInfo {
  const text = new TextDecoder().decode(msg.serial);
  const serial = HEX_TEXT.test(text) ? text.toLowerCase() : toHex(msg.serial);
  return {
    type: msg.type,
    certUrl: msg.certUrl,
    keyUrl: msg.keyUrl,
    serial,
    issuer: msg.issuer,
  };
}

/**
 * The local path a `file://` URL from IAM names. Other schemes (`pkcs11:` keys of C++ IAM) are
 * refused with `notSupported`: this stack reads keys from files only.
 */
export function pathFromCertUrl(url: string, what: string): string {
  if (url === "") {
    throw new AosError("notFound", `IAM sent no ${what} URL`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new AosError("invalidArgument", `IAM sent an invalid ${what} URL "${url}"`, {
      cause: err,
    });
  }
  if (parsed.protocol !== "file:") {
    throw new AosError(
      "notSupported",
      `Cannot use ${what} URL "${url}" from IAM: only file:// URLs are supported, not ${parsed.protocol}`,
    );
  }
  try {
    return fileURLToPath(parsed);
  } catch (err) {
    throw new AosError(
      "invalidArgument",
      `Cannot use ${what} URL "${url}" from IAM: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The certificate and key files of `info`, with `caFile` added. */
export function tlsFilesFromCertInfo(info: CertInfo, caFile: string): TlsFiles {
  return {
    certFile: pathFromCertUrl(info.certUrl, `"${info.type}" certificate`),
    keyFile: pathFromCertUrl(info.keyUrl, `"${info.type}" key`),
    caFile,
  };
}

/**
 * Conversions between IAM's core types and iamanager.v6 messages.
 * @module
 */
import type { CertInfo as WireCertInfo } from "@aos/proto/iamanager/v6/iamanager.ts";
import type { CertInfo } from "../core/types.ts";

const encoder = new TextEncoder();

/**
 * A core certificate as `iamanager.v6.CertInfo`: `serial` is a bytes field holding lowercase
 * hex text (what C++ sends), `issuer` the raw DER of the issuer name.
 */
export function certInfoToWire(info: CertInfo): WireCertInfo {
  return {
    type: info.type,
    certUrl: info.certUrl,
    keyUrl: info.keyUrl,
    serial: encoder.encode(info.serial),
    issuer: info.issuer,
  };
}

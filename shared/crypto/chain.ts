/**
 * Certificate path building and verification against trusted root CAs.
 *
 * Checks, for every certificate on the path: validity period at `now`; every signature with its
 * issuer's key; issuers are CAs (basicConstraints cA, a trust anchor may lack the extension),
 * carry keyCertSign when they have a keyUsage extension, and respect pathLenConstraint. The
 * leaf's own key usage is not checked (upstream accepts any usage for blob signing). A certificate
 * with a critical extension this code does not process (e.g. nameConstraints) is rejected, as
 * RFC 5280 requires. When an issuer that signed fails a check, path building tries the other
 * candidates (bounded by MAX_PATH_ATTEMPTS) before reporting the first failure.
 * @module
 */
import { AosError } from "../core/errors.ts";
import type { Certificate } from "./certificate.ts";
import { bytesEqual } from "./pem.ts";

/** Most candidate issuers one path search tries. */
const MAX_PATH_ATTEMPTS = 64;

/** Why a chain was rejected. */
export type ChainFailure =
  | "untrusted"
  | "expired"
  | "notYetValid"
  | "badSignature"
  | "notCA"
  | "keyUsage"
  | "pathLength"
  | "unhandledCritical"
  | "weakSignature";

/** A chain verification failure; `reason` tells the kind, the message tells the details. */
export class ChainError extends AosError {
  /** The kind of failure. */
  readonly reason: ChainFailure;

  constructor(reason: ChainFailure, message: string, options: { cause?: unknown } = {}) {
    super("failed", message, options);
    this.reason = reason;
  }
}

/** Options of {@link verifyChain}. */
export interface VerifyChainOptions {
  /** Trusted root CAs (trust anchors). */
  roots: readonly Certificate[];
  /** Untrusted intermediates that may be used to build the path. */
  intermediates?: readonly Certificate[];
  /** Verification time; defaults to the current time. */
  now?: Date;
  /** Longest accepted path, leaf and root included (default 10). */
  maxLength?: number;
}

function namesEqual(a: Certificate, aIsIssuer: boolean, b: Certificate): boolean {
  // a's subject (or issuer) against b's issuer; DER first, text as a fallback for
  // equal names encoded with different string types.
  const left = aIsIssuer ? a.subjectDer : a.issuerDer;
  if (bytesEqual(left, b.issuerDer)) return true;
  const leftText = aIsIssuer ? a.subject : a.issuer;
  return leftText.toLowerCase() === b.issuer.toLowerCase();
}

function keyIdsAgree(issuer: Certificate, child: Certificate): boolean {
  if (!child.authorityKeyId || !issuer.subjectKeyId) return true;
  return child.authorityKeyId === issuer.subjectKeyId;
}

function checkValidity(cert: Certificate, now: Date, prefix: string): void {
  if (cert.unhandledCriticalExtensions.length > 0) {
    throw new ChainError(
      "unhandledCritical",
      `${prefix}: certificate "${cert.subject}" has unhandled critical extension(s) ${
        cert.unhandledCriticalExtensions.join(", ")
      }`,
    );
  }
  if (now.getTime() < cert.notBefore.getTime()) {
    throw new ChainError(
      "notYetValid",
      `${prefix}: certificate "${cert.subject}" is not valid before ${cert.notBefore.toISOString()}`,
    );
  }
  if (now.getTime() > cert.notAfter.getTime()) {
    throw new ChainError(
      "expired",
      `${prefix}: certificate "${cert.subject}" expired at ${cert.notAfter.toISOString()}`,
    );
  }
}

function checkIssuer(
  issuer: Certificate,
  trusted: boolean,
  casBelow: number,
  prefix: string,
): void {
  const isCA = issuer.isCA || (trusted && !issuer.hasBasicConstraints);
  if (!isCA) throw new ChainError("notCA", `${prefix}: issuer "${issuer.subject}" is not a CA`);
  if (issuer.keyUsage && !issuer.keyUsage.includes("keyCertSign")) {
    throw new ChainError(
      "keyUsage",
      `${prefix}: issuer "${issuer.subject}" has no keyCertSign key usage`,
    );
  }
  if (issuer.pathLength !== undefined && casBelow > issuer.pathLength) {
    throw new ChainError(
      "pathLength",
      `${prefix}: issuer "${issuer.subject}" allows ${issuer.pathLength} CA(s) below it, path has ${casBelow}`,
    );
  }
}

/**
 * Builds the path from `leaf` to one of `roots` and verifies it.
 * @returns the chain in order: leaf first, root last
 * @throws ChainError (code `failed`) with a `reason` and a message naming the certificate.
 */
export async function verifyChain(
  leaf: Certificate,
  opts: VerifyChainOptions,
): Promise<Certificate[]> {
  const now = opts.now ?? new Date();
  if (!Number.isFinite(now.getTime())) {
    throw new AosError("invalidArgument", "Cannot verify certificate chain: invalid time");
  }
  const maxLength = opts.maxLength ?? 10;
  const prefix = `Cannot verify certificate chain of "${leaf.subject}"`;
  const isRoot = (c: Certificate) => opts.roots.some((r) => bytesEqual(r.der, c.der));
  // Roots first, so that a root is preferred over a cross-signed intermediate of the same name.
  const pool = [...opts.roots, ...(opts.intermediates ?? [])];
  // Each candidate issuer tried costs a signature check: bound the search (same-name
  // certificates cross-signing each other could otherwise branch at every level).
  let budget = MAX_PATH_ATTEMPTS;
  let exhausted = false;

  /** Extends `chain` (its last certificate verified so far) to a root; throws the first failure. */
  const extend = async (chain: Certificate[]): Promise<Certificate[]> => {
    const current = chain.at(-1)!;
    checkValidity(current, now, prefix);
    if (isRoot(current)) return chain;
    if (chain.length >= maxLength) {
      throw new ChainError(
        "untrusted",
        `${prefix}: chain does not end at the root CA within ${maxLength} certificates`,
      );
    }
    if (current.signatureHash === "sha1") {
      throw new ChainError(
        "weakSignature",
        `${prefix}: "${current.subject}" is signed with SHA-1, which is refused`,
      );
    }
    const candidates = pool.filter((c) =>
      namesEqual(c, true, current) && keyIdsAgree(c, current) &&
      !chain.some((x) => bytesEqual(x.der, c.der))
    );
    if (candidates.length === 0) {
      throw new ChainError(
        "untrusted",
        current.isSelfIssued
          ? `${prefix}: chain does not end at the root CA ("${current.subject}" is self-issued but not a trusted root)`
          : `${prefix}: chain does not end at the root CA (no certificate for issuer "${current.issuer}" of "${current.subject}")`,
      );
    }
    // Another candidate may succeed where the first that signed fails (e.g. an expired
    // re-issue of the same intermediate listed first): report the first failure only when
    // none works.
    let firstFailure: unknown;
    for (const issuer of candidates) {
      if (--budget < 0) {
        exhausted = true;
        throw new ChainError(
          "untrusted",
          `${prefix}: path search gave up after ${MAX_PATH_ATTEMPTS} candidates`,
        );
      }
      if (!(await current.isSignedBy(issuer))) continue;
      try {
        // CAs strictly between the leaf and this issuer (self-issued ones do not count).
        const casBelow = chain.slice(1).filter((c) => !c.isSelfIssued).length;
        checkIssuer(issuer, isRoot(issuer), casBelow, prefix);
        return await extend([...chain, issuer]);
      } catch (err) {
        if (!(err instanceof ChainError) || exhausted) throw err;
        firstFailure ??= err;
      }
    }
    throw firstFailure ?? new ChainError(
      "badSignature",
      `${prefix}: signature of "${current.subject}" does not verify with issuer "${
        candidates[0]?.subject
      }"`,
    );
  };
  return await extend([leaf]);
}

/**
 * Semantic versions as AosCore compares them (node and unit config versions, item versions).
 * @module
 */
import { AosError } from "./errors.ts";

const SEMVER = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** Compares two semver strings (pre-releases sort before the release). */
export function compareSemver(a: string, b: string): number {
  const pa = SEMVER.exec(a);
  const pb = SEMVER.exec(b);
  if (!pa) throw new AosError("invalidArgument", `"${a}" is not a semantic version`);
  if (!pb) throw new AosError("invalidArgument", `"${b}" is not a semantic version`);
  for (let i = 1; i <= 3; i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d !== 0) return Math.sign(d);
  }
  const [ra, rb] = [pa[4], pb[4]];
  if (ra === rb) return 0;
  if (ra === undefined) return 1;
  if (rb === undefined) return -1;
  return ra < rb ? -1 : 1;
}

/** Whether `v` is a semantic version (`1.2.3`, optional `v`, pre-release and build). */
export function isSemver(v: string): boolean {
  return SEMVER.test(v);
}

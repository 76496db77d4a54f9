/**
 * Typed wrapper of `tc` for instance bandwidth limits (sm.md §5.5): a root TBF on the host veth
 * shapes the download; the upload is redirected from the veth's ingress to an IFB device and
 * shaped there by another TBF.
 * @module
 */

import * as z from "zod/mini";
import "../core/zod_en.ts";
import { AosError } from "../core/errors.ts";
import type { CommandRunner } from "../exec/runner.ts";
import type { IpTool } from "./ip.ts";
import { checkIfName, checkNetnsName, ifbName } from "./names.ts";

/** Token-bucket filter parameters, all in bytes. */
export interface TbfParams {
  /** Rate in bytes per second. */
  rateBytesPerSec: number;
  /** Bucket size in bytes. */
  burstBytes: number;
  /** Queue limit in bytes. */
  limitBytes: number;
}

/** Upstream bucket size. */
export const TBF_BURST_BYTES = 12800;

/** TBF for a quota in kbit/s: rate = kbit × 1000 / 8 bytes/s, burst 12800, limit 4 × burst. */
export function tbfFromKbit(kbit: number): TbfParams {
  if (!Number.isSafeInteger(kbit) || kbit <= 0) {
    throw new AosError("invalidArgument", `Invalid bandwidth ${kbit} kbit/s`);
  }
  return {
    rateBytesPerSec: (kbit * 1000) / 8,
    burstBytes: TBF_BURST_BYTES,
    limitBytes: 4 * TBF_BURST_BYTES,
  };
}

const qdiscSchema = z.looseObject({
  kind: z.string(),
  handle: z.string(),
  dev: z.optional(z.string()),
  root: z.optional(z.boolean()),
  parent: z.optional(z.string()),
  options: z.optional(z.record(z.string(), z.unknown())),
});

/** A qdisc of `tc -j qdisc show`. */
export type TcQdisc = z.infer<typeof qdiscSchema>;

const filterSchema = z.looseObject({
  parent: z.optional(z.string()),
  kind: z.optional(z.string()),
  pref: z.optional(z.number()),
  options: z.optional(z.looseObject({
    actions: z.optional(
      z.array(z.looseObject({ kind: z.string(), to_dev: z.optional(z.string()) })),
    ),
  })),
});

/** A filter of `tc -j filter show`. */
export type TcFilter = z.infer<typeof filterSchema>;

/** Options of {@link TcTool}. */
export interface TcToolOptions {
  /** Runs the program. */
  runner: CommandRunner;
  /** The `tc` program as named in the runner's allow-list (default `tc`). */
  program?: string;
  /** Namespace to work in (`tc -n`); host when absent. */
  netns?: string;
  /** Timeout of each call in milliseconds (default 10 s). */
  timeoutMs?: number;
}

function positiveInt(n: number, what: string): string {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new AosError("invalidArgument", `Invalid TBF ${what} ${n}`);
  }
  return String(n);
}

/** `tc` through a {@link CommandRunner}. */
export class TcTool {
  readonly #runner: CommandRunner;
  readonly #program: string;
  readonly #netns: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: TcToolOptions) {
    this.#runner = options.runner;
    this.#program = options.program ?? "tc";
    this.#netns = options.netns === undefined ? undefined : checkNetnsName(options.netns);
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** The same tool working inside `netns`. */
  inNetns(netns: string): TcTool {
    return new TcTool({
      runner: this.#runner,
      program: this.#program,
      netns,
      timeoutMs: this.#timeoutMs,
    });
  }

  async #run(args: string[], allowFailure = false) {
    const full = this.#netns === undefined ? args : ["-n", this.#netns, ...args];
    return await this.#runner.run(this.#program, full, {
      timeoutMs: this.#timeoutMs,
      allowFailure,
    });
  }

  /** Sets (or replaces) the root qdisc of `dev` to a TBF. */
  async setRootTbf(dev: string, tbf: TbfParams): Promise<void> {
    await this.#run([
      "qdisc",
      "replace",
      "dev",
      checkIfName(dev),
      "root",
      "tbf",
      // `bps` is bytes per second in tc's units.
      "rate",
      `${positiveInt(tbf.rateBytesPerSec, "rate")}bps`,
      "burst",
      positiveInt(tbf.burstBytes, "burst"),
      "limit",
      positiveInt(tbf.limitBytes, "limit"),
    ]);
  }

  /** Adds the ingress qdisc (`ffff:`) to `dev` (no-op when present). */
  async addIngress(dev: string): Promise<void> {
    await this.#run(["qdisc", "replace", "dev", checkIfName(dev), "handle", "ffff:", "ingress"]);
  }

  /**
   * Redirects everything arriving on `dev` to `target`'s egress (adds a filter to the ingress
   * qdisc; start from a fresh one, see {@link applyBandwidth}). A u32 match-all is used because
   * the `matchall` classifier is not built into every kernel (it is missing on our CI kernel).
   */
  async redirectIngress(dev: string, target: string): Promise<void> {
    await this.#run([
      "filter",
      "add",
      "dev",
      checkIfName(dev),
      "parent",
      "ffff:",
      "protocol",
      "all",
      "prio",
      "1",
      "u32",
      "match",
      "u32",
      "0",
      "0",
      "action",
      "mirred",
      "egress",
      "redirect",
      "dev",
      checkIfName(target),
    ]);
  }

  /** Removes the root qdisc of `dev` (back to the default); already default is fine. */
  async deleteRoot(dev: string): Promise<void> {
    await this.#deleteQdisc(dev, "root");
  }

  /** Removes the ingress qdisc of `dev` and its filters; absent is fine. */
  async deleteIngress(dev: string): Promise<void> {
    await this.#deleteQdisc(dev, "ingress");
  }

  async #deleteQdisc(dev: string, which: "root" | "ingress"): Promise<void> {
    const r = await this.#run(["qdisc", "del", "dev", checkIfName(dev), which], true);
    if (r.code === 0) return;
    const still = (await this.qdiscShow(dev)).some((q) =>
      // A default root qdisc (handle 0:) is what deleting leaves behind, so it counts as gone.
      which === "root" ? q.root === true && q.handle !== "0:" : q.kind === "ingress"
    );
    if (still) {
      throw new AosError("failed", `Cannot delete ${which} qdisc of ${dev}: ${r.stderr.trim()}`, {
        exitCode: r.code,
      });
    }
  }

  /** Qdiscs of one device or all. */
  async qdiscShow(dev?: string): Promise<TcQdisc[]> {
    const args = ["-j", "qdisc", "show"];
    if (dev !== undefined) args.push("dev", checkIfName(dev));
    const r = await this.#run(args);
    return parseList(z.array(qdiscSchema), r.stdout, "tc qdisc show");
  }

  /** Filters attached to `dev`'s ingress qdisc. */
  async ingressFilters(dev: string): Promise<TcFilter[]> {
    const r = await this.#run(["-j", "filter", "show", "dev", checkIfName(dev), "ingress"]);
    return parseList(z.array(filterSchema), r.stdout, "tc filter show");
  }
}

function parseList<T>(schema: z.ZodMiniType<T[]>, text: string, what: string): T[] {
  let raw: unknown;
  try {
    raw = text.trim() === "" ? [] : JSON.parse(text);
  } catch (err) {
    throw new AosError("failed", `Cannot parse ${what}: invalid JSON`, { cause: err });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new AosError("failed", `Cannot parse ${what}: ${parsed.error.message.slice(0, 300)}`);
  }
  return parsed.data;
}

/** Bandwidth quotas of an instance in kbit/s (`quotas.downloadSpeed` / `uploadSpeed`). */
export interface BandwidthLimits {
  downloadKbit?: number;
  uploadKbit?: number;
}

/**
 * Sets an instance's host veth to exactly these sm.md §5.5 limits (an absent limit is removed):
 * download = root TBF on the veth; upload = the veth's ingress redirected to IFB
 * `ifb-<fnv1a32(veth)>` with a root TBF there. `ip` and `tc` must work in the same namespace.
 * Re-applying converges to the same state. Returns the IFB name when upload is limited.
 */
export async function applyBandwidth(
  tools: { ip: IpTool; tc: TcTool },
  hostVeth: string,
  limits: BandwidthLimits,
): Promise<string | undefined> {
  const { ip, tc } = tools;
  const download = limits.downloadKbit === undefined ? undefined : tbfFromKbit(limits.downloadKbit);
  const upload = limits.uploadKbit === undefined ? undefined : tbfFromKbit(limits.uploadKbit);
  if (download) await tc.setRootTbf(hostVeth, download);
  else await tc.deleteRoot(hostVeth);
  // Start the upload path from scratch: a stale redirect would point at a deleted IFB.
  await tc.deleteIngress(hostVeth);
  const ifb = ifbName(hostVeth);
  await ip.linkDelete(ifb);
  if (!upload) return undefined;
  await ip.linkAddIfb(ifb);
  try {
    await ip.linkSetUp(ifb);
    await tc.setRootTbf(ifb, upload);
    await tc.addIngress(hostVeth);
    await tc.redirectIngress(hostVeth, ifb);
  } catch (err) {
    await tc.deleteIngress(hostVeth).catch(() => {});
    await ip.linkDelete(ifb).catch(() => {});
    throw err;
  }
  return ifb;
}

/**
 * Clears limits: deletes the IFB, the veth's ingress qdisc and root TBF. Absent parts are
 * fine, so this also repairs half-applied state.
 */
export async function clearBandwidth(
  tools: { ip: IpTool; tc: TcTool },
  hostVeth: string,
): Promise<void> {
  const { ip, tc } = tools;
  await ip.linkDelete(ifbName(hostVeth));
  if (await ip.linkExists(hostVeth)) {
    await tc.deleteIngress(hostVeth);
    await tc.deleteRoot(hostVeth);
  }
}

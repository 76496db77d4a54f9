/**
 * Network building blocks for the SM's and CM's network managers.
 *
 * - IPv4 math ({@link Cidr}) and owner-keyed allocators of subnets and host addresses with
 *   JSON state ({@link SubnetAllocator}, {@link HostAllocator}; upstream pools by default).
 * - Typed wrappers of `ip` ({@link IpTool}), `nft` in JSON form ({@link NftTool}, table
 *   `inet aos`) and `tc` ({@link TcTool}, TBF + IFB bandwidth limits), all spawning through the
 *   `CommandRunner` port of `shared/exec`, so a component's `--allow-run` names `ip`, `nft`
 *   and `tc` only.
 * - The names of kernel objects (veth, IFB, bridge, VLAN, firewall chain) from sm.md §5.
 * @module
 */
export * from "./cidr.ts";
export * from "./ip_pool.ts";
export * from "./names.ts";
export * from "./ip.ts";
export * from "./nft.ts";
export * from "./tc.ts";

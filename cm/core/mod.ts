/**
 * CM core: pure launcher logic without I/O. {@link placeInstances} decides which node and
 * runtime runs each desired instance (the Balancer stages of cm.md §7.3, stable across
 * re-plans, with explicit `rebalance`/`repack` modes); {@link IdPool} hands out per-instance
 * UIDs and per-item GIDs from 5000–10000 with JSON state for CM's database.
 * @module
 */
export * from "./placement.ts";
export * from "./id_pool.ts";

/**
 * CM core: the desired-status pipeline as pure logic behind ports, without gRPC, WebSocket or
 * files. {@link placeInstances} decides which node and runtime runs each desired instance (the
 * Balancer stages of cm.md §7.3, stable across re-plans, with explicit `rebalance`/`repack`
 * modes); {@link IdPool} hands out per-instance UIDs and per-item GIDs from 5000–10000 with
 * JSON state for CM's database. {@link UnitConfigManager} checks, persists and pushes the unit
 * config (cm.md §9); {@link Launcher} runs the CM side of RunInstances (placement, ids,
 * per-node `UpdateInstances`, node snapshots, rebalancing; cm.md §7.2); {@link UpdateManager}
 * is the persisted desired-status state machine (cm.md §5); {@link UnitStatusHandler}
 * composes full and delta `unitStatus` messages (cm.md §15). Time goes through {@link Timers}.
 * @module
 */
export * from "./placement.ts";
export * from "./id_pool.ts";
export * from "./timers.ts";
export * from "./unit_config.ts";
export * from "./launcher.ts";
export * from "./update_manager.ts";
export * from "./unit_status.ts";

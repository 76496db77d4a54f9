/**
 * The SM container runtime: OCI containers through real `runc`.
 *
 * The launcher drives a {@link ContainerRuntime} (built with {@link RuncRuntime.create}):
 *
 * - `startInstance(desc)` computes the instance ID ({@link instanceId}: UUID v3 of
 *   `"<itemID>:<subjectID>:<instance>"`), builds `<runtimeDir>/<id>/` (the `config.json` from
 *   {@link buildRuntimeSpec}, a `mounts/` skeleton, the read-only overlay `rootfs/` of the
 *   layers, `layers[0]` top-most) and spawns a foreground `runc run` child. It resolves when runc
 *   reports `running` (`active`); after an early exit it resolves with what the restart policy
 *   decided (`activating` + error while a restart is pending, `failed` + exit code when the
 *   crash-loop limit is hit); preparation errors throw `AosError`.
 * - `stopInstance(id)`: `runc kill TERM`, a grace period (default 10 s), `runc kill KILL`,
 *   `runc delete --force`, unmount, remove the bundle; then `inactive`. Unknown IDs succeed.
 * - `listInstances()`: current statuses. `subscribe(fn)`: every state change
 *   (`activating`/`active`/`inactive`/`failed`). `onExit(fn)`: every container exit with its
 *   exit code (`128 + N` for signal N) and whether it was requested.
 * - `cleanupOrphans()`: at SM start, kills/deletes containers whose bundle is in our runtime
 *   dir but that this object does not own, unmounts leftover overlays and removes bundles.
 *
 * Unrequested exits follow {@link RestartPolicy}: always restart after `restartInterval`, unless
 * that makes more than `startBurst` starts within a sliding `startInterval` window.
 * Container stdout/stderr go to `<logDir>/<id>.log`, rotating at a size cap
 * ({@link RotatingLog}). cgroups live at `/aos/<id>` (per controller on v1); see
 * {@link cgroupFiles}.
 *
 * Programs: `runc` (the configured binary) through both the {@link CommandRunner} and the
 * {@link ProcessSpawner}; `mount` and `umount` through the runner; `mknod` only when `hostBinds`
 * is non-empty (host whiteouts).
 * @module
 */
export * from "./instance_id.ts";
export * from "./bundle.ts";
export * from "./resources.ts";
export * from "./restart_policy.ts";
export * from "./cgroups.ts";
export * from "./log_file.ts";
export * from "./spawn.ts";
export * from "./rootfs.ts";
export * from "./runc.ts";
export * from "./container_runtime.ts";

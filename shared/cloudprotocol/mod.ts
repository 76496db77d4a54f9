/**
 * AosEdge unit ↔ cloud protocol v7 message layer (JSON over WebSocket).
 *
 * Receive with {@link parseCloudMessage}: lenient like the AosCore reader (case-insensitive keys,
 * `null` = absent, unknown keys ignored, missing scalars defaulted) and accepting both the
 * official schema's and AosCore's form wherever they differ (spec §8), normalised to one model.
 * Send with the `build*` functions: they produce exactly what AosCore C++ writes (field names,
 * `YYYY-MM-DDTHH:MM:SS.ffffffZ` timestamps, complete `errorInfo`, instance grouping), wrapped by
 * {@link buildEnvelope}. Pure: no I/O.
 * @module
 */
export * from "./common.ts";
export * from "./cloud_messages.ts";
export * from "./unit_messages.ts";
export * from "./parse.ts";
export * from "./build.ts";
export * from "./build_cloud.ts";

/**
 * OCI image and runtime documents for AosCore: zod schemas and types of the image index,
 * manifest (with the Aos `aosItemConfig` extension), image config, Aos item config and runtime
 * spec `config.json`; media type constants; digest parsing; bounded, validated JSON load and
 * atomic save. All schemas keep unknown keys so a load → save round trip loses nothing.
 * @module
 */
export * from "./media_types.ts";
export * from "./digest.ts";
export * from "./schemas.ts";
export * from "./runtime_spec.ts";
export * from "./json_file.ts";

/** Version of AosCore on Deno, reported by `--version`. */
export const VERSION = "0.1.0";

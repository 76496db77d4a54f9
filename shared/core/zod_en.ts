/**
 * Installs zod's English issue messages process-wide.
 *
 * `zod/mini` loads no locale, so every issue would read "Invalid input"; classic `zod` installed
 * English when imported. Our errors quote issue messages (config keys, cloud message fields,
 * command output), so every module that reports zod issues imports this one for its effect.
 * The setting is global and idempotent.
 * @module
 */
import { config } from "zod/mini";
// The English locale alone: `z.locales.en` would pull every locale (~200 KB of code) into a bundle.
import en from "zod/locales/en";

config(en());

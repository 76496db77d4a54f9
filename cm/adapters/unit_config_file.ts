/**
 * The unit config manager's {@link UnitConfigStore} on `unitConfigFile`: a JSON text file,
 * mode 0600, replaced atomically (temp file in the same directory, then rename), so a crash
 * leaves either the old or the new config, never half of one.
 * @module
 */
import { dirname } from "node:path";
import { AosError } from "@aos/shared/core";
import { MAX_UNIT_CONFIG_SIZE, type UnitConfigStore } from "../core/mod.ts";

/** `unitConfigFile` as a {@link UnitConfigStore}. */
export class UnitConfigFile implements UnitConfigStore {
  readonly #path: string;

  /** Stores at `path` (its directory is created on the first save). */
  constructor(path: string) {
    this.#path = path;
  }

  /** The stored text; `undefined` when the file does not exist. */
  async load(): Promise<string | undefined> {
    let size: number;
    try {
      size = (await Deno.stat(this.#path)).size;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
    if (size > MAX_UNIT_CONFIG_SIZE) {
      throw new AosError(
        "outOfRange",
        `Unit config file ${this.#path} has ${size} bytes, at most ${MAX_UNIT_CONFIG_SIZE}`,
      );
    }
    return await Deno.readTextFile(this.#path);
  }

  /** Replaces the file atomically with mode 0600. */
  async save(text: string): Promise<void> {
    await Deno.mkdir(dirname(this.#path), { recursive: true });
    const tmp = `${this.#path}.tmp`;
    await Deno.writeTextFile(tmp, text, { mode: 0o600 });
    // writeTextFile keeps the mode of an existing temp file; make sure it is private.
    await Deno.chmod(tmp, 0o600);
    await Deno.rename(tmp, this.#path);
  }
}

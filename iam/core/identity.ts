/**
 * File identifier: system ID, unit model and subjects from files. Unlike upstream, changes of
 * the subjects file are noticed and reported to subscribers.
 * @module
 */
import { AosError } from "@aos/shared/errors";
import type { Logger } from "@aos/shared/logger";
import type { IdentProvider, SystemInfo, Unsubscribe } from "./types.ts";

/** Largest identity file read (bytes). */
const MAX_FILE = 64 * 1024;

async function readSmall(path: string): Promise<string> {
  const info = await Deno.stat(path);
  if (info.size > MAX_FILE) {
    throw new AosError("outOfRange", `${path} is too large (${info.size} bytes)`);
  }
  return await Deno.readTextFile(path);
}

/** Paths of the file identifier (iam.cfg `identifier.params`). */
export interface FileIdentifierPaths {
  systemIdPath: string;
  unitModelPath: string;
  subjectsPath: string;
}

/** Parses the unit model file (`model;version`). */
export function parseUnitModel(
  text: string,
  path = "unit model file",
): { unitModel: string; version: string } {
  const parts = text.trim().split(";");
  if (parts.length !== 2) {
    throw new AosError(
      "invalidArgument",
      `${path}: expected "model;version", got "${text.trim().slice(0, 60)}"`,
    );
  }
  return { unitModel: parts[0]!.trim(), version: parts[1]!.trim() };
}

/** Parses the subjects file: one subject per line, blanks ignored. */
export function parseSubjects(text: string): string[] {
  return text.split("\n").map((s) => s.trim()).filter((s) => s !== "");
}

/** Reads identity from files; `watch` (a debounced file watcher) feeds subject changes. */
export class FileIdentifier implements IdentProvider, Disposable {
  readonly #paths: FileIdentifierPaths;
  readonly #logger: Logger;
  #subjects: string[] = [];
  #listeners = new Set<(subjects: string[]) => void>();

  constructor(paths: FileIdentifierPaths, logger: Logger) {
    this.#paths = paths;
    this.#logger = logger;
  }

  /** Loads the subjects once (a missing file means no subjects, as upstream). */
  async init(): Promise<void> {
    this.#subjects = await this.#readSubjects();
  }

  async getSystemInfo(): Promise<SystemInfo> {
    const systemId = (await readSmall(this.#paths.systemIdPath)).trim();
    if (!systemId) throw new AosError("notFound", `${this.#paths.systemIdPath}: empty system ID`);
    const model = parseUnitModel(
      await readSmall(this.#paths.unitModelPath),
      this.#paths.unitModelPath,
    );
    return { systemId, ...model };
  }

  getSubjects(): Promise<string[]> {
    return Promise.resolve([...this.#subjects]);
  }

  subscribeSubjects(listener: (subjects: string[]) => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Re-reads the subjects file; notifies subscribers when the list changed. */
  async reload(): Promise<boolean> {
    const next = await this.#readSubjects();
    if (next.join("\n") === this.#subjects.join("\n")) return false;
    this.#subjects = next;
    this.#logger.info("subjects changed", { count: next.length });
    for (const l of this.#listeners) l([...next]);
    return true;
  }

  /** The subjects file, to be watched by the caller. */
  get subjectsPath(): string {
    return this.#paths.subjectsPath;
  }

  async #readSubjects(): Promise<string[]> {
    try {
      return parseSubjects(await readSmall(this.#paths.subjectsPath));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        this.#logger.warn("subjects file not found: no subjects", {
          path: this.#paths.subjectsPath,
        });
        return [];
      }
      throw err;
    }
  }

  [Symbol.dispose](): void {
    this.#listeners.clear();
  }
}

/** No identifier configured: system info is unavailable, no subjects. */
export class NoIdentifier implements IdentProvider {
  getSystemInfo(): Promise<SystemInfo> {
    return Promise.reject(new AosError("notSupported", "No identifier configured in iam.cfg"));
  }
  getSubjects(): Promise<string[]> {
    return Promise.resolve([]);
  }
  subscribeSubjects(): Unsubscribe {
    return () => {};
  }
}

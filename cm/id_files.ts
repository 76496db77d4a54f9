/**
 * Host account files whose numeric ids the launcher avoids when it hands out instance UIDs and
 * GIDs. Shared by the composition root (which reads them) and the permission manifest (which
 * grants reading exactly these files).
 * @module
 */
import type { Logger } from "@aos/shared/logger";

/** The files, by role. */
export const ID_FILES = { passwd: "/etc/passwd", group: "/etc/group" } as const;

/** Numeric ids (third field) of a passwd or group file; empty when it cannot be read. */
export async function takenIds(path: string, logger: Logger): Promise<Set<number>> {
  const out = new Set<number>();
  try {
    const text = await Deno.readTextFile(path);
    for (const line of text.split("\n").slice(0, 100_000)) {
      const field = line.split(":")[2];
      if (field === undefined || field === "") continue;
      const id = Number(field);
      if (Number.isSafeInteger(id)) out.add(id);
    }
  } catch (err) {
    logger.warn("cannot read host ids; they are not avoided", { path, error: err });
  }
  return out;
}

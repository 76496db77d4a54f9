/**
 * Log archiving for the cloud: log text becomes numbered gzip parts.
 *
 * Each part holds at most `maxPartSize` uncompressed bytes (256 KiB by default), split at line
 * boundaries where a line fits, and is a complete gzip stream that decompresses on its own.
 * A log needing more than `maxPartCount` parts (80 by default) fails with `outOfRange`, which
 * the caller reports as a `LogData` with status `error`; an empty log yields the single empty
 * part that upstream sends with status `empty`.
 *
 * ```ts
 * const archive = await archiveLog(journalLines(from, till));
 * for (const p of archive.parts) send({ part: p.part, partsCount: p.partsCount, data: p.content, status: archive.status });
 * ```
 * @module
 */
export {
  archiveLog,
  DEFAULT_MAX_PART_COUNT,
  DEFAULT_MAX_PART_SIZE,
  type LogArchive,
  type LogArchiveOptions,
  LogArchiver,
  type LogPart,
} from "./archiver.ts";

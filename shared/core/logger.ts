/**
 * Structured logger port with text and JSON-lines output.
 *
 * Components receive a {@link Logger} and derive children with `child({module: "..."})`.
 * Secrets and keys are never passed as fields: callers log identifiers, not material.
 * @module
 */

/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** Structured key/value fields attached to a record. */
export type LogFields = Record<string, unknown>;

/** The logger port. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record. */
  child(fields: LogFields): Logger;
}

/** One log record as handed to a sink. */
export interface LogRecord {
  time: Date;
  level: LogLevel;
  msg: string;
  fields: LogFields;
}

/** Where records go. */
export type LogSink = (record: LogRecord) => void;

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written (default `info`). */
  level?: LogLevel;
  /** `text` (default) or `json` lines. */
  format?: "text" | "json";
  /** Custom sink; default writes to stderr. */
  sink?: LogSink;
  /** Fields on every record. */
  fields?: LogFields;
}

function fieldValue(v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === "bigint") return v.toString();
  return v;
}

/** Formats a record as one human-readable line. */
export function formatText(r: LogRecord): string {
  const extra = Object.entries(r.fields)
    .map(([k, v]) => {
      const val = fieldValue(v);
      const s = typeof val === "string" ? val : JSON.stringify(val);
      return `${k}=${s !== undefined && /[\s"=]/.test(s) ? JSON.stringify(s) : s}`;
    })
    .join(" ");
  return `${r.time.toISOString()} ${r.level.toUpperCase().padEnd(5)} ${r.msg}${
    extra ? " " + extra : ""
  }`;
}

/** Formats a record as one JSON line. */
export function formatJson(r: LogRecord): string {
  const out: Record<string, unknown> = { time: r.time.toISOString(), level: r.level, msg: r.msg };
  for (const [k, v] of Object.entries(r.fields)) out[k] = fieldValue(v);
  return JSON.stringify(out);
}

const encoder = new TextEncoder();

/** Creates a logger writing to stderr (or the given sink). */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = LOG_LEVELS.indexOf(options.level ?? "info");
  const format = options.format === "json" ? formatJson : formatText;
  const sink: LogSink = options.sink ??
    ((r) => Deno.stderr.writeSync(encoder.encode(format(r) + "\n")));
  const make = (base: LogFields): Logger => {
    const write = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(level) < min) return;
      sink({ time: new Date(), level, msg, fields: { ...base, ...fields } });
    };
    return {
      debug: (m, f) => write("debug", m, f),
      info: (m, f) => write("info", m, f),
      warn: (m, f) => write("warn", m, f),
      error: (m, f) => write("error", m, f),
      child: (f) => make({ ...base, ...f }),
    };
  };
  return make(options.fields ?? {});
}

/** A logger that drops everything (tests). */
export const nullLogger: Logger = createLogger({ sink: () => {} });

/** A logger that keeps records in memory (tests). */
export function memoryLogger(level: LogLevel = "debug"): Logger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = createLogger({ level, sink: (r) => records.push(r) });
  return Object.assign(logger, { records });
}

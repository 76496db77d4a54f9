/**
 * The upstream command line shared by all components:
 * `-c/--config <file>`, `-v/--verbose [level]`, `--version`, `-h/--help`, and for some
 * components `-p/--provisioning` and `-j/--journal`.
 * @module
 */
import { AosError } from "./core/errors.ts";
import { LOG_LEVELS, type LogLevel } from "./core/logger.ts";

/** Parsed command line. */
export interface CliArgs {
  config: string;
  logLevel: LogLevel;
  logFormat: "text" | "json";
  provisioning: boolean;
  /** The node's `iam.cfg`, for components that use IAM-issued credentials (ours). */
  iamConfig?: string;
  version: boolean;
  help: boolean;
}

/** What a component accepts beyond the common flags. */
export interface CliSpec {
  /** Program name for the usage text. */
  name: string;
  /** Default config path. */
  defaultConfig: string;
  /** Accepts `-p/--provisioning`. */
  provisioning?: boolean;
  /** Accepts `--iam-config <file>`. */
  iamConfig?: boolean;
}

/** Usage text for `-h`. */
export function usage(spec: CliSpec): string {
  return [
    `Usage: ${spec.name} [options]`,
    "",
    `  -c, --config <file>    config file (default ${spec.defaultConfig})`,
    ...(spec.provisioning
      ? ["  -p, --provisioning     run in provisioning mode (insecure servers)"]
      : []),
    ...(spec.iamConfig
      ? ["      --iam-config <f>   the node's iam.cfg (locates own key files; default: beside -c)"]
      : []),
    "  -v, --verbose [level]  log level: debug, info, warn, error (default info; -v alone = debug)",
    "      --log-format <f>   text (default) or json",
    "      --version          print the version and exit",
    "  -h, --help             print this help and exit",
  ].join("\n");
}

/** Parses `args`; throws an `invalidArgument` {@link AosError} with a one-line message. */
export function parseCli(args: readonly string[], spec: CliSpec): CliArgs {
  const out: CliArgs = {
    config: spec.defaultConfig,
    logLevel: "info",
    logFormat: "text",
    provisioning: false,
    version: false,
    help: false,
  };
  const rest = args[0] === "--" ? args.slice(1) : args;
  for (let i = 0; i < rest.length; i++) {
    const raw = rest[i]!;
    const eq = raw.startsWith("--") ? raw.indexOf("=") : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const inline = eq > 0 ? raw.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = rest[i + 1];
      if (next === undefined || next.startsWith("-")) {
        throw new AosError("invalidArgument", `option ${flag} needs a value`);
      }
      i++;
      return next;
    };
    switch (flag) {
      case "-c":
      case "--config":
        out.config = value();
        break;
      case "--iam-config":
        if (!spec.iamConfig) throw new AosError("invalidArgument", `unknown option "${raw}"`);
        out.iamConfig = value();
        break;
      case "-v":
      case "--verbose": {
        const next = inline ?? rest[i + 1];
        if (next !== undefined && (LOG_LEVELS as readonly string[]).includes(next.toLowerCase())) {
          out.logLevel = next.toLowerCase() as LogLevel;
          if (inline === undefined) i++;
        } else if (inline !== undefined) {
          throw new AosError("invalidArgument", `unknown log level "${inline}"`);
        } else {
          out.logLevel = "debug";
        }
        break;
      }
      case "--log-format": {
        const f = value();
        if (f !== "text" && f !== "json") {
          throw new AosError("invalidArgument", `unknown log format "${f}" (text or json)`);
        }
        out.logFormat = f;
        break;
      }
      case "-p":
      case "--provisioning":
        if (!spec.provisioning) {
          throw new AosError("invalidArgument", `${spec.name} has no provisioning mode`);
        }
        out.provisioning = true;
        break;
      case "-j":
      case "--journal":
        // Upstream logs to journald with -j; there is no journald here, so stderr is kept.
        break;
      case "--version":
        out.version = true;
        break;
      case "-h":
      case "--help":
        out.help = true;
        break;
      default:
        throw new AosError("invalidArgument", `unknown option "${raw}" (see --help)`);
    }
  }
  return out;
}

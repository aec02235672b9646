/**
 * Command-line parsing for `mptest` (no dependency; errors are {@link UsageError}).
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 */

import { parseSeed } from "./rng.js";

export class UsageError extends Error {
  override get name(): string {
    return "UsageError";
  }
}

export interface CliArgs {
  filter?: RegExp;
  repeat?: number;
  durationMs?: number;
  untilFail: boolean;
  seed?: number;
  jobs: number;
  timeoutMs: number;
  json?: string;
  list: boolean;
  help: boolean;
  /** Internal: this process is job `index` of `count` (set by --jobs on its children). */
  shard?: { index: number; count: number };
}

/** Default budget when neither --repeat nor --duration is given (pnpm mptest must stay under 60 s). */
export const DEFAULT_DURATION_MS = 45_000;
export const DEFAULT_TIMEOUT_MS = 20_000;

export const USAGE = `usage: mptest [--filter RE] [--repeat N | --duration 60s] [--until-fail] [--seed S]
              [--jobs J] [--timeout MS] [--json FILE] [--list]

  --filter RE      run only scenarios whose name matches RE (JavaScript regex)
  --repeat N       run each scenario N times
  --duration D     keep running rounds for D (e.g. 500ms, 45s, 2m); default ${DEFAULT_DURATION_MS / 1000}s
                   when neither --repeat nor --duration is given
  --until-fail     stop at the first failure, leak or hang (unbounded without --repeat/--duration)
  --seed S         base seed (uint32, decimal or 0x-hex); iteration 0 uses S itself
  --jobs J         run J child processes in parallel, splitting the iterations
  --timeout MS     per-iteration limit; past it state is dumped and the run fails (default ${DEFAULT_TIMEOUT_MS})
  --json FILE      write a machine-readable report
  --list           print the scenario names and exit

Exit status: 0 when nothing failed, leaked or hung; 1 otherwise; 2 for a usage error.`;

/** Parses "45s", "500ms", "2m", "1h" or a bare number of seconds into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) throw new UsageError(`bad duration '${text}' (try 45s, 500ms, 2m)`);
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  const ms = unit === "ms" ? n : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n * 3_600_000;
  if (!(ms > 0)) throw new UsageError(`duration must be positive: '${text}'`);
  return ms;
}

function positiveInt(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`${flag} wants a positive integer, got '${text}'`);
  }
  return Number(text);
}

export function parseArgs(argv: readonly string[]): CliArgs {
  const out: CliArgs = { untilFail: false, jobs: 1, timeoutMs: DEFAULT_TIMEOUT_MS, list: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i]!;
    let inline: string | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case "--filter": {
        const v = value();
        try {
          out.filter = new RegExp(v);
        } catch (e) {
          throw new UsageError(`bad --filter regex '${v}': ${(e as Error).message}`);
        }
        break;
      }
      case "--repeat":
        out.repeat = positiveInt(arg, value());
        break;
      case "--duration":
        out.durationMs = parseDuration(value());
        break;
      case "--until-fail":
        out.untilFail = true;
        break;
      case "--seed":
        try {
          out.seed = parseSeed(value());
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
        break;
      case "--jobs":
      case "-j":
        out.jobs = positiveInt(arg, value());
        break;
      case "--timeout":
        out.timeoutMs = positiveInt(arg, value());
        break;
      case "--json":
        out.json = value();
        break;
      case "--list":
        out.list = true;
        break;
      case "--help":
      case "-h":
        out.help = true;
        break;
      case "--shard": {
        const v = value();
        const m = /^(\d+)\/(\d+)$/.exec(v);
        if (m === null || Number(m[1]) >= Number(m[2])) throw new UsageError(`bad --shard '${v}' (want K/J, K < J)`);
        out.shard = { index: Number(m[1]), count: Number(m[2]) };
        break;
      }
      default:
        throw new UsageError(`unknown argument '${argv[i]}'`);
    }
  }
  if (out.repeat !== undefined && out.durationMs !== undefined) {
    throw new UsageError("--repeat and --duration are exclusive");
  }
  return out;
}

/**
 * Logging for the runtime, after upstream's `LogOptions` / `MP_LOG` (proxy-io.h): a level filter,
 * a `maxChars` limit for message dumps, and every line prefixed with the long thread name
 * (`exe-pid/name`).
 *
 * Owns: nothing (level table, name and truncation helpers).
 * Threading: a log function is called on the thread that logs (the loop thread, or a worker that
 * logs through its own EventLoop); it must not throw (unlike upstream's `Log::Raise`, errors reach
 * callers as typed exceptions, never through the logger).
 */

/** Severity, lowest first. Upstream's `Raise` has no counterpart: errors are thrown, not logged. */
export type LogLevel = "trace" | "debug" | "info" | "warning" | "error";

export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error"];

/** Receives one formatted line (already prefixed with `{threadName}`). Must not throw. */
export type LogFn = (level: LogLevel, message: string) => void;

export interface LogOptions {
  /** Where lines go. Default: none (logging disabled). */
  logFn?: LogFn;
  /** Minimum level passed to `logFn`. Default "info" (upstream's default is Trace; ours is quieter). */
  level?: LogLevel;
  /** Longest message dump (params/results text) kept by {@link truncate}. Default 200, as upstream. */
  maxChars?: number;
}

export function levelIndex(level: LogLevel): number {
  return LOG_LEVELS.indexOf(level);
}

/** Shortens `text` to `maxChars` characters, marking the cut, for message dumps in log lines. */
export function truncate(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  return `${text.slice(0, Math.max(0, maxChars))}... (${text.length - maxChars} more chars)`;
}

function exeName(): string {
  const script = typeof process !== "undefined" ? process.argv[1] : undefined;
  const base = script ? script.split(/[\\/]/).pop() ?? "node" : "node";
  return base.replace(/\.(c|m)?js$/, "");
}

/**
 * Long thread name as upstream's `ThreadName(exe)`: `exe-pid/name`, e.g. `mpexample-1234/loop`.
 * `name` is the short name of the thread (loop name, worker name, server thread name).
 */
export function longThreadName(name: string): string {
  const pid = typeof process !== "undefined" ? process.pid : 0;
  return `${exeName()}-${pid}/${name}`;
}

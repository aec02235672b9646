/**
 * Logging for the runtime, after upstream's `LogOptions` / `MP_LOG` (proxy-io.h): a level filter,
 * a `maxChars` limit for message dumps, and every line prefixed with the long thread name
 * (`exe-pid/name`).
 *
 * `MPTS_TRACE=1` (or `DEBUG` naming `multiprocess-ts`, as the `debug` package does) in the
 * environment turns on trace logging to stderr for every EventLoop created without a `log`
 * option (see {@link envLogOptions}); {@link structText} prints params/results in capnp text form.
 *
 * Owns: nothing (level table, name, truncation and text helpers).
 * Threading: a log function is called on the thread that logs (the loop thread, or a worker that
 * logs through its own EventLoop); it must not throw (unlike upstream's `Log::Raise`, errors reach
 * callers as typed exceptions, never through the logger).
 */
import { isCapabilityPointer } from "@multiprocess-ts/capnp";
import { Struct } from "capnp-ts";

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

/**
 * The log options `MPTS_TRACE=1` / `DEBUG=multiprocess-ts:*` ask for (trace level, lines to
 * stderr), or undefined when neither is set. Read when an EventLoop is created without `log`.
 */
export function envLogOptions(env: Record<string, string | undefined> = typeof process !== "undefined" ? process.env : {}): LogOptions | undefined {
  const t = env["MPTS_TRACE"];
  const d = env["DEBUG"];
  const on = (t !== undefined && t !== "" && t !== "0") || (d !== undefined && /(^|[\s,])multiprocess-ts(:|\*|$|[\s,])/.test(d));
  if (!on) return undefined;
  return { level: "trace", logFn: (_level, msg) => process.stderr.write(`multiprocess-ts ${msg}\n`) };
}

const SKIP_KEYS = new Set(["segment", "byteOffset", "_capnp"]);

/**
 * A capnp-ts struct (or list, or value) in capnp text form, `(a = 1, b = "x", s = (n = 2))`, from
 * the accessors mpgen generates; only for log lines (slow: it reads every field). Fields that
 * cannot be read (inactive union members) are left out; capabilities show as `<cap>`.
 */
export function structText(v: unknown, depth = 0): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return v.toString();
  if (typeof v !== "object") return String(v);
  if (depth > 4) return "(...)";
  if (Array.isArray(v)) return `[${v.map((x) => structText(x, depth + 1)).join(", ")}]`;
  if (v instanceof Uint8Array) return `0x"${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex")}"`;
  const data = v as { toUint8Array?: () => Uint8Array };
  if (typeof data.toUint8Array === "function") return structText(data.toUint8Array(), depth); // capnp Data
  const list = v as { getLength?: () => number; get?: (i: number) => unknown };
  if (typeof list.getLength === "function" && typeof list.get === "function") {
    // A capnp-ts List: at most 16 elements.
    const n = list.getLength();
    const items: string[] = [];
    for (let i = 0; i < Math.min(n, 16); i++) items.push(structText(list.get(i), depth + 1));
    return `[${items.join(", ")}${n > 16 ? `, ... (${n - 16} more)` : ""}]`;
  }
  if (v instanceof Map) return `[${[...v].map(([k, x]) => `(key = ${structText(k, depth + 1)}, value = ${structText(x, depth + 1)})`).join(", ")}]`;
  const fields: string[] = [];
  const seen = new Set<string>();
  for (let proto = Object.getPrototypeOf(v) as object | null; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
    const own = Object.getOwnPropertyDescriptors(proto);
    let getters = 0;
    for (const [k, d] of Object.entries(own)) {
      if (d.get === undefined || seen.has(k) || SKIP_KEYS.has(k) || k.startsWith("_")) continue;
      getters++;
      seen.add(k);
      try {
        fields.push(`${k} = ${structText((v as Record<string, unknown>)[k], depth + 1)}`);
      } catch {
        // an inactive union member or a field that is not plain data
      }
    }
    // Stop at the first base class without generated accessors (capnp-ts's Struct).
    if (getters === 0) break;
  }
  // Capabilities have no accessors: each capability pointer of a struct shows as `<cap>`.
  if (v instanceof Struct) {
    const n = (v.constructor as { _capnp?: { size?: { pointerLength?: number } } })._capnp?.size?.pointerLength ?? 0;
    for (let i = 0; i < n; i++) if (isCapabilityPointer(v, i)) fields.push("<cap>");
  }
  if (fields.length === 0 && Object.getPrototypeOf(v) === Object.prototype) {
    return `(${Object.entries(v as object).map(([k, x]) => `${k} = ${structText(x, depth + 1)}`).join(", ")})`;
  }
  return `(${fields.join(", ")})`;
}

/** `FooInterfaceClient` / `FooInterfaceServer` → `FooInterface` (names in trace lines). */
export function interfaceName(ctor: { name: string }): string {
  return ctor.name.replace(/(Client|Server)$/, "");
}

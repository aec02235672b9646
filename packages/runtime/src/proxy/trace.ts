/**
 * Trace lines name methods: the generated methods seen while tracing (`MPTS_TRACE=1`, or a loop
 * logging at "trace"), by interface and method id, and the engine's {@link MessageDescriber} made
 * from them, so each Call / Return line reads `-> call q3 FooInterface.add (a = 1, b = 2)`
 * (docs/usage.md, "Tracing"). Nothing here runs unless tracing is on. A worker thread tells the
 * loop the names of the methods it calls (setTraceListener there, traceName here), so the loop's
 * lines for calls it relays from workers are named too.
 *
 * Owns: the module-wide table of traced methods (grows with the distinct methods traced) and the
 * thread's trace listener.
 * Threading: the thread that traces (each thread has its own module instance).
 */
import type { MessageDescriber } from "@multiprocess-ts/capnp";
import type { StructCtor } from "capnp-ts";
import { interfaceName, structText } from "../log.js";
import {
  THREAD_MAP_INTERFACE_ID,
  ThreadMapMethod,
  ThreadMap_makePool$Params,
  ThreadMap_makePool$Results,
  ThreadMap_makeThread$Params,
  ThreadMap_makeThread$Results,
} from "../types/proxy-capnp.js";
import type { ProxyMethod, ProxyServerCtor } from "./seam.js";

interface TracedMethod {
  label: string;
  /** Absent for a method only named by another thread ({@link traceName}): no params text. */
  Params?: StructCtor<any>;
  Results?: StructCtor<any>;
}

/** Told about each method this thread traces for the first time (the worker glue forwards it). */
export type TraceListener = (interfaceId: bigint, methodId: number, label: string) => void;

const traced = new Map<bigint, Map<number, TracedMethod>>();
const servers = new WeakSet<object>();
let listener: TraceListener | undefined;

// The runtime's own calls (threads/proxy-context.ts, threads/pool.ts) are not made by generated code.
const THREAD_MAP = new Map<number, TracedMethod>([
  [ThreadMapMethod.makeThread, { label: "ThreadMap.makeThread", Params: ThreadMap_makeThread$Params, Results: ThreadMap_makeThread$Results }],
  [ThreadMapMethod.makePool, { label: "ThreadMap.makePool", Params: ThreadMap_makePool$Params, Results: ThreadMap_makePool$Results }],
]);
traced.set(THREAD_MAP_INTERFACE_ID, THREAD_MAP);

/** Remembers `m` (of the client or server class `ctor`) for trace lines. */
export function traceMethod(m: ProxyMethod, ctor: { name: string }): void {
  let byId = traced.get(m.interfaceId);
  if (byId === undefined) traced.set(m.interfaceId, (byId = new Map()));
  const known = byId.get(m.methodId);
  if (known !== undefined && known.Params !== undefined) return;
  const label = `${interfaceName(ctor)}.${m.name}`;
  byId.set(m.methodId, { label, Params: m.Params, Results: m.Results });
  if (known === undefined) listener?.(m.interfaceId, m.methodId, label);
}

/**
 * Names a method this thread has no generated class for, from the thread that made the call: a
 * worker's call relayed by the loop (node worker glue; docs/usage.md, "Tracing"). Trace lines
 * then name it; its params and results text needs the generated class on this thread too.
 */
export function traceName(interfaceId: bigint, methodId: number, label: string): void {
  let byId = traced.get(interfaceId);
  if (byId === undefined) traced.set(interfaceId, (byId = new Map()));
  if (!byId.has(methodId)) byId.set(methodId, { label });
}

/** Sets (or clears, with undefined) this thread's {@link TraceListener}. */
export function setTraceListener(fn: TraceListener | undefined): void {
  listener = fn;
}

/** Remembers every method a generated server class dispatches. */
export function traceServerClass(ctor: ProxyServerCtor): void {
  if (servers.has(ctor)) return;
  servers.add(ctor);
  for (const entry of ctor.methods) traceMethod(entry.method, ctor);
}

/** The engine's describer for connections of a loop that traces (`maxChars`: the loop's truncation). */
export function traceDescriber(truncate: (text: string) => string): MessageDescriber {
  return {
    method: (interfaceId, methodId) => traced.get(interfaceId)?.get(methodId)?.label,
    text(interfaceId, methodId, results, read) {
      const t = traced.get(interfaceId)?.get(methodId);
      const ctor = results ? t?.Results : t?.Params;
      if (ctor === undefined) return undefined;
      return truncate(structText(read(ctor)));
    },
  };
}

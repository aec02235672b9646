/**
 * `@multiprocess-ts/runtime`: the loop-thread runtime (EventLoop, Connection, proxies, thread
 * mapping). Hand-curated named exports; generated-code helpers live on `./gen`.
 *
 * Layout: event-loop.ts, connection.ts, entry.ts (connect/serve), proxy/ (client and server bases,
 * their IO, relays, disposal), threads/ (thread mapping: executor, frames, ThreadContext,
 * ThreadClient, the Thread/ThreadMap servers, the Proxy.Context param), types/ (proxy.capnp
 * structs). Owns: nothing. Threading: loop thread (see each module).
 * @module
 */
export { EventLoop, EventLoopRef } from "./event-loop.js";
export { errorText } from "./util.js";
export type { EventLoopOptions, TestingHooks, LoopHandler } from "./event-loop.js";
export { LOG_LEVELS, envLogOptions, longThreadName, truncate } from "./log.js";
export type { LogLevel, LogFn, LogOptions } from "./log.js";
export { Connection, CleanupList } from "./connection.js";
export type { CleanupHandle, ConnectionOptions, ConnectionState } from "./connection.js";
export { ProxyClientBase, SharedHolders } from "./proxy/client.js";
export { ProxyServerBase } from "./proxy/server.js";
export { disposeObject } from "./proxy/dispose.js";
/** Trace names across threads, for the worker glue of @multiprocess-ts/node (docs/usage.md, "Tracing"). */
export { traceName, setTraceListener } from "./proxy/trace.js";
export type { TraceListener } from "./proxy/trace.js";
export { setCallDefaults, callDefaults } from "./proxy/call-options.js";
export type { CallOptions, CallContext } from "./proxy/call-options.js";
export type {
  ProxyMethod,
  ServerMethod,
  ClientIO,
  ServerIO,
  ProxyClientCtor,
  ProxyServerCtor,
  ProxyClientOptions,
} from "./proxy/seam.js";
export { ThreadContext } from "./threads/thread-context.js";
export { Lane, lane, runInLane, currentLane } from "./threads/lanes.js";
export type { ThreadContextOptions } from "./threads/thread-context.js";
export { ThreadClient } from "./threads/thread-client.js";
/** A `Map` for per-call tables of zero or one entry (the worker bridge's questions and answers). */
export { SlotMap } from "./threads/slot-map.js";
export { FifoExecutor } from "./threads/executor.js";
export type { ThreadExecutor, TaskControl } from "./threads/executor.js";
export { currentFrame, runInFrame } from "./threads/frame.js";
/** @internal White-box tests: whether the task-frame storage (Node's promise hooks) is enabled. */
export { frameStorageEnabled } from "./threads/frame.js";
export type { TaskFrame } from "./threads/frame.js";
export { ThreadServer, ThreadMapServer, makeThreadMap, pickPoolThread } from "./threads/servers.js";
export { fillContext, readContext, selectThread } from "./threads/proxy-context.js";
/** @internal White-box tests: a call's Context struct written in place. */
export { initContextIn } from "./threads/proxy-context.js";
export { makePool } from "./threads/pool.js";
export { connectTransport, serveTransport, constructExchange } from "./entry.js";
export type { ConnectOptions, ServeOptions } from "./entry.js";
export {
  IpcDisconnectedError,
  IpcCalledAfterDisconnectError,
  IpcInterruptedError,
  IpcClientClosedError,
  ThreadSelectionError,
  IntRangeError,
  UnknownUnionMemberError,
  TimeoutError,
} from "./errors.js";
// The capnp layer's error classes, so applications catch them without importing the engine.
export { RpcError, RemoteError, DisconnectedError, CanceledError } from "@multiprocess-ts/capnp";

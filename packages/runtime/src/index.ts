/**
 * `@multiprocess-ts/runtime`: the loop-thread runtime (EventLoop, Connection, proxies, thread
 * mapping). Hand-curated named exports; generated-code helpers live on `./gen`.
 * @module
 */
export { EventLoop, EventLoopRef, describe } from "./event-loop.js";
export type { EventLoopOptions, TestingHooks, LoopHandler } from "./event-loop.js";
export { LOG_LEVELS, longThreadName, truncate } from "./log.js";
export type { LogLevel, LogFn, LogOptions } from "./log.js";
export { Connection, CleanupList } from "./connection.js";
export type { CleanupHandle, ConnectionOptions, ConnectionState } from "./connection.js";
export { ProxyClientBase, ProxyServerBase, disposeObject } from "./proxy.js";
export type {
  ProxyMethod,
  ServerMethod,
  ClientIO,
  ServerIO,
  ProxyClientCtor,
  ProxyServerCtor,
  ProxyClientOptions,
} from "./proxy.js";
export { ThreadContext, ThreadEntry, FifoExecutor, currentFrame, runInFrame } from "./thread-context.js";
export type { ThreadExecutor, ThreadContextOptions, TaskFrame, TaskControl } from "./thread-context.js";
export { ThreadServer, ThreadMapServer, makeThreadMap, pickPoolThread } from "./threads.js";
export { fillContext, readContext, selectThread } from "./context.js";
export { connectTransport, serveTransport, constructExchange } from "./entry.js";
export type { ConnectOptions, ServeOptions } from "./entry.js";
export {
  IpcDisconnectedError,
  IpcCalledAfterDisconnectError,
  IpcInterruptedError,
  IpcClientClosedError,
  ThreadSelectionError,
  IntRangeError,
} from "./errors.js";

/**
 * `@multiprocess-ts/runtime/gen`: the helpers generated code (mpgen output in proto/src) imports.
 * Not for applications (use `@multiprocess-ts/runtime`). The seam is fixed by contracts.md §2.
 * @internal
 * @module
 */
export {
  ProxyClientBase,
  ProxyServerBase,
  checkInt8,
  checkInt16,
  checkInt32,
  checkUint8,
  checkUint16,
  checkUint32,
} from "../proxy.js";
export type {
  ProxyMethod,
  ServerMethod,
  ClientIO,
  ServerIO,
  ProxyClientCtor,
  ProxyServerCtor,
  ProxyClientOptions,
} from "../proxy.js";
export { fillContext } from "../context.js";
/** True for a native Promise or any object with a `then` method (generated `invoke` uses it). */
export { isThenable } from "../thread-context.js";
export type { Connection } from "../connection.js";
export type { ThreadContext } from "../thread-context.js";
export { readCap, writeCap } from "@multiprocess-ts/capnp";
export type { Capability } from "@multiprocess-ts/capnp";
export {
  Context,
  ThreadMap_makeThread$Params,
  ThreadMap_makeThread$Results,
  ThreadMap_makePool$Params,
  ThreadMap_makePool$Results,
  Thread_getName$Params,
  Thread_getName$Results,
  THREAD_MAP_INTERFACE_ID,
  THREAD_INTERFACE_ID,
  CONTEXT_STRUCT_ID,
} from "../types/proxy-capnp.js";

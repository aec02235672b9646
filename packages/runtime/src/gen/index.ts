/**
 * `@multiprocess-ts/runtime/gen`: the helpers generated code (mpgen output in proto/src) imports.
 * Not for applications (use `@multiprocess-ts/runtime`). The seam is fixed by docs/contracts.md §2.
 * Owns: nothing (re-exports). Threading: loop thread (generated proxies run there).
 * @module
 */
export { ProxyClientBase } from "../proxy/client.js";
export { ProxyServerBase } from "../proxy/server.js";
export { checkInt8, checkInt16, checkInt32, checkUint8, checkUint16, checkUint32 } from "../proxy/int-checks.js";
export type {
  ProxyMethod,
  ServerMethod,
  ClientIO,
  ServerIO,
  ProxyClientCtor,
  ProxyServerCtor,
  ProxyClientOptions,
} from "../proxy/seam.js";
export type { CallOptions, CallContext } from "../proxy/call-options.js";
export { fillContext } from "../threads/proxy-context.js";
export { thenWrite } from "../proxy/call-io.js";
/** What a generated flat params reader of a method without parameters returns (proxy/seam.ts `ServerMethod.read`). */
export const NO_PARAMS: object = Object.freeze({});
export { exceptionMessage, UnknownUnionMemberError } from "../errors.js";
/** True for a native Promise or any object with a `then` method (generated `invoke` uses it). */
export { isThenable } from "../util.js";
export type { Connection } from "../connection.js";
export type { ThreadContext } from "../threads/thread-context.js";
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
export { readBoolList, readNumberList, readBigIntList, readDataList, readTextList } from "./lists.js";
export type { NumberKind } from "./lists.js";

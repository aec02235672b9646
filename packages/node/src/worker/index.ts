/**
 * worker_threads support: attach workers to a loop thread (`WorkerHost` on the loop,
 * `attachLoop` in the worker), post/sync requests, and block a worker on a call (`Waiter`,
 * `callSync`), the RPC bridge and the runtime glue. See docs/threading.md, "Workers".
 *
 * Layout, loop half ↔ worker half: host.ts ↔ attach.ts (post/sync, Waiter), loop-bridge.ts ↔
 * worker-bridge.ts (RPC bridge, both on rpc-end.ts), loop-support.ts ↔ worker-connection.ts
 * (thread mapping with the runtime); shared: protocol.ts (messages and their encoding), copy.ts,
 * context-view.ts, blocking.ts. Owns: nothing (re-exports). Threading: see each module.
 */
export { WorkerHost, WorkerSession, workerHost } from "./host.js";
export type { LoopHandler, WorkerHostOptions, WorkerHostHooks, LoopLike, LogFn, LogLevel } from "./host.js";
export { attachLoop, currentLoop, callSync, WorkerLoop, Waiter } from "./attach.js";
export { loopHandleTransferList, isLoopHandle } from "./protocol.js";
export type { LoopHandle } from "./protocol.js";
export { isLoopThread } from "./blocking.js";
export { LoopBridge, loopBridge, WorkerObjectServer } from "./loop-bridge.js";
export { ContextView } from "./context-view.js";
export type { LoopBridgeOptions } from "./loop-bridge.js";
export { WorkerRpc, workerRpc, LoopObjectServer } from "./worker-bridge.js";
export type { ProxyMethodsSource } from "./worker-bridge.js";
export { attachWorkers } from "./loop-support.js";
export type { WorkerSupport } from "./loop-support.js";
export { workerConnection } from "./worker-connection.js";
export type { WorkerConnection } from "./worker-connection.js";

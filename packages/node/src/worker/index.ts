/**
 * worker_threads support: attach workers to a loop thread (`WorkerHost` on the loop,
 * `attachLoop` in the worker), post/sync requests, and block a worker on a call (`Waiter`,
 * `callSync`). See docs/threading.md, "Workers".
 */
export { WorkerHost, WorkerSession, workerHost } from "./host.js";
export type { LoopHandler, WorkerHostOptions, WorkerHostHooks, LoopLike, LogFn, LogLevel } from "./host.js";
export { attachLoop, currentLoop, callSync, WorkerLoop, Waiter } from "./attach.js";
export { loopHandleTransferList, isLoopHandle } from "./protocol.js";
export type { LoopHandle } from "./protocol.js";
export { isLoopThread } from "./thread.js";
export { LoopBridge, loopBridge, WorkerObjectServer, ContextView } from "./loop-bridge.js";
export type { LoopBridgeOptions } from "./loop-bridge.js";
export { WorkerRpc, workerRpc, LoopObjectServer } from "./worker-bridge.js";
export type { ProxyMethodsSource } from "./worker-bridge.js";
export { attachWorkers, workerConnection } from "./runtime.js";
export type { WorkerSupport, WorkerConnection } from "./runtime.js";

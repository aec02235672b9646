/**
 * Public API of @multiprocess-ts/node: the Node.js edges of multiprocess-ts (child processes,
 * sockets, listeners, MessagePort and WebSocket transports). Hand-curated: add named exports only.
 *
 * Threading: re-exports only; each module's header says on which thread it runs (sockets and
 * transports on the loop thread that owns them, worker entry points on the worker thread).
 */

// Child processes (upstream SpawnProcess / WaitProcess / StartSpawned).
export { spawnProcessSocket, waitProcess, openSpawnedSocket, SPAWN_FD, SpawnError, STDERR_TAIL_BYTES } from "./spawn.js";
export type { SpawnProcessOptions, SpawnedSocket, ExitStatus } from "./spawn.js";

// Listening sockets (upstream ListenConnections, max_connections).
export { listenSockets, Listener, AddressInUseError, DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_FRAME_BUDGET_BYTES } from "./listen.js";
export type { ListenTarget, ListenOptions, SocketHandler, ListenerEvents } from "./listen.js";

// Transports.
export { messagePortTransport } from "./message-port.js";
export type { MessagePortTransportOptions } from "./message-port.js";
export { webSocketTransport, openWebSocket, listenWebSocket, WebSocketRejectedError } from "./websocket.js";
export type { WebSocketTransportOptions, OpenWebSocketOptions, WebSocketListenOptions, WebSocketListener } from "./websocket.js";
export { WsFrameTracker } from "./ws-guard.js";
export type { WsGuardEvents } from "./ws-guard.js";
export { encodeSingleFrame, decodeSingleFrame, DEFAULT_FRAME_LIMITS } from "./frame.js";
export type { FrameLimits } from "./frame.js";

// worker_threads: attach workers to a loop (post/sync, Waiter, callSync).
export { WorkerHost, WorkerSession, workerHost, attachLoop, currentLoop, callSync, WorkerLoop, Waiter, loopHandleTransferList, isLoopHandle, isLoopThread } from "./worker/index.js";
export type { LoopHandle, LoopHandler, WorkerHostOptions, WorkerHostHooks, LoopLike } from "./worker/index.js";
// worker_threads: thread mapping (loop side attachWorkers, worker side workerConnection) and the RPC bridge.
export { attachWorkers, workerConnection, LoopBridge, loopBridge, WorkerRpc, workerRpc } from "./worker/index.js";
export type { WorkerSupport, WorkerConnection, LoopBridgeOptions } from "./worker/index.js";

// Init-level entry points (upstream ConnectStream / ServeStream / SpawnProcess / ListenConnections).
export {
  connectStream,
  serveStream,
  clientConnection,
  spawnProcess,
  serveSpawned,
  listenConnections,
  connectSocket,
  connectWebSocket,
  listenWebSocketConnections,
} from "./connect.js";
export type {
  SpawnInitOptions,
  SpawnedProcess,
  ServeSpawnedOptions,
  ListenConnectionsOptions,
  ConnectWebSocketOptions,
  WebSocketConnectionsOptions,
} from "./connect.js";

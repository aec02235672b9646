/**
 * Init-level entry points over Node streams, processes, listeners and WebSockets: upstream's
 * `ConnectStream`, `ServeStream`, `SpawnProcess` + `ConnectStream`, `StartSpawned`,
 * `ListenConnections` (libmultiprocess proxy-io.h / util.cpp), built on the runtime's
 * `connectTransport` / `serveTransport` and the transports of this package.
 *
 * Threading: all of these run on the loop thread (the thread that created `loop`) and never block.
 */

import * as net from "node:net";
import type { Duplex } from "node:stream";
import type { IncomingMessage } from "node:http";
import { SocketReader, streamTransport, type Transport, type WriteFlowLimits } from "@multiprocess-ts/capnp";
import {
  EventLoop,
  connectTransport,
  serveTransport,
  type Connection,
  type ConnectOptions,
  type EventLoopOptions,
  type ProxyClientBase,
  type ProxyClientCtor,
  type ProxyServerCtor,
  type ServeOptions,
} from "@multiprocess-ts/runtime";
import {
  SpawnError,
  StderrTail,
  describeExit,
  openSpawnedReader,
  spawnProcessSocket,
  stderrForCapture,
  waitProcess,
  type ExitStatus,
  type SpawnProcessOptions,
} from "./spawn.js";
import { listenSockets, type ListenOptions, type ListenTarget, type Listener } from "./listen.js";
import {
  listenWebSocket,
  openWebSocket,
  type OpenWebSocketOptions,
  type WebSocketListenOptions,
  type WebSocketListener,
} from "./websocket.js";
import type { ChildProcess } from "node:child_process";

/**
 * Connect to the Init object served on the other end of `stream` (upstream `ConnectStream`).
 * Takes ownership of the stream. Resolves with the Init client once the `construct` exchange is
 * done when the Init interface declares one, else at once (calls pipeline on the bootstrap, as
 * upstream); the client owns the connection, so `await init.close()` disconnects. Rejects (and
 * destroys the stream) if the peer goes away during `construct`.
 */
export function connectStream<C>(loop: EventLoop, stream: Duplex, InitClient: ProxyClientCtor<C>, opts: ConnectOptions = {}): Promise<C> {
  return connectTransport(loop, streamTransport(stream, opts.limits), InitClient, opts);
}

/**
 * Serve `impl` as the Init object on `stream` (upstream `ServeStream`). Takes ownership of the
 * stream; the returned Connection ends when the peer disconnects (see `connection.disconnected`).
 * The Init server owns `impl` unless `opts.ownsImpl === false`.
 */
export function serveStream<I>(
  loop: EventLoop,
  stream: Duplex,
  impl: I,
  InitServer: ProxyServerCtor<I>,
  opts: ServeOptions & { flow?: Partial<WriteFlowLimits> } = {},
): Connection {
  return serveWith(loop, stream, undefined, impl, InitServer, opts);
}

/** serveStream, for a socket created with `reader`'s onread option (read in place) or not. */
function serveWith<I>(
  loop: EventLoop,
  stream: Duplex,
  reader: SocketReader | undefined,
  impl: I,
  InitServer: ProxyServerCtor<I>,
  opts: ServeOptions & { flow?: Partial<WriteFlowLimits> },
): Connection {
  const { flow, ...serveOpts } = opts;
  return serveTransport(loop, streamTransport(stream, opts.limits, flow, reader), impl, InitServer, serveOpts);
}

/** The Connection behind an Init client made by this package. */
export function clientConnection(client: object): Connection {
  return (client as ProxyClientBase).$connection;
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Options of {@link spawnProcess}. */
export interface SpawnInitOptions<C> extends SpawnProcessOptions {
  loop: EventLoop;
  /** Client class of the child's Init interface (e.g. generated `InitInterfaceClient`). */
  InitClient: ProxyClientCtor<C>;
  /** Options for the client connection. */
  connect?: ConnectOptions;
  /**
   * Milliseconds the child has to serve its Init object (bootstrap and `construct` done); then it
   * is killed and the promise rejects with a SpawnError `MP_ERR_SPAWN_TIMEOUT`. Default: no limit.
   */
  startupTimeout?: number;
  /**
   * Keep the tail of the child's stderr for the SpawnError of a failed startup (default true):
   * an inherited stderr then becomes a pipe copied to the parent's stderr. False keeps it
   * inherited as is (the error then has no `stderr`).
   */
  captureStderr?: boolean;
}

/** A child process connected over a socketpair, from {@link spawnProcess}. */
export interface SpawnedProcess<C> {
  /** The child's Init object. Owns the connection: `await init.close()` disconnects. */
  init: C;
  connection: Connection;
  child: ChildProcess;
  pid: number;
  /** Settles when the child exits (same as `waitProcess(child)`). */
  exited: Promise<ExitStatus>;
}

/** How long a child whose connection failed may take to exit on its own before it is killed. */
const EXIT_GRACE_MS = 1000;

/**
 * Spawn a child and connect to the Init object it serves on the inherited socketpair end
 * (upstream `SpawnProcess` + `ConnectStream`). `args(fd)` builds the child's argv and runs in the
 * parent, before the child starts; put `String(fd)` where the child expects it (a Node child
 * passes it to {@link serveSpawned}; a libmultiprocess child to `mp::StartSpawned`).
 *
 * When the child exits, the connection ends and calls in flight reject with the runtime's
 * disconnect error; when the parent closes `init`, a well-behaved child's loop ends and it exits.
 * If the child does not serve (it exits first, connecting fails, or `startupTimeout` elapses), it
 * is killed (SIGKILL) if still running and the promise rejects with a {@link SpawnError} carrying
 * its exit code, signal and stderr tail.
 */
export async function spawnProcess<C>(
  command: string,
  args: (fd: number) => readonly string[],
  opts: SpawnInitOptions<C>,
): Promise<SpawnedProcess<C>> {
  const { loop, InitClient, connect, startupTimeout, captureStderr, ...rest } = opts;
  if (startupTimeout !== undefined && !(startupTimeout >= 0 && Number.isFinite(startupTimeout))) {
    throw new RangeError(`spawnProcess: startupTimeout must be a non-negative number of milliseconds, got ${String(startupTimeout)}`);
  }
  // The parent's end is read through a SocketReader where Node allows the switch (spawn.ts).
  const { opts: spawnOpts, captured } = stderrForCapture({ ...rest, readInPlace: rest.readInPlace ?? true }, captureStderr ?? true);
  const { child, pid, socket, reader } = await spawnProcessSocket(command, args, spawnOpts);
  const tail = captured && child.stderr !== null ? new StderrTail(child.stderr) : undefined;
  const exited = waitProcess(child);
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const connecting = connectTransport(loop, streamTransport(socket, connect?.limits, undefined, reader), InitClient, connect);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    if (startupTimeout !== undefined) timer = setTimeout(() => resolve("timeout"), startupTimeout);
  });
  let outcome: C | "timeout";
  try {
    outcome = await Promise.race([connecting, timedOut]);
  } catch (e) {
    clearTimeout(timer);
    socket.destroy();
    let grace: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([exited, new Promise<undefined>((resolve) => (grace = setTimeout(() => resolve(undefined), EXIT_GRACE_MS)))]);
    clearTimeout(grace);
    if (status === undefined) child.kill("SIGKILL");
    const final = await exited;
    await closed; // every byte of stderr has been read
    const why = status === undefined ? `failed to connect (${errorText(e)}); killed` : `${describeExit(final)} before serving`;
    throw new SpawnError(`spawnProcess: child ${command} (pid ${pid}) ${why}`, "MP_ERR_SPAWN_FAILED", final, tail?.text, e);
  }
  clearTimeout(timer);
  if (outcome === "timeout") {
    socket.destroy();
    child.kill("SIGKILL");
    // A connection that completes after all is closed again; a failing one is expected.
    connecting.then((c) => void (c as ProxyClientBase).close(), () => {});
    const final = await exited;
    await closed;
    const msg = `spawnProcess: child ${command} (pid ${pid}) did not serve within ${String(startupTimeout)} ms; killed`;
    throw new SpawnError(msg, "MP_ERR_SPAWN_TIMEOUT", final, tail?.text);
  }
  tail?.stop();
  return { init: outcome, connection: clientConnection(outcome as object), child, pid, exited };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Options of {@link serveSpawned}. */
export interface ServeSpawnedOptions extends ServeOptions {
  /** The loop to serve on; default: a new EventLoop named after the executable. */
  loop?: EventLoop;
  /** Options for the EventLoop created when `loop` is not given. */
  loopOptions?: EventLoopOptions;
}

/**
 * Child side of {@link spawnProcess} (upstream `StartSpawned` + `ServeStream` + `loop()`): serve
 * `impl` on the inherited socketpair end whose fd number is `fdArg` (an argv string), and resolve
 * once the parent has disconnected and the loop has no more work, with the (closed) Connection
 * for inspection. A process with nothing else to do then exits with status 0. Throws a
 * RangeError for a bad fd argument.
 */
export async function serveSpawned<I>(fdArg: string | undefined, impl: I, InitServer: ProxyServerCtor<I>, opts: ServeSpawnedOptions = {}): Promise<Connection> {
  const { loop: given, loopOptions, ...serveOpts } = opts;
  const { socket, reader } = openSpawnedReader(fdArg);
  const loop = given ?? new EventLoop(process.argv[1]?.split("/").pop() ?? "spawned", loopOptions);
  const connection = serveWith(loop, socket, reader, impl, InitServer, serveOpts);
  await connection.disconnected;
  await loop.done;
  return connection;
}

// ---------------------------------------------------------------------------------------------
// Listeners

/** Options of {@link listenConnections}: accept-loop options plus serve options. */
export interface ListenConnectionsOptions extends ListenOptions, Omit<ServeOptions, "ownsImpl"> {
  /** Called for each connection when it starts being served (e.g. to log or track it). */
  onConnection?: (connection: Connection) => void;
  /** Caps on bytes queued for a client that does not read (docs/rpc.md "Flow control"). */
  flow?: Partial<WriteFlowLimits>;
}

/**
 * Serve `impl` as the Init object to every client that connects to a Unix socket path or TCP
 * port (upstream `ListenConnections`), at most `maxConnections` at a time. The application keeps
 * ownership of `impl` (it is shared by all connections). See {@link listenSockets} for socket file
 * handling (mode 0600, stale files) and how the limit behaves.
 */
export function listenConnections<I>(
  target: ListenTarget,
  loop: EventLoop,
  impl: I,
  InitServer: ProxyServerCtor<I>,
  opts: ListenConnectionsOptions = {},
): Promise<Listener> {
  const { maxConnections, maxPending, parkTimeoutMs, host, mode, frameTimeoutMs, firstMessageTimeoutMs, frameBudget, readInPlace, onConnection, ...serveOpts } = opts;
  const listenOpts: ListenOptions = {};
  if (parkTimeoutMs !== undefined) listenOpts.parkTimeoutMs = parkTimeoutMs;
  if (frameTimeoutMs !== undefined) listenOpts.frameTimeoutMs = frameTimeoutMs;
  if (firstMessageTimeoutMs !== undefined) listenOpts.firstMessageTimeoutMs = firstMessageTimeoutMs;
  if (frameBudget !== undefined) listenOpts.frameBudget = frameBudget;
  if (maxConnections !== undefined) listenOpts.maxConnections = maxConnections;
  if (maxPending !== undefined) listenOpts.maxPending = maxPending;
  if (host !== undefined) listenOpts.host = host;
  if (mode !== undefined) listenOpts.mode = mode;
  // Served sockets are read through a SocketReader where Node allows the switch (listen.ts).
  listenOpts.readInPlace = readInPlace ?? true;
  return listenSockets(
    target,
    async (socket, reader) => {
      const connection = serveWith(loop, socket, reader, impl, InitServer, { ...serveOpts, ownsImpl: false });
      onConnection?.(connection);
      // Accepted with pauseOnConnect (see listen.ts): start reading now that the transport listens
      // (a reader-fed transport resumes the socket itself when it starts).
      if (reader === undefined) socket.resume();
      await connection.disconnected;
    },
    listenOpts,
  );
}

/**
 * Connect to a Unix socket path (string) or TCP port (number, on `host`, default 127.0.0.1) and
 * return the Init client once the server has answered Bootstrap (and `construct`, when the Init
 * interface declares one): the connection is being served. While the server is at its connection
 * limit this waits (the socket is connected but not yet served); a caller that wants a bound
 * passes `signal`. Rejects with the socket error (ENOENT, ECONNREFUSED...) when nothing listens,
 * with the connection's error when the server hangs up or refuses the bootstrap, and with the
 * signal's reason when it aborts first (the socket is closed in every case).
 */
export async function connectSocket<C>(
  loop: EventLoop,
  target: ListenTarget,
  InitClient: ProxyClientCtor<C>,
  opts: ConnectOptions & { host?: string; signal?: AbortSignal; flow?: Partial<WriteFlowLimits> } = {},
): Promise<C> {
  const { host, signal, flow, ...connectOpts } = opts;
  signal?.throwIfAborted();
  // Read through onread (packages/capnp socket-read.ts): no Readable stream per read.
  const reader = new SocketReader();
  const onread = reader.onread;
  const socket =
    typeof target === "string" ? net.connect({ path: target, onread })
    : typeof target === "number" ? net.connect({ port: target, host: host ?? "127.0.0.1", noDelay: true, onread })
    : "path" in target ? net.connect({ path: target.path, onread })
    : net.connect({ port: target.port, host: target.host ?? host ?? "127.0.0.1", noDelay: true, onread });
  // Aborting destroys the socket: whatever we wait for then fails, and we throw the reason.
  const onAbort = (): void => void socket.destroy(signal!.reason as Error);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve();
      });
      socket.once("error", reject);
    });
    const client = await connectTransport(loop, streamTransport(socket, connectOpts.limits, flow, reader), InitClient, connectOpts);
    await servedBy(client as ProxyClientBase);
    return client;
  } catch (e) {
    socket.destroy();
    throw signal?.aborted === true ? signal.reason : e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Wait until the server has answered our Bootstrap (an Init without `construct` has had no round
 * trip yet, so the connection may still be parked): resolves once the bootstrap capability has
 * resolved. On failure the client (and its connection) is closed and the error rethrown.
 */
async function servedBy(client: ProxyClientBase): Promise<void> {
  try {
    await client.$cap.whenResolved();
  } catch (e) {
    await client.close();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// WebSocket

/** Options of {@link connectWebSocket}. */
export interface ConnectWebSocketOptions extends OpenWebSocketOptions {
  connect?: ConnectOptions;
}

/** Open a WebSocket to `url` (see `openWebSocket` for token/origin) and connect to its Init object. */
export async function connectWebSocket<C>(loop: EventLoop, url: string | URL, InitClient: ProxyClientCtor<C>, opts: ConnectWebSocketOptions = {}): Promise<C> {
  const transport: Transport = await openWebSocket(url, opts);
  return connectTransport(loop, transport, InitClient, opts.connect);
}

/** Options of {@link listenWebSocketConnections}. */
export interface WebSocketConnectionsOptions extends WebSocketListenOptions {
  serve?: Omit<ServeOptions, "ownsImpl">;
  /** Called for each accepted (authenticated) connection, e.g. to log or track it. */
  onConnection?: (connection: Connection, req: IncomingMessage) => void;
}

/**
 * Serve `impl` as the Init object to every authenticated WebSocket client (loopback by default;
 * token and/or Origin allow-list required, see `listenWebSocket`). The application keeps
 * ownership of `impl`. `listener.close()` closes open connections too.
 */
export function listenWebSocketConnections<I>(
  loop: EventLoop,
  impl: I,
  InitServer: ProxyServerCtor<I>,
  opts: WebSocketConnectionsOptions,
): Promise<WebSocketListener> {
  const { serve, onConnection, ...wsOpts } = opts;
  return listenWebSocket(wsOpts, (transport, req) => {
    const connection = serveTransport(loop, transport, impl, InitServer, { ...serve, ownsImpl: false });
    onConnection?.(connection, req);
  });
}

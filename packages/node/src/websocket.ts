/**
 * Cap'n Proto RPC over WebSocket (the `ws` package): a {@link Transport} that carries one
 * Cap'n Proto message per binary frame, a client that opens one, and a server that accepts them
 * on loopback and authenticates every upgrade request (bearer token and/or Origin allow-list)
 * before any RPC traffic flows.
 *
 * The transport's state, early-message queue and once-only end report live in capnp's
 * `TransportLifecycle`; its write-side flow control (pause reading while `bufferedAmount` is
 * high, terminate past the hard cap or a long pause without progress; pongs included, the
 * transport answers pings itself) in capnp's `WriteFlow` (docs/rpc.md "Flow control"). The
 * server's hostile-peer limits (upgrade/message timeouts, `maxConnections` parking, a shared
 * budget for partial messages) live in `ws-guard.ts` (docs/rpc.md "WebSocket listener limits").
 *
 * Threading: everything here runs on the thread that owns the socket (the event-loop thread).
 */

import * as http from "node:http";
import type { EventEmitter } from "node:events";
import type { AddressInfo } from "node:net";
import { timingSafeEqual, createHash } from "node:crypto";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import {
  DEFAULT_WRITE_FLOW,
  DisconnectedError,
  FrameBudget,
  FlowWatch,
  LinkState,
  ProtocolError,
  resolveWriteFlow,
  RpcError,
  TransportLifecycle,
  WriteFlow,
} from "@multiprocess-ts/capnp";
import type {
  FlowControlledTransport,
  FlowHost,
  LifecycleHost,
  LimitError,
  Transport,
  TransportSink,
  WriteFlowLimits,
  WriteFlowStats,
} from "@multiprocess-ts/capnp";
import { DEFAULT_FRAME_LIMITS, decodeSingleFrame, encodeSingleFrame, type FrameLimits } from "./frame.js";
import { DEFAULT_FRAME_BUDGET_BYTES, DEFAULT_FRAME_TIMEOUT_MS } from "./listen.js";
import { WsGuard, type WsGuardEvents, type WsGuardLimits } from "./ws-guard.js";

/** Options of {@link webSocketTransport}. */
export interface WebSocketTransportOptions {
  limits?: Partial<FrameLimits> | undefined;
  /** Caps on bytes queued for a peer that does not read (default `DEFAULT_WRITE_FLOW`). */
  flow?: Partial<WriteFlowLimits> | undefined;
}

/**
 * Wrap an OPEN `ws` WebSocket as a Transport. Takes ownership of the socket: the transport closes
 * it on `close()` (close code 1000, after queued frames) and terminates it on `destroy()`.
 * A text frame or a frame that is not exactly one message is a protocol error (close code 1002).
 */
export function webSocketTransport(ws: WebSocket, opts: WebSocketTransportOptions = {}): FlowControlledTransport {
  if (ws.readyState !== WebSocket.OPEN) throw new Error("webSocketTransport needs an open WebSocket");
  const flow = opts.flow === undefined ? DEFAULT_WRITE_FLOW : resolveWriteFlow(opts.flow);
  return new WebSocketTransport(ws, { ...DEFAULT_FRAME_LIMITS, ...opts.limits }, flow);
}

const BINARY = { binary: true } as const;

class WebSocketTransport implements FlowControlledTransport, LifecycleHost, FlowHost {
  private readonly life = new TransportLifecycle(this);
  /** Created when `bufferedAmount` first passes the resume mark. */
  private flow: WriteFlow | null = null;
  private watch: FlowWatch | null = null;
  private readonly socketClosed: Promise<void>;

  constructor(
    private readonly ws: WebSocket,
    private readonly limits: FrameLimits,
    private readonly flowLimits: WriteFlowLimits,
  ) {
    ws.binaryType = "nodebuffer";
    this.socketClosed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
    ws.on("message", (data: RawData, isBinary: boolean) => this.onFrame(data, isBinary));
    // Pongs are ours to send (autoPong is off): they count against flow control like any frame,
    // so a peer that pings without reading is paused and then cut rather than buffered forever.
    // (A socket made elsewhere with ws's default autoPong already answers; then we do not.)
    if ((ws as unknown as { _autoPong?: boolean })._autoPong === false) ws.on("ping", (data: Buffer) => this.onPing(data));
    ws.on("error", (e: Error) => {
      this.life.noteError(new DisconnectedError(`WebSocket error: ${e.message}`, { cause: e }));
    });
    ws.once("close", (code: number, reason: Buffer) => this.onClose(code, reason.toString()));
  }

  get name(): string {
    return "WebSocketTransport";
  }

  start(sink: TransportSink): void {
    this.life.start(sink); // guard: throws when called twice; hands over early messages
  }

  send(segments: Uint8Array[]): void {
    if (!this.life.canSend || this.ws.readyState !== WebSocket.OPEN) return;
    const frame = encodeSingleFrame(segments);
    if (this.flow === null && this.ws.bufferedAmount + frame.byteLength <= this.flowLimits.resumeReadingAt) {
      this.ws.send(frame, BINARY);
      return;
    }
    // Queue is building up: watch it. Each send's callback runs once its bytes left for the OS.
    const flow = (this.flow ??= new WriteFlow(this.flowLimits, this, (this.watch ??= new FlowWatch())));
    this.ws.send(frame, BINARY, this.onFlushed);
    const err = flow.grew(this.ws.bufferedAmount);
    if (err !== undefined) this.destroy(err);
  }

  private onPing(data: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.flow === null && this.ws.bufferedAmount + data.byteLength <= this.flowLimits.resumeReadingAt) {
      this.ws.pong(data);
      return;
    }
    const flow = (this.flow ??= new WriteFlow(this.flowLimits, this, (this.watch ??= new FlowWatch())));
    this.ws.pong(data, undefined, this.onFlushed);
    const err = flow.grew(this.ws.bufferedAmount);
    if (err !== undefined) this.destroy(err);
  }

  private readonly onFlushed = (): void => {
    this.flow?.shrank(this.ws.bufferedAmount);
  };

  flowStats(): WriteFlowStats {
    if (this.flow !== null) return this.flow.stats();
    const q = this.ws.bufferedAmount;
    return { queuedBytes: q, peakQueuedBytes: q, readPaused: false, pauses: 0 };
  }

  watchFlow(cb: (stats: WriteFlowStats) => void): () => void {
    return (this.watch ??= new FlowWatch()).set(cb);
  }

  pauseReading(): void {
    this.life.hold(); // frames the receiver already has wait too
    this.ws.pause();
  }

  resumeReading(): void {
    this.life.unhold(); // may pause us again (a reply to a held message)
    if (this.flow?.readPaused !== true && this.life.canDeliver) this.ws.resume();
  }

  queuedBytesNow(): number {
    return this.ws.bufferedAmount;
  }

  flowStalled(err: LimitError): void {
    this.destroy(err);
  }

  close(): Promise<void> {
    if (this.life.beginClose()) this.ws.close(1000);
    return this.socketClosed;
  }

  destroy(err?: Error): void {
    if (this.life.isEnded) return;
    this.life.noteError(err);
    this.life.beginClose();
    this.ws.terminate();
  }

  /** A throwing sink is an engine bug: end the link with it rather than crash the process. */
  sinkThrew(err: Error): void {
    this.destroy(err);
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (this.life.state !== LinkState.Open) return;
    if (!isBinary) {
      this.protocolFailure(new ProtocolError("text WebSocket frame; Cap'n Proto needs binary frames"));
      return;
    }
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let segments: Uint8Array[];
    try {
      // Plain Uint8Array views (Buffer#slice does not copy; the engine expects Uint8Array semantics).
      segments = decodeSingleFrame(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), this.limits);
    } catch (e) {
      this.protocolFailure(e instanceof RpcError ? e : new ProtocolError(String(e)));
      return;
    }
    this.life.deliver(segments);
  }

  private protocolFailure(err: Error): void {
    this.life.noteError(err);
    this.life.beginClose();
    this.ws.close(1002, err.message.slice(0, 120));
  }

  private onClose(code: number, reason: string): void {
    if (this.life.isEnded) return;
    this.flow?.release();
    // A noted failure wins; then a close we started or a normal code is clean.
    const clean = this.life.state === LinkState.Closing || code === 1000 || code === 1001;
    this.life.end(clean ? undefined : new DisconnectedError(`WebSocket closed (code ${code}${reason ? `: ${reason}` : ""})`));
  }
}

// ---------------------------------------------------------------------------------------------
// Client

/** Options of {@link openWebSocket}. */
export interface OpenWebSocketOptions extends WebSocketTransportOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string | undefined;
  /** Sent as the `Origin` header. */
  origin?: string | undefined;
  /** Extra request headers. */
  headers?: Record<string, string> | undefined;
  /** Abort the opening handshake. */
  signal?: AbortSignal | undefined;
}

/** The server refused the WebSocket upgrade (`status` 401: bad/missing token, 403: origin). */
export class WebSocketRejectedError extends Error {
  readonly code = "MP_ERR_WS_REJECTED";
  constructor(readonly status: number, message: string) {
    super(message);
  }
  override get name(): string {
    return "WebSocketRejectedError";
  }
}

/**
 * Open a WebSocket to `url` and resolve with a Transport once the handshake succeeded.
 * Rejects with {@link WebSocketRejectedError} when the server answers the upgrade with an HTTP
 * error (401/403), or with the socket error when it cannot connect.
 */
export function openWebSocket(url: string | URL, opts: OpenWebSocketOptions = {}): Promise<Transport> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers["authorization"] = `Bearer ${opts.token}`;
  return new Promise<Transport>((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers,
      ...(opts.origin !== undefined ? { origin: opts.origin } : {}),
      maxPayload: (opts.limits?.maxMessageBytes ?? DEFAULT_FRAME_LIMITS.maxMessageBytes) + 8 * 520,
      perMessageDeflate: false,
      autoPong: false, // the transport answers pings under flow control
    });
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(opts.signal?.reason ?? new Error("aborted"));
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const done = (): void => {
      settled = true;
      opts.signal?.removeEventListener("abort", onAbort);
    };
    ws.once("unexpected-response", (_req, res: http.IncomingMessage) => {
      if (settled) return;
      done();
      const status = res.statusCode ?? 0;
      res.resume();
      ws.terminate();
      reject(new WebSocketRejectedError(status, `WebSocket upgrade to ${String(url)} rejected: HTTP ${status} ${res.statusMessage ?? ""}`.trim()));
    });
    ws.once("error", (e: Error) => {
      if (settled) return;
      done();
      reject(e);
    });
    ws.once("open", () => {
      if (settled) return;
      done();
      resolve(webSocketTransport(ws, opts));
    });
    if (opts.signal?.aborted) onAbort();
  });
}

// ---------------------------------------------------------------------------------------------
// Server

/** Options of {@link listenWebSocket}. At least one of `token`/`allowedOrigins` is required. */
export interface WebSocketListenOptions extends WebSocketTransportOptions {
  /** TCP port; 0 (default) picks a free one, see {@link WebSocketListener.port}. */
  port?: number | undefined;
  /** Bind address; default 127.0.0.1. Binding elsewhere is allowed but is your decision. */
  host?: string | undefined;
  /** Only upgrade requests to this path (default: any path). */
  path?: string | undefined;
  /**
   * Required bearer token: `Authorization: Bearer <token>` or `?token=<token>` in the URL.
   * A missing or wrong token gets HTTP 401.
   */
  token?: string | undefined;
  /** Allowed `Origin` header values; a request with another or no Origin gets HTTP 403. */
  allowedOrigins?: readonly string[] | undefined;
  /** Explicitly accept unauthenticated upgrades (neither token nor origins). Off by default. */
  allowUnauthenticated?: boolean | undefined;
  /**
   * Serve at most this many connections at once (0/undefined = no limit); further upgrade
   * requests are parked (not answered, not read) until a slot frees, for at most `parkTimeoutMs`.
   */
  maxConnections?: number | undefined;
  /** Bound on parked upgrade requests while at the limit (default 128); beyond it they are closed. */
  maxPending?: number | undefined;
  /** Close a TCP connection that has not completed its HTTP upgrade this long after being accepted (default 30 s; 0 = never). */
  upgradeTimeoutMs?: number | undefined;
  /**
   * Close (destroy the socket of) an upgrade request parked at `maxConnections` this long
   * without getting a slot (default 30 s; 0 = never): events `limit` (with a `LimitError`) and `drop`.
   */
  parkTimeoutMs?: number | undefined;
  /** Close a connection whose message stays incomplete this long (default 30 s; 0 = never). */
  frameTimeoutMs?: number | undefined;
  /** Close a connection that completes no message this long after its upgrade (default 30 s; 0 = never). */
  firstMessageTimeoutMs?: number | undefined;
  /**
   * Cap on partially received message bytes of all connections together (share one object
   * between listeners for a per-process cap). Default: a new `FrameBudget` of 256 MiB per listener.
   */
  frameBudget?: FrameBudget | undefined;
}

/** A listening WebSocket server from {@link listenWebSocket}. */
export interface WebSocketListener {
  readonly host: string;
  readonly port: number;
  /** `ws://host:port/path` (without token). */
  readonly url: string;
  /** Number of open WebSocket connections. */
  readonly connections: number;
  /** Upgrade requests parked while at `maxConnections`. */
  readonly pending: number;
  /** The budget partial messages of this listener's connections share. */
  readonly frameBudget: FrameBudget;
  /** `park`, `drop` and `limit` (a connection or parked upgrade closed by a timeout or the frame budget, with the reason and a `LimitError`). */
  readonly events: EventEmitter<WsGuardEvents>;
  /** Stop listening and close every open connection (their transports end). Idempotent. */
  close(): Promise<void>;
}

function sameSecret(a: string, b: string): boolean {
  // Hash first so the comparison is constant time whatever the lengths.
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Decide whether an upgrade request may proceed: undefined = yes, else the HTTP status. */
function authorize(req: http.IncomingMessage, opts: WebSocketListenOptions): { status: 401 | 403 | 404; text: string } | undefined {
  const url = new URL(req.url ?? "/", "ws://localhost");
  if (opts.path !== undefined && url.pathname !== opts.path) return { status: 404, text: "Not Found" };
  if (opts.token !== undefined) {
    const auth = req.headers["authorization"];
    const bearer = typeof auth === "string" && /^Bearer /i.test(auth) ? auth.slice(7).trim() : undefined;
    const query = url.searchParams.get("token") ?? undefined;
    const given = bearer ?? query;
    if (given === undefined || !sameSecret(given, opts.token)) return { status: 401, text: "Unauthorized" };
  }
  if (opts.allowedOrigins !== undefined) {
    const origin = req.headers["origin"];
    if (typeof origin !== "string" || !opts.allowedOrigins.includes(origin)) return { status: 403, text: "Forbidden" };
  }
  return undefined;
}

/**
 * Listen for WebSocket connections and hand each authenticated one to `onTransport` as a
 * Transport (the callback owns it). Rejected upgrades never reach `onTransport`: they get an
 * HTTP 401 (token) or 403 (origin) response and the socket is closed.
 */
export async function listenWebSocket(
  opts: WebSocketListenOptions,
  onTransport: (transport: FlowControlledTransport, req: http.IncomingMessage) => void,
): Promise<WebSocketListener> {
  if (opts.token === undefined && opts.allowedOrigins === undefined && opts.allowUnauthenticated !== true) {
    throw new Error("listenWebSocket needs a token or allowedOrigins (or allowUnauthenticated: true)");
  }
  if (opts.token !== undefined && opts.token.length === 0) throw new Error("listenWebSocket: empty token");
  const host = opts.host ?? "127.0.0.1";
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { "content-type": "text/plain", connection: "close" });
    res.end("WebSocket upgrade required\n");
  });
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: (opts.limits?.maxMessageBytes ?? DEFAULT_FRAME_LIMITS.maxMessageBytes) + 8 * 520,
    perMessageDeflate: false,
    autoPong: false, // the transport answers pings under flow control
  });
  const guard = new WsGuard(guardLimits(opts));
  server.on("connection", (socket) => guard.accepted(socket));
  server.on("upgrade", (req, socket, head) => {
    const refusal = authorize(req, opts);
    if (refusal !== undefined) {
      socket.on("error", () => {}); // a client that resets while we answer is not our failure
      const extra = refusal.status === 401 ? 'WWW-Authenticate: Bearer realm="multiprocess-ts"\r\n' : "";
      socket.end(`HTTP/1.1 ${refusal.status} ${refusal.text}\r\n${extra}Connection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    socket.on("error", () => {}); // while parked or upgrading; the transport reports errors once open
    guard.admit(socket, () =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (closed) {
          ws.terminate();
          return;
        }
        const transport = webSocketTransport(ws, opts);
        guard.serve(
          socket,
          () => ws.isPaused,
          (err) => {
            ws.close(1008, err.message.slice(0, 120));
            transport.destroy(err);
          },
        );
        onTransport(transport, req);
      }),
    );
  });
  let closed = false;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: opts.port ?? 0, host }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | undefined;
  return {
    host: addr.address,
    port: addr.port,
    url: `ws://${shownHost}:${addr.port}${opts.path ?? "/"}`,
    get connections() {
      return wss.clients.size;
    },
    get pending() {
      return guard.pending;
    },
    frameBudget: guard.limits.budget,
    events: guard,
    close() {
      closing ??= (async () => {
        closed = true;
        guard.close();
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        const sockets = [...wss.clients].map(
          (ws) => new Promise<void>((resolve) => {
            if (ws.readyState === WebSocket.CLOSED) resolve();
            else {
              ws.once("close", () => resolve());
              ws.close(1001, "server shutting down");
            }
          }),
        );
        await Promise.all(sockets);
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        server.closeAllConnections();
        await serverClosed;
      })();
      return closing;
    },
  };
}

function timeoutOf(v: number | undefined, name: string): number {
  if (v === undefined) return DEFAULT_FRAME_TIMEOUT_MS;
  if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`listenWebSocket: ${name} must be a non-negative number of milliseconds`);
  return v;
}

function guardLimits(opts: WebSocketListenOptions): WsGuardLimits {
  const max = opts.maxConnections ?? 0;
  if (!Number.isInteger(max) || max < 0) throw new RangeError("listenWebSocket: maxConnections must be a non-negative integer");
  const maxPending = opts.maxPending ?? 128;
  if (!Number.isInteger(maxPending) || maxPending < 0) throw new RangeError("listenWebSocket: maxPending must be a non-negative integer");
  return {
    maxConnections: max,
    maxPending,
    upgradeTimeoutMs: timeoutOf(opts.upgradeTimeoutMs, "upgradeTimeoutMs"),
    parkTimeoutMs: timeoutOf(opts.parkTimeoutMs, "parkTimeoutMs"),
    frameTimeoutMs: timeoutOf(opts.frameTimeoutMs, "frameTimeoutMs"),
    firstMessageTimeoutMs: timeoutOf(opts.firstMessageTimeoutMs, "firstMessageTimeoutMs"),
    budget: opts.frameBudget ?? new FrameBudget(DEFAULT_FRAME_BUDGET_BYTES),
  };
}

/**
 * Accept loops on Unix-domain and TCP sockets, with upstream's `max_connections` behaviour
 * (libmultiprocess#269, `ListenConnections`).
 *
 * Upstream stops calling accept(2) while the limit is reached, so extra clients wait in the
 * kernel backlog: their connect succeeds, nothing is served until a slot frees. Node cannot stop
 * accepting on a listening handle, so we get the same observable behaviour one level up: sockets
 * beyond the limit are accepted with `pauseOnConnect` (not read, not served) and parked in FIFO
 * order; each disconnect hands its slot to the oldest parked socket. A parked socket whose client
 * already hung up is served anyway; its connection ends at once and frees the slot again
 * (upstream's "client disconnects before being accepted" case). `maxPending` bounds the parking
 * lot the way the backlog bounds the kernel queue; beyond it sockets are closed at once. A socket
 * parked for `parkTimeoutMs` without getting a slot is closed (`limit`, then `drop`), so peers that
 * connect and wait cannot keep the lot full. Parked sockets all wait the same time, so the oldest
 * (the head of the queue) expires first: one timer, armed for the head's deadline, re-armed when
 * the head changes (served, expired, or closed by itself), unref'd, cleared when the listener closes.
 *
 * Hostile peers (docs/rpc.md "Listener limits"): a served socket's bytes are followed by a
 * `FrameTracker` (frame boundaries only, no copy). A frame left incomplete for `frameTimeoutMs`,
 * or a connection that completes no message within `firstMessageTimeoutMs`, is closed, so idle
 * or trickling peers cannot hold the slots; partial frames of all served sockets share one
 * `FrameBudget` (`frameBudget`, default one per listener), and the socket whose frame would pass
 * it is closed. Parked sockets are not read (a peer that hangs up while parked is noticed when it
 * is served, or when `parkTimeoutMs` closes it); while flow control has paused reading a served
 * socket, its partial-frame clock does not run.
 *
 * With `readInPlace` (listenConnections sets it), a socket is switched to a `SocketReader` when it
 * is served (packages/capnp socket-read.ts `readSocketInPlace`: Node internals, feature-detected)
 * and the handler gets the reader: reads land in the reader's slab or a large message's own
 * buffer, with no Readable stream per read, and the tracker follows the reader's reads (its tap)
 * instead of `'data'`. Where the switch is not possible the handler gets no reader and the socket
 * is read as a stream, as without the option. Parked sockets are switched only when served.
 *
 * Threading: everything runs on the thread that calls {@link listenSockets} (the loop thread).
 */

import * as net from "node:net";
import * as fs from "node:fs";
import { EventEmitter } from "node:events";
import { FrameBudget, FrameTracker, SocketReader, readSocketInPlace } from "@multiprocess-ts/capnp";
import { MAX_TIMER_MS, sweepPeriodMs } from "./sweep.js";

/**
 * Default of {@link ListenOptions.frameTimeoutMs}, {@link ListenOptions.firstMessageTimeoutMs} and
 * {@link ListenOptions.parkTimeoutMs}.
 */
export const DEFAULT_FRAME_TIMEOUT_MS = 30_000;
/** Default limit of the per-listener {@link FrameBudget}: 256 MiB of partial frames. */
export const DEFAULT_FRAME_BUDGET_BYTES = 256 * 1024 * 1024;

/** Where to listen: a Unix socket path, a TCP port (on `host`, default 127.0.0.1), or either as an object. */
export type ListenTarget = string | number | { path: string } | { port: number; host?: string };

/** Options of {@link listenSockets} / `listenConnections`. */
export interface ListenOptions {
  /** Serve at most this many connections at once (0/undefined = no limit). */
  maxConnections?: number;
  /** Bound on parked sockets while at the limit (default 128, like a listen backlog). */
  maxPending?: number;
  /** Close a socket parked at `maxConnections` this long without getting a slot (default 30 s; 0 = never). */
  parkTimeoutMs?: number;
  /** TCP bind address when the target is a port; default 127.0.0.1. */
  host?: string;
  /** Unix socket file mode; default 0o600 (owner only). */
  mode?: number;
  /** Close a served socket whose frame stays incomplete this long (default 30 s; 0 = never). */
  frameTimeoutMs?: number;
  /** Close a served socket that completes no message this long after being served (default 30 s; 0 = never). */
  firstMessageTimeoutMs?: number;
  /**
   * Cap on partially received frame bytes of all served sockets together (share one object
   * between listeners for a per-process cap). Default: a new `FrameBudget` of 256 MiB per listener.
   */
  frameBudget?: FrameBudget;
  /**
   * Read each served socket through a `SocketReader` (net.Socket's `onread` path, see the file
   * comment), handed to the handler as its second argument; the socket then emits no `'data'`.
   * Default false (listenConnections: true). Falls back to the Readable stream (no reader) where
   * the switch is not possible.
   */
  readInPlace?: boolean;
}

/**
 * What {@link listenSockets} calls for each connection it serves. Resolve when it has ended.
 * `reader`: with `readInPlace`, the reader the socket is now read through (hand both to
 * `streamTransport`); undefined when the socket is read as a stream.
 */
export type SocketHandler = (socket: net.Socket, reader: SocketReader | undefined) => Promise<void>;

/** Events of a {@link Listener} (all synchronous, on the loop thread). */
export interface ListenerEvents {
  /** A socket was accepted and handed to the handler (it holds a slot now). */
  serve: [id: number];
  /** A socket was accepted while at the limit and waits for a slot. */
  park: [id: number];
  /** The handler of a served socket finished; its slot is free. */
  release: [id: number];
  /** A socket was closed unserved (parking lot full, parked for `parkTimeoutMs`, or the listener closed). */
  drop: [id: number];
  /** accept(2) or the listening socket failed after listening started (e.g. EMFILE). */
  acceptError: [err: Error];
  /** The handler threw or rejected (the connection is still counted as released). */
  handlerError: [err: unknown, id: number];
  /**
   * A served socket was closed by a timeout or the frame budget, or a parked one by
   * `parkTimeoutMs` (then `drop` follows); `reason` says which.
   */
  limit: [id: number, reason: string];
}

/** What the listener follows of a served socket. */
interface Served {
  id: number;
  socket: net.Socket;
  tracker: FrameTracker;
  since: number;
  /** Follows each chunk ('data') or read (the reader's tap: the first `n` bytes). */
  onData: (chunk: Uint8Array, n?: number) => void;
  /** The reader the socket is read through (its tap feeds the tracker), or null: 'data'. */
  reader: SocketReader | null;
}

/** A socket parked at `maxConnections`. */
interface Parked {
  id: number;
  socket: net.Socket;
  /** When it was parked (Date.now). */
  since: number;
  /** Its 'close' listener: a parked socket that closes leaves the queue. */
  onClose: () => void;
}

/** Limits, timeouts and budget of a {@link Listener}, resolved. */
interface Guard {
  maxPending: number;
  frameTimeoutMs: number;
  firstMessageTimeoutMs: number;
  parkTimeoutMs: number;
  budget: FrameBudget;
  readInPlace: boolean;
}

/** A listening socket from {@link listenSockets}. */
export class Listener extends EventEmitter<ListenerEvents> {
  /** `{ path }` for a Unix socket, or the bound TCP `{ host, port }`. */
  readonly address: { path: string } | { host: string; port: number };
  private active = 0;
  private readonly parked: Parked[] = [];
  /** The one park timer: armed for the head of `parked` (its deadline in `parkDeadline`). */
  private parkTimer: NodeJS.Timeout | undefined;
  private parkDeadline = 0;
  private readonly servedSockets = new Map<net.Socket, Served>();
  private sweeper: NodeJS.Timeout | undefined;
  private readonly running = new Set<Promise<void>>();
  private nextId = 1;
  private closing: Promise<void> | undefined;

  /** @internal */
  constructor(
    private readonly server: net.Server,
    private readonly handler: SocketHandler,
    private readonly max: number,
    unixPath: string | undefined,
    private readonly guard: Guard,
  ) {
    super();
    const a = server.address();
    if (unixPath !== undefined) this.address = { path: unixPath };
    else {
      const info = a as net.AddressInfo;
      this.address = { host: info.address, port: info.port };
    }
    server.on("connection", (socket) => this.onConnection(socket));
    // A net.Server 'error' without a listener would throw; report it as an event instead.
    server.on("error", (err) => this.emit("acceptError", err));
  }

  /** Connections being served now. */
  get connections(): number {
    return this.active;
  }

  /** Accepted sockets waiting for a slot. */
  get pending(): number {
    return this.parked.length;
  }

  /** The budget partial frames of served sockets share. */
  get frameBudget(): FrameBudget {
    return this.guard.budget;
  }

  /**
   * Stop accepting, close parked sockets, and wait for served connections to end. Served
   * connections are not cut: pass `{ destroy: true }` to destroy their sockets (their handlers
   * then see the disconnect and finish). Removes the Unix socket file. Idempotent.
   */
  close(opts: { destroy?: boolean } = {}): Promise<void> {
    if (opts.destroy === true) for (const s of this.servedSockets.keys()) s.destroy();
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.disarmParkTimer();
      for (const p of this.parked.splice(0)) {
        p.socket.off("close", p.onClose);
        p.socket.destroy();
        this.emit("drop", p.id);
      }
      await closed;
      await Promise.all([...this.running]);
    })();
    return this.closing;
  }

  private onConnection(socket: net.Socket): void {
    const id = this.nextId++;
    if (this.closing !== undefined) {
      socket.destroy();
      this.emit("drop", id);
      return;
    }
    if (this.max > 0 && this.active >= this.max) {
      if (this.parked.length >= this.guard.maxPending) {
        socket.destroy();
        this.emit("drop", id);
        return;
      }
      this.park(id, socket);
      return;
    }
    this.serve(id, socket);
  }

  /** Queue `socket` for a slot (FIFO), timed by the park timer. */
  private park(id: number, socket: net.Socket): void {
    // Parked: not read (pauseOnConnect), so the peer's messages stay in the kernel buffer.
    // Swallow errors meanwhile (ECONNRESET of a client that gave up); serving surfaces them.
    socket.on("error", () => {});
    const p: Parked = { id, socket, since: Date.now(), onClose: () => this.unpark(p) };
    socket.once("close", p.onClose);
    this.parked.push(p);
    this.emit("park", id);
    this.armParkTimer();
  }

  /** A parked socket closed by itself: it leaves the queue (not served, not counted as dropped). */
  private unpark(p: Parked): void {
    const i = this.parked.indexOf(p);
    if (i < 0) return;
    this.parked.splice(i, 1);
    if (i === 0) this.armParkTimer();
  }

  /** Arm the park timer for the head's deadline (or clear it: no head, or no parkTimeoutMs). */
  private armParkTimer(): void {
    const head = this.parked[0];
    const t = this.guard.parkTimeoutMs;
    if (head === undefined || t === 0 || this.closing !== undefined) {
      this.disarmParkTimer();
      return;
    }
    const deadline = head.since + t;
    if (this.parkTimer !== undefined && this.parkDeadline === deadline) return;
    this.disarmParkTimer();
    this.parkDeadline = deadline;
    this.parkTimer = setTimeout(() => this.expireParked(), Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now())));
    this.parkTimer.unref();
  }

  private disarmParkTimer(): void {
    if (this.parkTimer === undefined) return;
    clearTimeout(this.parkTimer);
    this.parkTimer = undefined;
  }

  /** The park timer fired: close the sockets parked for `parkTimeoutMs` (oldest first), re-arm. */
  private expireParked(): void {
    this.parkTimer = undefined;
    const now = Date.now();
    const t = this.guard.parkTimeoutMs;
    while (this.closing === undefined && this.parked.length > 0 && now - this.parked[0]!.since >= t) {
      const p = this.parked.shift()!;
      p.socket.off("close", p.onClose);
      this.emit("limit", p.id, `the socket stayed parked at maxConnections = ${this.max} for parkTimeoutMs = ${t} without getting a slot`);
      p.socket.destroy();
      this.emit("drop", p.id);
    }
    this.armParkTimer();
  }

  private serve(id: number, socket: net.Socket): void {
    this.active++;
    this.emit("serve", id);
    let reader: SocketReader | undefined;
    if (this.guard.readInPlace) {
      reader = new SocketReader();
      if (!readSocketInPlace(socket, reader)) reader = undefined;
    }
    let run: Promise<void>;
    try {
      run = Promise.resolve(this.handler(socket, reader));
    } catch (e) {
      run = Promise.reject(e);
    }
    // After the handler: its transport gets each chunk first. The socket is paused
    // (pauseOnConnect), so listening for 'data' does not start the flow.
    this.follow(id, socket, reader ?? null);
    const tracked = run.then(
      () => undefined,
      (err: unknown) => {
        socket.destroy();
        this.emit("handlerError", err, id);
      },
    ).then(() => {
      this.running.delete(tracked);
      this.unfollow(socket);
      this.active--;
      this.emit("release", id);
      this.admit();
    });
    this.running.add(tracked);
  }

  private follow(id: number, socket: net.Socket, reader: SocketReader | null): void {
    const g = this.guard;
    const served: Served = {
      id,
      socket,
      tracker: new FrameTracker(g.budget, Date.now),
      since: Date.now(),
      onData: (chunk, n) => {
        if (!served.tracker.push(chunk, n)) this.cut(served, `partial frames of all connections would pass the frame budget of ${g.budget.limit} bytes`);
      },
      reader,
    };
    this.servedSockets.set(socket, served);
    if (reader !== null) reader.tap(served.onData);
    else socket.on("data", served.onData);
    socket.once("close", () => served.tracker.release());
    const period = sweepPeriodMs([g.frameTimeoutMs, g.firstMessageTimeoutMs]);
    if (this.sweeper === undefined && period !== undefined) {
      this.sweeper = setInterval(() => this.sweep(), period);
      this.sweeper.unref();
    }
  }

  private unfollow(socket: net.Socket): void {
    const served = this.servedSockets.get(socket);
    if (served === undefined) return;
    this.servedSockets.delete(socket);
    this.untrack(served);
    served.tracker.release();
    if (this.servedSockets.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Close served sockets whose frame stalled, or that never completed a message. */
  private sweep(): void {
    const now = Date.now();
    const { frameTimeoutMs, firstMessageTimeoutMs } = this.guard;
    for (const s of [...this.servedSockets.values()]) {
      const t = s.tracker;
      // Reading paused (flow control): we are not reading, so a partial frame is not the peer's
      // stall; the transport's pausedTimeoutMs bounds that state.
      const paused = s.socket.isPaused() && t.messages > 0;
      if (paused && t.partialSince >= 0) t.partialSince = now;
      if (!paused && frameTimeoutMs > 0 && t.partialSince >= 0 && now - t.partialSince > frameTimeoutMs) {
        this.cut(s, `a frame stayed incomplete for more than frameTimeoutMs = ${frameTimeoutMs}`);
      } else if (firstMessageTimeoutMs > 0 && t.messages === 0 && now - s.since > firstMessageTimeoutMs) {
        this.cut(s, `no message completed within firstMessageTimeoutMs = ${firstMessageTimeoutMs}`);
      }
    }
  }

  /** Close a served socket for `reason` (its handler then sees the disconnect and frees the slot). */
  private cut(s: Served, reason: string): void {
    if (s.socket.destroyed) return;
    s.tracker.release();
    this.untrack(s);
    this.emit("limit", s.id, reason);
    s.socket.destroy();
  }

  /** Stop feeding the tracker. */
  private untrack(s: Served): void {
    if (s.reader !== null) s.reader.tap(null);
    else s.socket.off("data", s.onData);
  }

  /** Hand free slots to parked sockets, oldest first. */
  private admit(): void {
    while (this.closing === undefined && this.parked.length > 0 && (this.max === 0 || this.active < this.max)) {
      const next = this.parked.shift()!;
      next.socket.off("close", next.onClose);
      this.serve(next.id, next.socket);
    }
    this.armParkTimer();
  }
}

function normalize(target: ListenTarget, host: string | undefined): { path: string } | { port: number; host: string } {
  if (typeof target === "string") return { path: target };
  if (typeof target === "number") return { port: target, host: host ?? "127.0.0.1" };
  if ("path" in target) return { path: target.path };
  return { port: target.port, host: target.host ?? host ?? "127.0.0.1" };
}

/** Error thrown when a Unix socket path is served by a live listener, or is not a socket. */
export class AddressInUseError extends Error {
  readonly code = "EADDRINUSE";
  constructor(message: string) {
    super(message);
  }
  override get name(): string {
    return "AddressInUseError";
  }
}

/** Probe a Unix socket path: "live" if something accepts, "stale" if connect is refused. */
function probe(path: string): Promise<"live" | "stale"> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path });
    s.once("connect", () => {
      s.destroy();
      resolve("live");
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      s.destroy();
      if (e.code === "ECONNREFUSED") resolve("stale");
      else if (e.code === "ENOENT") resolve("stale");
      else reject(e);
    });
  });
}

/** Remove a stale socket file at `path`; throw {@link AddressInUseError} if it is live or not a socket. */
async function clearStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  if (!st.isSocket()) throw new AddressInUseError(`cannot listen on ${path}: it exists and is not a socket`);
  if ((await probe(path)) === "live") {
    throw new AddressInUseError(`cannot listen on ${path}: another process is listening on it`);
  }
  try {
    fs.unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

/**
 * Listen on a Unix socket or a TCP port and call `handler` for each connection, at most
 * `maxConnections` at a time (see the file comment for how the limit behaves).
 *
 * Unix sockets are created with mode 0600 (option `mode`): the umask is narrowed around bind(2)
 * where the process allows it, and the file is chmod-ed before the first accept either way. A
 * stale socket file (exists, but connecting is refused) is removed first; a live one, or a path
 * that is not a socket, fails with {@link AddressInUseError}. The file is removed on `close()`.
 * TCP binds 127.0.0.1 unless `host` says otherwise.
 */
export async function listenSockets(target: ListenTarget, handler: SocketHandler, opts: ListenOptions = {}): Promise<Listener> {
  const where = normalize(target, opts.host);
  const max = opts.maxConnections ?? 0;
  if (!Number.isInteger(max) || max < 0) throw new RangeError("maxConnections must be a non-negative integer");
  const guard = guardOf(opts);
  // noDelay: RPC messages are small and latency-bound; Nagle + delayed ACK would add ~40 ms per
  // round trip on TCP (ignored for Unix sockets).
  const server = net.createServer({ pauseOnConnect: true, noDelay: true });
  if ("path" in where) {
    await clearStaleSocket(where.path);
    const mode = opts.mode ?? 0o600;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // bind(2) happens synchronously inside listen(); narrow the umask just around it so the
      // socket never exists with wider permissions. process.umask(mask) throws in workers; the
      // chmod below still applies there (with a short window, documented above).
      let oldMask: number | undefined;
      try {
        oldMask = process.umask(0o777 & ~mode);
      } catch {
        oldMask = undefined;
      }
      try {
        server.listen({ path: where.path }, () => {
          server.off("error", reject);
          resolve();
        });
      } finally {
        if (oldMask !== undefined) process.umask(oldMask);
      }
    });
    fs.chmodSync(where.path, mode);
    // The listener must not start before the chmod: connections are only handled once we
    // return, and `connection` events before that cannot happen (no turn has run in between).
    const listener = new Listener(server, handler, max, where.path, guard);
    return listener;
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: where.port, host: where.host }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return new Listener(server, handler, max, undefined, guard);
}

function timeoutOf(v: number | undefined, name: string): number {
  if (v === undefined) return DEFAULT_FRAME_TIMEOUT_MS;
  if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`${name} must be a non-negative number of milliseconds`);
  return v;
}

function guardOf(opts: ListenOptions): Guard {
  const maxPending = opts.maxPending ?? 128;
  if (!Number.isInteger(maxPending) || maxPending < 0) throw new RangeError("maxPending must be a non-negative integer");
  return {
    maxPending,
    frameTimeoutMs: timeoutOf(opts.frameTimeoutMs, "frameTimeoutMs"),
    firstMessageTimeoutMs: timeoutOf(opts.firstMessageTimeoutMs, "firstMessageTimeoutMs"),
    parkTimeoutMs: timeoutOf(opts.parkTimeoutMs, "parkTimeoutMs"),
    budget: opts.frameBudget ?? new FrameBudget(DEFAULT_FRAME_BUDGET_BYTES),
    readInPlace: opts.readInPlace === true,
  };
}

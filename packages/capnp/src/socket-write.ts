/**
 * {@link SocketWriter}: the stream transport's one-chunk write on a plain `net.Socket` while its
 * Writable side is idle (nothing buffered or in flight, not corked, connected, not ended), made
 * below `Writable.write()`. `Writable.write()` adds, per write, its buffering bookkeeping and an
 * after-write `process.nextTick` (the callback of a write the kernel took at once is deferred to
 * a tick), so a call loop paid a tick queue run per call for it (bench/README "Where the time
 * goes", eighth session).
 *
 * Two ways down, chosen per write:
 * - **Direct** (the usual one): the socket handle's own `writeBuffer(req, chunk)` with a request
 *   object reused across writes. Node's handle write (`_write` → `writeGeneric` in its
 *   stream_base_commons) makes a new native `WriteWrap` request object per write and sets six
 *   fields on it, even when the kernel takes every byte at once and the native side never looks
 *   at it (~0.4 µs per write, bench/README "Where the time goes", eleventh session). The request
 *   class is not public: it is found once per thread by letting Node's own `_write` write to a
 *   stand-in handle on a handle-less probe socket ({@link findWriteReq}); where anything differs
 *   from what is expected, every write takes the handle write below. A write libuv could not
 *   finish at once attaches the request to the native write (its async id is then set): that
 *   request is handed to the write and never reused; its `oncomplete` (called by Node's native
 *   side with the status, as for Node's own requests) ends it. Errors are reported as Node's
 *   handle write reports them (an Error `write <CODE>` with `errno`, `code`, `syscall`). Not
 *   while the socket has a timeout (`setTimeout`): Node's handle write refreshes it per write.
 *   The handle counts the bytes as for Node's own writes (`socket.bytesWritten` stays true).
 * - **The handle write** (`socket._write`, Node's `writeGeneric`), when the direct one is not
 *   available.
 *
 * Either way, a write libuv could not finish at once keeps the chunk until it completes: the
 * transport treats that as blocked (later messages wait in its queue, as after `write()` returned
 * false) and resumes on {@link DirectWriteHost.directWriteDone}. Errors end the stream as the
 * Writable would (`destroy(err)`: 'error', then 'close'); a write cancelled because the socket
 * was destroyed completes without an error, as Node's own completion does.
 *
 * Also the thread's spare batch buffers ({@link takeBatch} / {@link giveBatch}): a batch the
 * socket took at once is free again, and the next batch of ANY connection of this thread is built
 * in it. One pool per thread rather than one spare per connection, so a new connection's first
 * batch takes the same path as every later one (no first-use branch, see bench/README "Cold
 * start (tenth session)"), and an idle connection holds no batch buffer.
 *
 * Threading: the thread that owns the socket (its event loop); the request object and the spare
 * batches are per thread (module state of each thread's own module instance).
 */
import { Socket } from "node:net";
import { getSystemErrorName } from "node:util";

/** {@link SocketWriter.write}: the kernel took every byte; the chunk is free again. */
export const WROTE = 0;
/** {@link SocketWriter.write}: libuv holds the chunk until {@link DirectWriteHost.directWriteDone}. */
export const PENDING = 1;
/** {@link SocketWriter.write}: the write failed; the socket is being destroyed with the error. */
export const FAILED = 2;

/** The transport, told when a {@link PENDING} write ends. */
export interface DirectWriteHost {
  directWriteDone(err: Error | null): void;
}

/** What idle() reads of a Writable's state (Node's WritableState: `length`, `corked` and flags). */
interface WritableFields { readonly length: number; readonly corked: number; readonly ending: boolean; readonly destroyed: boolean }

type HandleWrite = { _write(chunk: Uint8Array, encoding: string, cb: (err?: Error | null) => void): void };

/** A socket handle's native write (Node's LibuvStreamWrap: TCP and Pipe handles). */
interface StreamHandle {
  writeBuffer(req: WriteReq, chunk: Uint8Array): number;
}

/** A native write request object (Node's `WriteWrap`), with the fields this module gives it. */
interface WriteReq {
  /** -1 while no native write is attached to it (AsyncWrap's `getAsyncId`). */
  getAsyncId(): number;
  oncomplete: (this: WriteReq, status: number) => void;
  /** The writer whose write is attached (null when none). */
  owner: SocketWriter | null;
  /** The chunk of that write, kept alive while libuv reads it. */
  buffer: Uint8Array | null;
  /** Set by Node's native side on some failures (a stream's error text), as on its own requests. */
  error?: unknown;
}

type WriteReqClass = new () => WriteReq;

/** The request class, found once per thread; null: not found (every write takes `_write`). */
let reqClass: WriteReqClass | null | undefined;
/** {@link SocketWriter}'s handle before its first write (no socket handle is this object). */
const NO_HANDLE: object = {};
/** `write`: the socket's handle is the one {@link SocketWriter.adoptHandle} accepted. */
const knownHandle = (_w: SocketWriter, _h: object): boolean => true;
/** `write`: a handle the writer has not checked yet (once per socket). */
const newHandle = (w: SocketWriter, h: object): boolean => w.adoptHandle(h);

/** The request of the next direct write (a request attached to a native write is never reused). */
let spareReq: WriteReq | null = null;

export class SocketWriter {
  /** Bytes of a {@link PENDING} write libuv still holds (0 when none). */
  pending = 0;
  private inWrite = false;
  private syncDone = false;
  private syncErr: Error | null = null;
  private readonly cb: (err?: Error | null) => void;
  /** The direct write is available on this thread for this socket (see the file comment). */
  private readonly direct: boolean;
  /**
   * The socket's handle, once {@link adoptHandle} checked it; until then an object that is no
   * handle (not null: `write` compares it with the socket's handle, an object, and a warm
   * process's comparison has only ever seen two objects).
   */
  private handle: object = NO_HANDLE;

  /** The socket's Writable state (`_writableState`), when it has the fields idle() reads. */
  private readonly state: WritableFields | null;

  constructor(
    private readonly socket: Socket,
    private readonly host: DirectWriteHost,
  ) {
    this.cb = (err) => this.done(err ?? null);
    const w = (socket as unknown as { _writableState?: Partial<WritableFields> })._writableState;
    this.state = w !== undefined && w !== null && typeof w.length === "number" && typeof w.corked === "number"
      && typeof w.ending === "boolean" && typeof w.destroyed === "boolean" ? (w as WritableFields) : null;
    this.direct = Object.getPrototypeOf(socket) === Socket.prototype && findWriteReq() !== null;
  }

  /** True when the socket's Writable side has nothing buffered, in flight or corked. */
  idle(): boolean {
    if (this.pending !== 0) return false;
    const s = this.socket;
    const w = this.state;
    // The Writable's own fields, read once per flush: the public getters (writableLength,
    // writableCorked, writableEnded, destroyed) read the same through a call each.
    if (w !== null) return w.length === 0 && w.corked === 0 && !w.ending && !w.destroyed && !s.connecting;
    return s.writableLength === 0 && s.writableCorked === 0 && !s.connecting && !s.destroyed && !s.writableEnded;
  }

  /** Writes `chunk` (only when {@link idle}): {@link WROTE}, {@link PENDING} or {@link FAILED}. */
  write(chunk: Uint8Array): number {
    const s = this.socket;
    if (this.direct && !s.timeout) {
      const h = (s as unknown as { _handle: object | null })._handle;
      // A new socket's first write checks its handle: a constant chosen by data, one call site
      // (docs/rpc.md "A new connection keeps the optimised code"), as a branch that only a
      // connection's first write takes would be compiled without type feedback in a warm process.
      if (h !== null && (h === this.handle ? knownHandle : newHandle)(this, h)) return this.writeDirect(h as StreamHandle, chunk);
    }
    this.inWrite = true;
    this.syncDone = false;
    try {
      (s as unknown as HandleWrite)._write(chunk, "buffer", this.cb);
    } finally {
      this.inWrite = false;
    }
    if (!this.syncDone) {
      this.pending = chunk.byteLength;
      return PENDING;
    }
    const err = this.syncErr;
    if (err === null) return WROTE;
    this.syncErr = null;
    s.destroy(err);
    return FAILED;
  }

  /**
   * True (and remembered) when `h` is a libuv stream handle (Node's `Pipe` or `TCP`: its native
   * write tries the kernel at once and calls no JavaScript); a socket's handle is set once it
   * connects, so this runs once per socket.
   */
  /** @internal */
  adoptHandle(h: object): boolean {
    const name = (Object.getPrototypeOf(h) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    if ((name !== "Pipe" && name !== "TCP") || typeof (h as Partial<StreamHandle>).writeBuffer !== "function") return false;
    this.handle = h;
    return true;
  }

  /** The handle's native write with the thread's reused request (see the file comment). */
  private writeDirect(h: StreamHandle, chunk: Uint8Array): number {
    const req = (spareReq ??= newReq(reqClass!));
    const err = h.writeBuffer(req, chunk);
    if (req.getAsyncId() !== -1) {
      // A native write holds the request (and, when err is 0, the rest of the chunk): never reused.
      spareReq = null;
      if (err === 0) {
        req.owner = this;
        req.buffer = chunk; // libuv reads it until the write completes (as Node's `req.buffer`)
        this.pending = chunk.byteLength;
        return PENDING;
      }
    }
    if (err === 0) return WROTE;
    this.socket.destroy(writeError(err, req.error));
    return FAILED;
  }

  /** @internal A pending direct write completed with `status` (a libuv status: < 0 failed). */
  completed(status: number, detail: unknown): void {
    // As Node's own completion: a destroyed socket's write (cancelled by its close) is no error.
    this.done(status >= 0 || this.socket.destroyed ? null : writeError(status, detail));
  }

  private done(err: Error | null): void {
    if (this.inWrite) {
      this.syncDone = true;
      this.syncErr = err;
      return;
    }
    this.pending = 0;
    if (err !== null && !this.socket.destroyed) this.socket.destroy(err);
    this.host.directWriteDone(err);
  }
}

/** The error Node's handle write reports for a failed write (its ErrnoException's fields). */
function writeError(status: number, detail: unknown): Error {
  let code: string;
  try {
    code = getSystemErrorName(status);
  } catch {
    code = `Unknown system error ${status}`;
  }
  const e = new Error(typeof detail === "string" && detail !== "" ? `write ${code} ${detail}` : `write ${code}`) as NodeJS.ErrnoException;
  e.errno = status;
  e.code = code;
  e.syscall = "write";
  return e;
}

function newReq(C: WriteReqClass): WriteReq {
  const r = new C();
  r.owner = null;
  r.buffer = null;
  r.oncomplete = ON_COMPLETE;
  return r;
}

/** A request's `oncomplete`: Node's native side calls it on the request when its write ends. */
function ON_COMPLETE(this: WriteReq, status: number, _handle?: unknown, detail?: unknown): void {
  const w = this.owner;
  this.owner = null;
  this.buffer = null;
  if (w !== null) w.completed(status, detail ?? this.error);
}

/**
 * The class of Node's native write requests, found once per thread: a handle-less probe socket
 * is given a stand-in handle whose `writeBuffer` records the request Node's own `_write` passes
 * it (nothing is written anywhere; the probe is destroyed). It must be a `WriteWrap` whose new
 * instances report no native write attached (`getAsyncId() === -1`). Null when anything differs.
 */
export function findWriteReq(): WriteReqClass | null {
  if (reqClass !== undefined) return reqClass;
  reqClass = null;
  let probe: Socket | null = null;
  try {
    let seen: unknown = null;
    const stand = { writeBuffer: (req: unknown): number => ((seen = req), 0) };
    probe = new Socket();
    const f = probe as unknown as { _handle: unknown } & HandleWrite;
    if (f._handle !== null || typeof f._write !== "function") return null;
    f._handle = stand;
    try {
      f._write(new Uint8Array(8), "buffer", () => {});
    } finally {
      f._handle = null;
    }
    const C = seen === null || typeof seen !== "object" ? undefined : (Object.getPrototypeOf(seen) as { constructor?: unknown } | null)?.constructor;
    if (typeof C !== "function" || C.name !== "WriteWrap") return null;
    const r = new (C as WriteReqClass)();
    if (typeof r.getAsyncId !== "function" || r.getAsyncId() !== -1) return null;
    reqClass = C as WriteReqClass;
  } catch {
    reqClass = null;
  } finally {
    probe?.destroy();
  }
  return reqClass;
}

/**
 * How the stream transport writes an idle batch on `socket` now (for tests and diagnostics):
 * `"direct"` (its handle's `writeBuffer` with the thread's reused request), `"handle"` (Node's
 * handle write, `_write`: the request class was not found, the socket has a timeout, or its
 * handle is not a libuv Pipe / TCP handle yet) or `"stream"` (not a plain net.Socket:
 * `Writable.write()`).
 */
export function socketWritePath(socket: object): "direct" | "handle" | "stream" {
  if (!(socket instanceof Socket) || Object.getPrototypeOf(socket) !== Socket.prototype) return "stream";
  if (findWriteReq() === null || socket.timeout) return "handle";
  const h = (socket as unknown as { _handle: object | null })._handle;
  const name = h === null ? undefined : (Object.getPrototypeOf(h) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
  return (name === "Pipe" || name === "TCP") && typeof (h as Partial<StreamHandle>).writeBuffer === "function" ? "direct" : "handle";
}

/** Spare batch buffers of this thread: a counted stack (the slots are overwritten, not popped). */
const SPARES: Buffer[] = [];
let spareCount = 0;
/** At most this many spares are kept (each at most the transport's 64 KiB batch). */
const MAX_SPARES = 4;
const NO_BUFFER = Buffer.alloc(0);

/**
 * A buffer of at least `want` bytes for a new batch: the last spare when it is large enough,
 * else a new one (allocUnsafe: below 4 KiB a slice of Node's pool; only the bytes written are
 * ever sent).
 */
export function takeBatch(want: number): Buffer {
  const n = spareCount;
  if (n > 0) {
    const b = SPARES[n - 1]!;
    if (b.byteLength >= want) {
      SPARES[n - 1] = NO_BUFFER; // no reference kept to a buffer in use
      spareCount = n - 1;
      return b;
    }
  }
  return Buffer.allocUnsafe(want);
}

/** `b`'s bytes are all with the kernel (a write completed at once): it may take the next batch. */
export function giveBatch(b: Buffer): void {
  if (spareCount < MAX_SPARES) SPARES[spareCount++] = b;
}

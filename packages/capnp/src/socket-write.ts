/**
 * {@link SocketWriter}: the stream transport's one-chunk write on a plain `net.Socket`, made
 * through the socket's own `_write` (its handle write: `writeGeneric` in Node's
 * stream_base_commons) instead of `Writable.write()`, while the Writable side is idle (nothing
 * buffered or in flight, not corked, connected, not ended). `Writable.write()` adds, per write,
 * its buffering bookkeeping and an after-write `process.nextTick` (the callback of a write the
 * kernel took at once is deferred to a tick), so a call loop paid a tick queue run per call for
 * it (bench/README "Where the time goes", eighth session). A write libuv could not finish at once
 * keeps the chunk until it completes: the transport treats that as blocked (later messages wait
 * in its queue, as after `write()` returned false) and resumes on {@link DirectWriteHost.directWriteDone}.
 * Errors end the stream as the Writable would (`destroy(err)`: 'error', then 'close').
 *
 * Also the thread's spare batch buffers ({@link takeBatch} / {@link giveBatch}): a batch the
 * socket took at once is free again, and the next batch of ANY connection of this thread is built
 * in it. One pool per thread rather than one spare per connection, so a new connection's first
 * batch takes the same path as every later one (no first-use branch, see bench/README "Cold
 * start (tenth session)"), and an idle connection holds no batch buffer.
 *
 * Threading: the thread that owns the socket (its event loop).
 */
import type { Socket } from "node:net";

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

export class SocketWriter {
  /** Bytes of a {@link PENDING} write libuv still holds (0 when none). */
  pending = 0;
  private inWrite = false;
  private syncDone = false;
  private syncErr: Error | null = null;
  private readonly cb: (err?: Error | null) => void;

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
    this.inWrite = true;
    this.syncDone = false;
    try {
      (this.socket as unknown as HandleWrite)._write(chunk, "buffer", this.cb);
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
    this.socket.destroy(err);
    return FAILED;
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

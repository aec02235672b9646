/**
 * A {@link Transport} over any Node `Duplex` byte stream (net.Socket on a Unix or TCP socket, a
 * socketpair fd, a pipe pair, PassThrough pairs in tests), using Cap'n Proto stream framing.
 *
 * Writes: a small message (frame up to 1 KiB) is copied into a batch buffer, framed back to back
 * with the others sent before the flush; a larger one is framed with {@link encodeFrame} and its
 * segments are written as they are (no copy), after the batch so far. The flush is a promise
 * reaction queued by the first message (no nextTick): it runs after the microtasks queued before
 * it, so the messages they send share its write. A lone batch is written with one write, on an
 * idle plain net.Socket below `Writable.write()` and its after-write tick (socket-write.ts: the
 * handle's native write with a reused request object, else the socket's handle write); more
 * than one chunk are corked and flushed by one `uncork()`, so a stream with `_writev`
 * (net.Socket) writes them with one `writev` syscall; what a read's messages
 * make the engine send while handled is flushed at the read's end ({@link endReadTurn}), after the
 * microtasks they queued; the sends of those (a server's Returns) take the usual flush. When a write
 * cannot complete at once, later messages wait in our queue until it does. A lazy message
 * (`sendLazy`: the engine's Finish after a Return) joins the batch without scheduling its write:
 * the next message's flush takes it along (a call loop's Finish and next Call: one write, and one
 * read for the peer), or it is written by itself after a bounded wait (20-40 ms, see
 * scheduleLazyFlush). On a plain net.Socket
 * whose write completed at once (the kernel has the bytes), the batch buffer goes back to the
 * thread's spares (socket-write.ts takeBatch / giveBatch) and takes a later batch, of this
 * connection or another, instead of allocating one per flush.
 *
 * Reads: chunks go through a {@link FrameDecoder} with the given limits. A socket created with a
 * {@link SocketReader} (its `onread` option) is read without the Readable stream: reads land in
 * the reader's slab, or straight in the buffer of a large message being reassembled
 * (socket-read.ts); any other stream is read from its `'data'` events. A framing error stops
 * reading and is reported at once via `sink.closed(err)` (a `LimitError`/`ProtocolError`); the
 * write side stays open so the engine can send Abort, and `close()` then ends and destroys it.
 * I/O errors are reported as `DisconnectedError` (with the I/O error as `cause`); a clean EOF as
 * `closed()` with no error. EOF inside a message is a `ProtocolError`, reported like a framing
 * error: the transport sets the stream's `allowHalfOpen`, so a peer's EOF does not end our write
 * side before the engine's Abort has gone out (a peer that only half-closed learns why).
 *
 * State (open, read failed, closing, ended), the sink and the once-only end report live in
 * {@link TransportLifecycle}; write-side flow control (pause reading while too many bytes are
 * queued for the peer, end past the hard cap) in {@link WriteFlow}. This class keeps the stream
 * mechanics: batching, corking, the write queue, the stream's events.
 *
 * Threading: the stream and the transport belong to the thread that created them.
 */

import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { DisconnectedError, ProtocolError, type LimitError } from "./errors.js";
import { encodeFrame, FrameDecoder, frameHeaderBytes } from "./framing.js";
import type { ReaderLimits } from "./limits.js";
import type { ReadTarget, SocketReader } from "./socket-read.js";
import { FAILED, giveBatch, SocketWriter, takeBatch, WROTE, type DirectWriteHost } from "./socket-write.js";
import type { TransportSink } from "./transport.js";
import { LinkState, TransportLifecycle, type LifecycleHost } from "./transport-lifecycle.js";
import { DEFAULT_WRITE_FLOW, FlowWatch, resolveWriteFlow, WriteFlow } from "./write-flow.js";
import type { FlowControlledTransport, FlowHost, WriteFlowLimits, WriteFlowStats } from "./write-flow.js";

/** Messages up to this size are copied into the batch buffer instead of written as chunks. */
const SMALL_FRAME = 1024;
const BATCH_BYTES = 64 * 1024;

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

class StreamTransport implements FlowControlledTransport, LifecycleHost, FlowHost, ReadTarget, DirectWriteHost {
  private readonly life: TransportLifecycle = new TransportLifecycle(this);
  private readonly decoder: FrameDecoder;
  /** Created when a write first blocks: an idle or fast connection never needs one. */
  private flow: WriteFlow | null = null;
  private watch: FlowWatch | null = null;
  private corked = false; // stream.cork() called; uncorked by the scheduled flush
  private flushScheduled = false; // the flush's promise reaction pending, or asked for in a read's turn
  private readTurn = false; // a read's messages are being handled: a flush waits for endReadTurn
  private blocked = false; // write() returned false; waiting for 'drain'
  private readonly queue: Uint8Array[] = [];
  private queueBytes = 0; // bytes in `queue`
  private writeEnded = false; // stream.end() called
  private finished = false; // 'finish' (writable side flushed) or the stream is gone
  private readonly finishWaiters: (() => void)[] = [];
  private readEnded = false; // the peer's EOF was read
  /** The stream is a plain net.Socket: a write it completes at once copied the bytes. */
  private readonly socketCopies: boolean;
  private readonly writer: SocketWriter | null; // a plain net.Socket's: socket-write.ts

  constructor(
    private readonly stream: Duplex,
    limits: Partial<ReaderLimits> | undefined,
    private readonly flowLimits: WriteFlowLimits,
    private readonly reader: SocketReader | undefined,
  ) {
    this.decoder = new FrameDecoder(limits);
    this.socketCopies = Object.getPrototypeOf(stream) === Socket.prototype;
    this.writer = this.socketCopies ? new SocketWriter(stream as Socket, this) : null;
    // We end our write side ourselves (see onEnd), after the Abort when the peer's last frame
    // was cut off; without this a net.Socket would end it as soon as the peer's EOF arrives.
    stream.allowHalfOpen = true;
    // Listen for errors at once so an early error is never an unhandled 'error' event.
    // The listeners are shared by all transports (an EventEmitter calls them with the stream as
    // `this`, which leads back to us): no per-connection closures.
    (stream as OwnedStream)[kTransport] = this;
    stream.on("error", ON_ERROR);
    stream.on("close", ON_CLOSE);
    stream.on("finish", ON_FINISH);
    stream.on("drain", ON_DRAIN);
    if (stream.destroyed) queueMicrotask(() => this.onClose());
    if (reader !== undefined) {
      // Not read before start() (as a stream whose 'data' nobody listens to); a read made
      // before now is decoded at once and its messages wait for start() (transport-lifecycle.ts).
      stream.pause();
      reader.attach(this, stream instanceof Socket ? stream : undefined);
    }
  }

  get name(): string {
    return "StreamTransport";
  }

  start(sink: TransportSink): void {
    this.life.start(sink); // guard: throws when called twice
    if (this.life.isEnded) return;
    this.stream.on("end", ON_END);
    if (this.reader === undefined) this.stream.on("data", ON_DATA);
    else if (this.life.canDeliver) this.stream.resume();
  }

  flowStats(): WriteFlowStats {
    const queued = this.queuedBytesNow();
    if (this.flow === null) return { queuedBytes: queued, peakQueuedBytes: queued, readPaused: false, pauses: 0 };
    return this.flow.stats();
  }

  watchFlow(cb: (stats: WriteFlowStats) => void): () => void {
    return (this.watch ??= new FlowWatch()).set(cb);
  }

  send(segments: Uint8Array[]): void {
    this.sendMessage(segments, false);
  }

  /** Transport.sendCopy: small messages are copied into the batch (true); larger ones are not. */
  sendCopy(segments: Uint8Array[]): boolean {
    return this.sendMessage(segments, false);
  }

  /**
   * Transport.sendLazy: a small message joins the batch without scheduling its flush; the next
   * message's flush writes it, or the flush {@link scheduleLazyFlush} schedules.
   */
  sendLazy(segments: Uint8Array[]): void {
    this.sendMessage(segments, true);
  }

  /**
   * True when the message was copied (or dropped): its segments are not referenced any more.
   * A small message is framed into the batch here, not in a method of its own, and with indexed
   * loops, not for-of: until this function is optimised (a process's first ~1,000 calls) each
   * call is a frame and each for-of step an iterator result, and once it is hot a helper would
   * be optimised twice, alone and inlined here (bench/README "Cold start").
   */
  private sendMessage(segments: Uint8Array[], lazy: boolean): boolean {
    if (!this.life.canSend) return true;
    const n = segments.length;
    if (n === 0) throw new RangeError("Transport.send: a message needs at least one segment");
    const hb = frameHeaderBytes(n);
    let bytes = hb;
    let ragged = 0;
    for (let i = 0; i < n; i++) {
      const len = segments[i]!.byteLength;
      bytes += len;
      ragged |= len & 7;
    }
    if (bytes > SMALL_FRAME || ragged !== 0) {
      this.cork(); // the batch so far and this message go out together at the flush
      this.flushBatch();
      this.writeChunks(encodeFrame(segments));
      return false;
    }
    // Small message: copy it into the batch buffer written at the flush (one chunk for
    // many messages beats one chunk per segment: less per-write overhead).
    // Room in the batch: a constant chosen by data (docs/rpc.md "A new connection keeps...").
    let b = this.batch;
    if (!(b === null ? noBatchYet : batchHasRoom)(b, this.batchLen + bytes)) {
      this.cork(); // this batch and the next go out together (one writev) at the flush
      this.flushBatch(); // the batch is null now
      b = null;
    }
    b ??= this.newBatch(bytes);
    let o = this.batchLen;
    writeU32(b, o, n - 1);
    for (let i = 0; i < n; i++) writeU32(b, o + 4 + 4 * i, segments[i]!.byteLength >>> 3);
    if ((n & 1) === 0) writeU32(b, o + hb - 4, 0);
    o += hb;
    for (let i = 0; i < n; i++) {
      const s = segments[i]!;
      b.set(s, o);
      o += s.byteLength;
    }
    this.batchLen = o;
    // Lazy or not: a constant chosen by data (a warm call loop never sends lazily; see above).
    (lazy ? scheduleLazy : scheduleNow)(this);
    return true;
  }

  private writeChunks(chunks: Uint8Array[]): void {
    if (this.life.isEnded) return; // the flush above hit the hard cap
    if (this.blocked) {
      for (const c of chunks) this.enqueue(c);
    } else {
      this.cork();
      for (const c of chunks) if (!this.stream.write(c)) this.blocked = true;
      if (!this.blocked) return;
    }
    this.queueGrew();
  }

  private enqueue(chunk: Uint8Array): void {
    this.queue.push(chunk);
    this.queueBytes += chunk.byteLength;
  }

  /** Small messages since the last flush, framed back to back; written by {@link flushBatch}. */
  private batch: Buffer | null = null;
  private batchLen = 0;
  private lastBatchLen = 0;
  /** The view the last batch of `lastChunkOf` was handle-written through (see flushBatch). */
  private lastChunk: Uint8Array | null = null;
  private lastChunkOf: Buffer | null = null;

  /** The buffer of a new batch (out of sendMessage's hot path). */
  private newBatch(bytes: number): Buffer {
    // Sized from the previous batch, so a lone ping does not allocate 64 KiB.
    const b = takeBatch(Math.min(BATCH_BYTES, Math.max(1024, bytes, this.lastBatchLen * 2)));
    this.batch = b;
    this.batchLen = 0;
    return b;
  }

  private flushBatch(): void {
    const b = this.batch;
    if (b === null) return;
    this.batch = null;
    const len = this.batchLen;
    this.lastBatchLen = len;
    if (len === 0 || this.life.isEnded) return;
    // One chunk: no need to cork (if a larger message corked the stream, it stays in order).
    if (this.blocked) this.enqueue(b.subarray(0, len));
    else if (this.writer !== null && !this.corked && this.writer.idle()) {
      // The view of the last batch is reused when this one is as long in the same buffer (a call
      // loop's spare batch; the write that took that view has completed): no view per flush.
      // A new length (a new connection's Bootstrap, where a warm call loop always reuses its
      // view): a constant chosen by data (docs/rpc.md "A new connection keeps the optimised code").
      const last = this.lastChunk;
      const reuse = last !== null && this.lastChunkOf === b && last.byteLength === len;
      const chunk = (reuse ? sameChunk : newChunk)(last, b, len);
      const r = this.writer.write(chunk);
      if (r === WROTE) {
        giveBatch(b); // the thread's next batch is built in it (socket-write.ts)
        this.lastChunk = chunk;
        this.lastChunkOf = b;
      } else if (r !== FAILED) this.blocked = true; // libuv holds the chunk: wait for directWriteDone
      return;
    } else if (this.stream.write(b.subarray(0, len))) {
      // A plain net.Socket that wrote the chunk at once (nothing buffered, not corked) has copied
      // it into the kernel and keeps no reference: the buffer can take the next batch. Any
      // other stream may pass the chunk on as is (a PassThrough hands it to its reader).
      if (this.socketCopies && !this.corked && this.stream.writableLength === 0) giveBatch(b);
      return;
    } else this.blocked = true;
    this.queueGrew();
  }

  close(): Promise<void> {
    const done = new Promise<void>((resolve) => {
      if (this.finished) resolve();
      else this.finishWaiters.push(resolve);
    });
    if (this.life.canSend) {
      this.flushBatch();
      if (this.life.beginClose()) this.maybeEnd();
    }
    return done;
  }

  destroy(err?: Error): void {
    if (this.life.isEnded) return;
    this.fail(err);
  }

  // --- flow control (see write-flow.ts) ---

  /** Writes are blocked and the queue grew: pause reading past the mark, end past the cap. */
  private queueGrew(): void {
    const flow = (this.flow ??= new WriteFlow(this.flowLimits, this, (this.watch ??= new FlowWatch())));
    const err = flow.grew(this.queuedBytesNow());
    if (err !== undefined) this.fail(err);
  }

  pauseReading(): void {
    this.life.hold(); // the rest of the chunk being decoded waits too
    this.stream.pause();
  }

  resumeReading(): void {
    this.life.unhold(); // may pause us again (a reply to a held message)
    if (this.flow?.readPaused !== true && this.life.canDeliver && this.life.started) this.stream.resume();
  }

  queuedBytesNow(): number {
    return this.queueBytes + this.stream.writableLength + (this.writer === null ? 0 : this.writer.pending);
  }

  flowStalled(err: LimitError): void {
    this.fail(err);
  }

  // --- writing ---

  private cork(): void {
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
    }
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Not a nextTick (bench/README, eighth session); in a read, endReadTurn's (constants: docs/rpc.md).
    (this.readTurn ? NO_FLUSH : QUEUE_FLUSH)(this);
  }
  /** @internal Settled: the flush reacts on it with a module handler, not a closure (docs/rpc.md). */
  readonly settled: Promise<StreamTransport> = Promise.resolve(this);
  /**
   * The end of a read (bytesRead): what it sent is flushed after the microtasks it queued (unless a
   * flush was on its way, `sentBefore`); a read that sent nothing (a client's Return) queues nothing,
   * its microtasks' sends take the usual flush (bench/README "Client half of a call", twelfth session).
   */
  endReadTurn(sentBefore: boolean): void {
    this.readTurn = false;
    (this.flushScheduled && !sentBefore ? QUEUE_FLUSH : NO_FLUSH)(this);
  }

  /**
   * A lazy message waits in the batch for the next message: a call loop's next Call (the same
   * turn) and a relayed call loop's next call (the worker bridge, docs/threading.md: it comes from
   * another thread's message, often after this thread went idle) both take it along in one write,
   * and the peer reads both at once. The wait is bounded by one timer per transport (unref'd, made
   * once, re-armed with `refresh()`, not one per message): when it fires, lazy messages that were
   * already waiting when it last fired go out alone; younger ones get one more period. So a lazy
   * message waits LAZY_MS to 2 × LAZY_MS at most; close() and any other message flush it sooner.
   */
  scheduleLazyFlush(): void {
    if (this.flushScheduled) return;
    this.lazyFresh = true;
    if (this.lazyArmed) return;
    this.lazyArmed = true;
    if (this.lazyTimer === null) this.lazyTimer = setTimeout(LAZY_TICK, LAZY_MS, this).unref();
    else this.lazyTimer.refresh();
  }

  /** Lazy messages were added since the lazy timer last fired (see scheduleLazyFlush). */
  private lazyFresh = false;
  private lazyArmed = false;
  private lazyTimer: NodeJS.Timeout | null = null;

  /** @internal See {@link scheduleLazyFlush}. */
  lazyTick(): void {
    this.lazyArmed = false;
    // Nothing waits (a flush took it, or the link ended), or a flush is already on its way.
    if (this.batch === null || this.flushScheduled || this.life.isEnded) return;
    if (this.lazyFresh) {
      this.lazyFresh = false;
      this.lazyArmed = true;
      this.lazyTimer!.refresh();
      return;
    }
    this.scheduleFlush();
  }

  uncork(): void {
    this.flushScheduled = false;
    this.flushBatch();
    if (!this.corked) return;
    this.corked = false;
    if (!this.stream.destroyed) this.stream.uncork();
  }

  /** DirectWriteHost: a write libuv could not finish at once is done (an error destroyed the stream). */
  directWriteDone(err: Error | null): void {
    if (err === null) this.onDrain();
  }

  onDrain(): void {
    if (!this.blocked || (this.writer !== null && this.writer.pending !== 0)) return;
    this.blocked = false;
    if (this.life.isEnded) return;
    if (this.queue.length > 0) {
      this.cork();
      let i = 0;
      let bytes = 0;
      while (i < this.queue.length) {
        const c = this.queue[i++]!;
        bytes += c.byteLength;
        if (!this.stream.write(c)) {
          this.blocked = true;
          break;
        }
      }
      this.queue.splice(0, i);
      this.queueBytes -= bytes;
    }
    this.flow?.shrank(this.queuedBytesNow());
    this.maybeEnd();
  }

  /** In Closing, end the writable side once our queue is flushed into the stream. */
  private maybeEnd(): void {
    if (this.life.state !== LinkState.Closing || this.writeEnded || this.blocked) return;
    this.writeEnded = true;
    if (this.stream.destroyed || this.stream.writableEnded) {
      this.onFinish();
      return;
    }
    this.stream.end(); // also uncorks
  }

  onFinish(): void {
    this.finished = true;
    for (const w of this.finishWaiters.splice(0)) w();
    // Once reading is over (a read failure, or the end reported), nothing more is read: once
    // our writes are out, let the stream go.
    if (!this.life.canDeliver && !this.stream.destroyed) this.stream.destroy();
  }

  // --- reading ---

  onData(chunk: Buffer | string): void {
    if (!this.life.canDeliver) return;
    if (typeof chunk === "string") {
      this.readFail(new ProtocolError("stream delivered text, not bytes (setEncoding must not be used)"));
      return;
    }
    this.bytesRead(chunk, chunk.byteLength, false);
  }

  /** ReadTarget (socket-read.ts): the free part of a large message's segment, while it arrives. */
  readRegion(min: number): Uint8Array | null {
    return this.life.canDeliver ? this.decoder.region(min) : null;
  }

  /** ReadTarget: `n` bytes were read into `region` (a slab's, or one from readRegion). */
  bytesRead(region: Uint8Array, n: number, direct: boolean): boolean {
    if (!this.life.canDeliver) return false;
    const turn = !this.readTurn; // a read's turn: a flush asked for now waits for endReadTurn
    const sentBefore = this.flushScheduled;
    this.readTurn = true;
    try {
      // The lifecycle takes the messages (and drops them once the engine ended us mid-chunk).
      if (direct) this.decoder.filledRegion(region, n, this.life);
      else this.decoder.decode(region, this.life, n);
    } catch (e) {
      this.readFail(e as Error);
      return false;
    } finally {
      if (turn) this.endReadTurn(sentBefore);
    }
    return true;
  }

  /** A throwing sink is an engine bug: end the link with it rather than crash the process. */
  sinkThrew(err: Error): void {
    this.fail(err);
  }

  onEnd(): void {
    this.readEnded = true;
    if (!this.life.canDeliver) return;
    try {
      this.decoder.end();
    } catch (e) {
      this.readFail(e as Error);
      return;
    }
    // The peer finished sending: the link is over. End our side too, so a half-open peer also
    // sees EOF; what we had not yet handed to the stream is dropped (nobody will answer it).
    this.setEnded(undefined);
    if (!this.writeEnded) {
      this.writeEnded = true;
      this.dropQueued();
      if (!this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
      else this.onFinish();
    }
  }

  onError(err: Error): void {
    if (this.life.isEnded) return;
    this.fail(new DisconnectedError(`transport stream error: ${err.message}`, { cause: err }));
  }

  onClose(): void {
    this.onFinish();
    if (this.life.isEnded) return;
    // Closed without EOF or error (destroyed by someone, or EOF before start()).
    if (this.readEnded) this.setEnded(undefined);
    else this.setEnded(new DisconnectedError("transport stream closed"));
  }

  // --- ending ---

  /**
   * The peer's bytes are bad (framing, limits, EOF inside a message): stop reading and report
   * `err` now, but keep the write side, so the engine can tell the peer why (Abort) before it
   * calls close() — as the C++ reference does. close() then ends and destroys the stream.
   */
  private readFail(err: Error): void {
    if (!this.life.failRead(err)) return;
    this.stream.off("data", ON_DATA);
    this.stream.pause();
    this.flow?.release();
  }

  private fail(err: Error | undefined): void {
    if (this.life.isEnded) return;
    this.setEnded(err);
    this.dropQueued();
    this.stream.destroy();
    this.onFinish();
  }

  private setEnded(err: Error | undefined): void {
    if (!this.life.end(err)) return;
    if (this.lazyTimer !== null) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    this.reader?.release();
    this.stream.off("data", ON_DATA);
    this.flow?.release();
  }

  private dropQueued(): void {
    this.queue.length = 0;
    this.queueBytes = 0;
    this.batch = null;
    this.lastChunk = null;
    this.lastChunkOf = null;
  }
}

const kTransport = Symbol("capnp.streamTransport");
type OwnedStream = Duplex & { [kTransport]?: StreamTransport };

function ON_ERROR(this: OwnedStream, err: Error): void { this[kTransport]!.onError(err); }
function ON_CLOSE(this: OwnedStream): void { this[kTransport]!.onClose(); }
function ON_FINISH(this: OwnedStream): void { this[kTransport]!.onFinish(); }
function ON_DRAIN(this: OwnedStream): void { this[kTransport]!.onDrain(); }
function ON_END(this: OwnedStream): void { this[kTransport]!.onEnd(); }
function ON_DATA(this: OwnedStream, chunk: Buffer | string): void { this[kTransport]!.onData(chunk); }

/**
 * How long a lazy message waits for the next message, at least (ms; see scheduleLazyFlush). While
 * calls keep coming the timer fires once per period: at 1 ms those firings cost a callback round
 * trip ~7 µs CPU per call per side when both processes share a CPU (bench/README "P3 (seventh
 * session)"); at 20 ms they are lost in the noise.
 */
export const LAZY_MS = 20;

function LAZY_TICK(t: StreamTransport): void {
  t.lazyTick();
}

/** The reaction of a transport's flush (see StreamTransport `settled`), and how it is queued or not. */
const FLUSH = (t: StreamTransport): void => t.uncork();
const QUEUE_FLUSH = (t: StreamTransport): void => void t.settled.then(FLUSH);
const NO_FLUSH = (_t: StreamTransport): void => {};

/**
 * Cap'n Proto messages over a Node byte stream. The transport takes over `stream`: it listens to
 * its events, sets its `allowHalfOpen`, and ends or destroys it when the link ends. `limits` bound
 * each incoming message; `flow` caps the bytes queued for a peer that does not read (defaults:
 * {@link DEFAULT_WRITE_FLOW}, see docs/rpc.md "Flow control"). `reader`: the {@link SocketReader}
 * whose `onread` option `stream` (a net.Socket) was created with; it is then read through it.
 */
export function streamTransport(
  stream: Duplex,
  limits?: Partial<ReaderLimits>,
  flow?: Partial<WriteFlowLimits>,
  reader?: SocketReader,
): FlowControlledTransport {
  return new StreamTransport(stream, limits, flow === undefined ? DEFAULT_WRITE_FLOW : resolveWriteFlow(flow), reader);
}

/** The constants sendMessage and flushBatch choose from (see there). */
const scheduleNow = (t: StreamTransport): void => t.scheduleFlush();
const scheduleLazy = (t: StreamTransport): void => t.scheduleLazyFlush();
const sameChunk = (last: Uint8Array | null, _b: Buffer, _len: number): Uint8Array => last!;
const newChunk = (_last: Uint8Array | null, b: Buffer, len: number): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, len);
const noBatchYet = (_b: Buffer | null, _end: number): boolean => true;
const batchHasRoom = (b: Buffer | null, end: number): boolean => end <= b!.byteLength;

/**
 * Cap'n Proto stream framing (the "standard serialization" of encoding.html): a segment table
 * (uint32 segment count - 1, uint32 size in words per segment, zero-padded to a word), followed
 * by the segments. This is the hot path of every stream transport, so:
 *
 * - {@link encodeFrame} writes only the small table; segments are passed through (zero-copy).
 * - {@link FrameDecoder} hands out `subarray` views of the incoming chunk when a message lies
 *   within one chunk. When a message spans chunks, each segment is copied into its own buffer of
 *   exactly the segment's size (so it is a whole `ArrayBuffer` the RPC engine can use as is);
 *   that buffer is allocated as the segment's bytes arrive, never far ahead of them. A socket
 *   read in place (socket-read.ts) reads the rest of such a segment straight into that buffer
 *   ({@link FrameDecoder.region} / {@link FrameDecoder.filledRegion}): no copy.
 * - {@link FrameBudget} and {@link FrameTracker} bound partially received frames across many
 *   connections (a listener's, or a whole process's), and time them (listen.ts in
 *   @multiprocess-ts/node closes connections whose frame stalls).
 *
 * Threading: the thread that owns the stream (the loop thread, or a worker's own streams).
 */

import { LimitError, ProtocolError } from "./errors.js";
import { resolveLimits, type ReaderLimits } from "./limits.js";
import { validateMessage } from "./validate.js";

export { DEFAULT_LIMITS, resolveLimits } from "./limits.js";
export type { ReaderLimits } from "./limits.js";

const ZERO_PAD = new Uint8Array(8);
/**
 * A segment's buffer (message spanning chunks) is allocated at its exact size once that is at
 * most `max(MIN_AHEAD, AHEAD_FACTOR * bytes of the message arrived so far)`; before that it
 * grows (at least doubling) within that allowance. So a segment table claiming a huge message
 * costs at most 64 KiB until the bytes actually arrive, and a big segment arriving in 64 KiB
 * chunks gets its exact-size buffer with its first chunk.
 */
const MIN_AHEAD = 64 * 1024;
const AHEAD_FACTOR = 32;

/** Bytes of the segment table for `count` segments: 4 + 4 * count, padded to a word. */
export function frameHeaderBytes(count: number): number {
  return ((count + 2) >>> 1) * 8;
}

/**
 * Frame a message. Returns `[segment table, ...segments]`; the segments are the caller's own
 * arrays (not copied), so the caller must not modify them until written. A segment whose length
 * is not a multiple of 8 is followed by a zero pad so that sizes stay in whole words.
 * Throws `RangeError` for an empty segment list (a bug in the caller, not bad input).
 */
export function encodeFrame(segments: readonly Uint8Array[]): Uint8Array[] {
  const n = segments.length;
  if (n === 0) throw new RangeError("encodeFrame: a message needs at least one segment");
  const table = new Uint8Array(frameHeaderBytes(n));
  const dv = new DataView(table.buffer);
  dv.setUint32(0, n - 1, true);
  let aligned = true;
  for (let i = 0; i < n; i++) {
    const len = segments[i]!.byteLength;
    if ((len & 7) !== 0) aligned = false;
    dv.setUint32(4 + 4 * i, Math.ceil(len / 8), true);
  }
  if (aligned) return [table, ...segments];
  const out: Uint8Array[] = [table];
  for (const s of segments) {
    out.push(s);
    const rem = s.byteLength & 7;
    if (rem !== 0) out.push(ZERO_PAD.subarray(0, 8 - rem));
  }
  return out;
}

/** Frame a message into one contiguous buffer (one copy). Handy for tests and datagram transports. */
export function encodeFrameToBytes(segments: readonly Uint8Array[]): Uint8Array {
  const parts = encodeFrame(segments);
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * Where {@link FrameDecoder} delivers each complete message: a callback, or an object whose
 * `deliver` method takes it. A transport passes itself (one class for every connection), so the
 * decoder's delivery call sees one target class however many connections a process opens; a
 * closure per connection is a new call target each time, and optimised code that inlined the
 * first connection's is thrown away when the second connection reads (bench/README "Cold start
 * (tenth session)").
 */
export interface MessageTarget {
  deliver(segments: Uint8Array[]): unknown;
}
export type OnMessage = ((segments: Uint8Array[]) => void) | MessageTarget;

class CallbackTarget implements MessageTarget {
  constructor(private readonly fn: (segments: Uint8Array[]) => void) {}
  deliver(segments: Uint8Array[]): void {
    this.fn(segments);
  }
}

/** `{ validate: true }`: {@link validateMessage} on each message before it is delivered. */
class ValidatingTarget implements MessageTarget {
  constructor(private readonly to: MessageTarget, private readonly limits: ReaderLimits) {}
  deliver(segments: Uint8Array[]): void {
    validateMessage(segments, this.limits);
    this.to.deliver(segments);
  }
}

/**
 * Cuts a byte stream into messages. Accepts arbitrary chunking; checks the segment count and the
 * message size against the limits before allocating anything for the message. Once it has thrown,
 * the stream is unusable and every later `push` throws the same error.
 *
 * Ownership: returned segments are views of the pushed chunks when the message lay within one
 * chunk; when it spanned chunks, each segment is a whole private `ArrayBuffer` of exactly its
 * size (byteOffset 0), referenced by nobody else. The caller owns them and the decoder never
 * writes to them after returning them. A pushed chunk must not be modified afterwards.
 */
export class FrameDecoder {
  readonly limits: ReaderLimits;
  /** Segment table bytes collected so far when the table spans chunks. */
  private header: Uint8Array | null = null;
  private headerFill = 0;
  private headerNeed = 0;
  /**
   * A message spanning chunks (`inBody`): its segment sizes in bytes, the segments completed so
   * far (each its own exact-size buffer), and the one being filled (`seg`, whose capacity may
   * still be below the segment's size, see {@link MIN_AHEAD}).
   */
  private inBody = false;
  private sizes: number[] = [];
  private segs: Uint8Array[] = [];
  private segIdx = 0;
  private seg: Uint8Array | null = null;
  private segFill = 0;
  /** Body bytes (segments) of the spanning message received so far, and its table's size. */
  private bodyFill = 0;
  private bodyHeaderBytes = 0;
  private failed: Error | null = null;

  private readonly validate: boolean;

  /**
   * `opts.validate`: also run {@link validateMessage} on each message before returning it, so
   * all four limits (traversal words and nesting depth too) are enforced here. Off by default:
   * the RPC engine validates every message itself, and validating twice costs time.
   */
  constructor(limits?: Partial<ReaderLimits>, opts: { validate?: boolean } = {}) {
    this.limits = resolveLimits(limits);
    this.validate = opts.validate ?? false;
  }

  /** True when no partial message is buffered (a clean place for the stream to end). */
  get idle(): boolean {
    return this.header === null && !this.inBody;
  }

  /** Bytes of a partial message buffered so far. */
  get bufferedBytes(): number {
    return this.headerFill + (this.inBody ? this.bodyHeaderBytes + this.bodyFill : 0);
  }

  /** Feed one chunk; returns the messages it completed, in order. */
  push(chunk: Uint8Array): Uint8Array[][] {
    const out: Uint8Array[][] = [];
    this.decode(chunk, (m) => out.push(m));
    return out;
  }

  /**
   * Feed one chunk, calling `onMessage` for each message it completes, in order, as soon as it
   * is complete: messages before a bad frame in the same chunk are delivered before the throw.
   * `onMessage` must not call back into this decoder. `end`: decode only `chunk`'s first `end`
   * bytes (a read into a larger buffer, without a view of its own).
   */
  decode(chunk: Uint8Array, onMessage: OnMessage, end = chunk.byteLength): void {
    if (this.failed !== null) throw this.failed;
    try {
      this.decodeInner(chunk, this.validating(onMessage), Math.min(end, chunk.byteLength));
    } catch (e) {
      this.fail(e as Error);
      throw e;
    }
  }

  /**
   * Reading in place (socket-read.ts): where the next bytes of the stream belong when a message
   * spanning reads is being reassembled and at least `min` bytes of its current segment are
   * still missing: the free part of that segment's own buffer (allocated here under the same
   * allowance as {@link decode}'s, see MIN_AHEAD), for the kernel to read into. Null otherwise
   * (between messages, inside a segment table, near a segment's end): read into a buffer of your
   * own and {@link decode} it. Report what was written with {@link filledRegion}, before anything
   * else is fed to this decoder.
   */
  region(min: number): Uint8Array | null {
    if (!this.inBody || this.failed !== null) return null;
    const size = this.sizes[this.segIdx]!;
    const fill = this.segFill;
    if (size - fill < min) return null;
    let buf = this.seg;
    if (buf === null || fill === buf.byteLength) buf = this.grow(1);
    return buf.subarray(fill);
  }

  /**
   * `n` bytes were written at the start of `region` (from {@link region}): take them as the
   * next bytes of the stream, without copying them; completes the message when they end it.
   * A region that is not where the stream stands (something was decoded since) is decoded
   * (copied) instead, so a caller's mistake costs a copy, never bytes out of order.
   */
  filledRegion(region: Uint8Array, n: number, onMessage: OnMessage): void {
    if (this.failed !== null) throw this.failed;
    const buf = this.seg;
    const fill = this.segFill;
    if (!this.inBody || buf === null || region.buffer !== buf.buffer || region.byteOffset !== buf.byteOffset + fill || fill + n > buf.byteLength) {
      this.decode(region, onMessage, n);
      return;
    }
    try {
      this.segFill = fill + n;
      this.bodyFill += n;
      if (this.segFill === this.sizes[this.segIdx]) this.segmentDone(buf, this.validating(onMessage));
    } catch (e) {
      this.fail(e as Error);
      throw e;
    }
  }

  private validating(onMessage: OnMessage): MessageTarget {
    const t = typeof onMessage === "function" ? new CallbackTarget(onMessage) : onMessage;
    return this.validate ? new ValidatingTarget(t, this.limits) : t;
  }

  private fail(e: Error): void {
    this.failed = e;
    this.header = null;
    this.inBody = false;
    this.seg = null;
    this.segs = [];
  }

  /**
   * The current segment's buffer, with room for `n` more bytes: grown (at least doubling) within
   * the allowance, exact-sized once the allowance covers the segment. Uninitialised memory: a
   * segment is handed out only once every byte of it has been written.
   */
  private grow(n: number): Uint8Array {
    const size = this.sizes[this.segIdx]!;
    const fill = this.segFill;
    const buf = this.seg;
    const allowance = Math.max(MIN_AHEAD, AHEAD_FACTOR * (this.bodyFill + n));
    const cap = Math.min(size, Math.max(fill + n, buf === null ? 0 : buf.byteLength * 2, allowance));
    const grown = new Uint8Array(Buffer.allocUnsafeSlow(cap).buffer, 0, cap);
    if (buf !== null && fill > 0) grown.set(buf.subarray(0, fill));
    this.seg = grown;
    return grown;
  }

  private segmentDone(buf: Uint8Array, to: MessageTarget): void {
    this.segs[this.segIdx++] = buf;
    this.seg = null;
    this.segFill = 0;
    this.finishSegments(to);
  }

  /** The stream ended: throws a ProtocolError if it ended inside a message. */
  end(): void {
    if (this.failed !== null) throw this.failed;
    if (!this.idle) {
      this.failed = new ProtocolError(
        `stream ended inside a message (${this.bufferedBytes} bytes of a frame received)`,
      );
      throw this.failed;
    }
  }

  private decodeInner(chunk: Uint8Array, to: MessageTarget, len: number): void {
    let off = 0;
    while (off < len) {
      if (this.inBody) {
        // Continue a message that spans chunks: copy into the current segment's own buffer.
        const size = this.sizes[this.segIdx]!;
        const fill = this.segFill;
        const n = Math.min(size - fill, len - off);
        let buf = this.seg;
        if (buf === null || fill + n > buf.byteLength) buf = this.grow(n);
        buf.set(chunk.subarray(off, off + n), fill);
        this.segFill = fill + n;
        this.bodyFill += n;
        off += n;
        if (this.segFill === size) this.segmentDone(buf, to);
        continue;
      }
      if (this.header === null) {
        // Fast path: the whole message is inside this chunk → views, no copy.
        const avail = len - off;
        if (avail >= 8 && u32(chunk, off) === 0) {
          // One segment (an RPC call's messages): no table array, no loops, fewer calls (they
          // count before tier-up, bench/README "Cold start"). Taken only where the general path
          // below would deliver the same view; anything else (a limit, a partial body) goes there.
          const total = 8 + u32(chunk, off + 4) * 8;
          if (total <= avail && total <= this.limits.maxMessageBytes && this.limits.maxSegments >= 1) {
            to.deliver([chunk.subarray(off + 8, off + total)]);
            off += total;
            continue;
          }
        }
        if (avail >= 4) {
          const count = u32(chunk, off) + 1;
          this.checkCount(count);
          const hb = frameHeaderBytes(count);
          if (avail >= hb) {
            const sizes = this.readSizes(chunk, off, count);
            const total = this.checkTotal(hb, sizes);
            if (avail >= total) {
              to.deliver(split(chunk, off + hb, sizes));
              off += total;
              continue;
            }
            // Table complete, body partial: collect the segments from here on.
            this.startBody(sizes, hb, to);
            off += hb;
            continue;
          }
          this.header = new Uint8Array(hb);
          this.headerNeed = hb;
        } else {
          this.header = new Uint8Array(8); // grown once the count is known
          this.headerNeed = 4;
        }
        this.headerFill = 0;
      }
      // Slow path: collect the segment table across chunks.
      const n = Math.min(this.headerNeed - this.headerFill, len - off);
      this.header.set(chunk.subarray(off, off + n), this.headerFill);
      this.headerFill += n;
      off += n;
      if (this.headerFill < this.headerNeed) continue;
      const count = u32(this.header, 0) + 1;
      this.checkCount(count);
      const hb = frameHeaderBytes(count);
      if (this.headerNeed < hb) {
        if (this.header.byteLength < hb) {
          const bigger = new Uint8Array(hb);
          bigger.set(this.header.subarray(0, this.headerFill));
          this.header = bigger;
        }
        this.headerNeed = hb;
        continue;
      }
      const sizes = this.readSizes(this.header, 0, count);
      this.checkTotal(hb, sizes);
      this.header = null;
      this.headerFill = 0;
      this.startBody(sizes, hb, to);
    }
  }

  private startBody(sizes: number[], headerBytes: number, to: MessageTarget): void {
    this.sizes = sizes;
    this.segs = new Array<Uint8Array>(sizes.length);
    this.segIdx = 0;
    this.seg = null;
    this.segFill = 0;
    this.bodyHeaderBytes = headerBytes;
    this.bodyFill = 0;
    this.inBody = true;
    this.finishSegments(to);
  }

  /** Skip empty segments; deliver the message once every segment is complete. */
  private finishSegments(to: MessageTarget): void {
    const sizes = this.sizes;
    while (this.segIdx < sizes.length && sizes[this.segIdx] === 0) this.segs[this.segIdx++] = new Uint8Array(0);
    if (this.segIdx < sizes.length) return;
    const segs = this.segs;
    this.inBody = false;
    this.segs = [];
    this.sizes = [];
    this.bodyFill = 0;
    to.deliver(segs);
  }

  private checkCount(count: number): void {
    if (count > this.limits.maxSegments) {
      throw new LimitError(
        `message has ${count} segments, more than the limit maxSegments = ${this.limits.maxSegments}`,
      );
    }
  }

  private readSizes(b: Uint8Array, off: number, count: number): number[] {
    const sizes = new Array<number>(count);
    for (let i = 0; i < count; i++) sizes[i] = u32(b, off + 4 + 4 * i) * 8;
    return sizes;
  }

  /** Total frame bytes (table + segments), checked against maxMessageBytes. */
  private checkTotal(hb: number, sizes: number[]): number {
    let total = hb;
    for (let i = 0; i < sizes.length; i++) total += sizes[i]!; // not for-of: no iterator per call unoptimised
    if (total > this.limits.maxMessageBytes) {
      throw new LimitError(
        `message is ${total} bytes, more than the limit maxMessageBytes = ${this.limits.maxMessageBytes}`,
      );
    }
    return total;
  }
}

/** Bytes of the frame starting at `off` if all of it lies in `b` (and its table is sane), else 0. */
function wholeFrameAt(b: Uint8Array, off: number, maxSegments: number, end: number): number {
  const avail = end - off;
  const count = u32(b, off) + 1;
  if (count > maxSegments) return 0;
  const hb = frameHeaderBytes(count);
  if (avail < hb) return 0;
  let total = hb;
  for (let i = 0; i < count; i++) total += u32(b, off + 4 + 4 * i) * 8;
  return total <= avail ? total : 0;
}

function split(b: Uint8Array, off: number, sizes: number[]): Uint8Array[] {
  const segs = new Array<Uint8Array>(sizes.length);
  for (let i = 0; i < sizes.length; i++) {
    const s = sizes[i]!;
    segs[i] = b.subarray(off, off + s);
    off += s;
  }
  return segs;
}

// ---------------------------------------------------------------------------------------------
// Partial frames across connections

/**
 * The buffer a {@link FrameDecoder} may hold for a frame of `total` bytes of which `arrived`
 * have arrived: what arrived, plus the segment buffer it allocates ahead (see MIN_AHEAD).
 */
export function partialFrameHold(total: number, arrived: number): number {
  return Math.min(total, arrived + Math.max(MIN_AHEAD, AHEAD_FACTOR * arrived));
}

/**
 * Bytes of partially received frames that several connections may hold together: one object
 * shared by whoever should share the cap (a listener's connections, or every listener of a
 * process). Not global state: whoever creates it passes it in.
 */
export class FrameBudget {
  /** Bytes held now. */
  used = 0;
  /** Most bytes held at once since creation. */
  peak = 0;
  /** Charges refused (each closed a connection). */
  refused = 0;

  constructor(readonly limit: number) {
    if (!(limit === Infinity || (Number.isInteger(limit) && limit > 0))) {
      throw new RangeError(`FrameBudget limit must be a positive integer, got ${String(limit)}`);
    }
  }

  /** Take `n` more bytes; false (nothing taken) when that would pass the limit. */
  tryTake(n: number): boolean {
    if (this.used + n > this.limit) {
      this.refused++;
      return false;
    }
    this.used += n;
    if (this.used > this.peak) this.peak = this.used;
    return true;
  }

  /** Give back `n` bytes taken before. */
  give(n: number): void {
    this.used -= n;
  }
}

/**
 * Follows the frame boundaries of a byte stream without keeping its bytes (only a segment table
 * in progress, at most `frameHeaderBytes(maxSegments)`), next to the stream's real decoder: it
 * counts completed frames, knows since when a frame has been incomplete, and charges the
 * partial frame ({@link partialFrameHold}) to a shared {@link FrameBudget}.
 */
export class FrameTracker {
  /** Frames completed so far. */
  messages = 0;
  /** `now()` when the incomplete frame started; -1 between frames. */
  partialSince = -1;
  /** Bytes of the current frame charged to the budget. */
  held = 0;
  private header = new Uint8Array(8);
  private headerFill = 0;
  private headerNeed = 8;
  private total = 0; // frame bytes (table + segments) once the table is known, else 0
  private arrived = 0; // bytes of the current frame seen

  constructor(
    private readonly budget: FrameBudget | null,
    private readonly now: () => number,
    private readonly maxSegments = 1 << 16,
  ) {}

  /**
   * Follow one chunk: its first `len` bytes (default all; a read into a larger buffer passes its
   * byte count). Returns false when the budget refused the partial frame (close the stream).
   */
  push(chunk: Uint8Array, len: number = chunk.byteLength): boolean {
    let off = 0;
    while (off < len) {
      if (this.arrived === 0 && len - off >= 8) {
        // A whole frame inside this chunk (the usual case): count it, nothing to keep.
        const total = wholeFrameAt(chunk, off, this.maxSegments, len);
        if (total > 0) {
          this.messages++;
          off += total;
          continue;
        }
      }
      if (this.total === 0) {
        const n = Math.min(this.headerNeed - this.headerFill, len - off);
        this.header.set(chunk.subarray(off, off + n), this.headerFill);
        this.headerFill += n;
        this.arrived += n;
        off += n;
        if (this.headerFill < this.headerNeed) continue;
        const count = u32(this.header, 0) + 1;
        if (count > this.maxSegments) return false; // the decoder refuses it too
        const hb = frameHeaderBytes(count);
        if (this.headerNeed < hb) {
          const bigger = new Uint8Array(hb);
          bigger.set(this.header.subarray(0, this.headerFill));
          this.header = bigger;
          this.headerNeed = hb;
          continue;
        }
        let total = hb;
        for (let i = 0; i < count; i++) total += u32(this.header, 4 + 4 * i) * 8;
        this.total = total;
      } else {
        const n = Math.min(this.total - this.arrived, len - off);
        this.arrived += n;
        off += n;
      }
      if (this.total !== 0 && this.arrived === this.total) this.complete();
    }
    if (this.arrived === 0) return true;
    if (this.partialSince < 0) this.partialSince = this.now(); // a frame left incomplete starts now
    return this.charge(this.total === 0 ? this.arrived : partialFrameHold(this.total, this.arrived));
  }

  /** Give back what is charged (the stream closed). */
  release(): void {
    if (this.held > 0) this.budget?.give(this.held);
    this.held = 0;
  }

  private charge(want: number): boolean {
    if (want <= this.held || this.budget === null) return true;
    if (!this.budget.tryTake(want - this.held)) return false;
    this.held = want;
    return true;
  }

  private complete(): void {
    this.messages++;
    this.release();
    this.partialSince = -1;
    this.total = 0;
    this.arrived = 0;
    this.headerFill = 0;
    this.headerNeed = 8;
  }
}

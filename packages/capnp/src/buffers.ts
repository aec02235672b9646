/**
 * Buffers of the engine's messages. Outgoing: a small free list of first-segment buffers for the engine's own outgoing messages (fastpath.ts
 * builds Calls and Returns in them). Allocating an ArrayBuffer costs about as much as building
 * the whole small message, so a message whose bytes a transport has copied (a stream
 * transport's batch: Transport.sendCopy) gives its buffer back here, zeroed, for the next one.
 *
 * Aliasing: a recycled message is cut off from its buffer first ({@link recycleMessage}): its
 * segment and arena now hold an empty buffer, so a builder kept past send (a Request's params, a
 * server's results) throws a RangeError on its next access instead of writing into another
 * message. Only one-segment messages whose buffer came from here are taken back; incoming
 * messages never are (readers may keep views of their bytes).
 *
 * Threading: module state, so one free list per thread (each worker has its own); used only
 * synchronously on the thread that builds and sends the messages.
 */

import type * as capnp from "capnp-ts";

/** Largest buffer kept (bytes): a message up to this size is what the stream transport copies. */
const MAX_POOLED = 1024;
/** Most buffers kept in all (memory bound: 64 KiB per thread); past it the lists start over. */
const KEEP = 64;

/**
 * Free buffers of one size: a stack with its own count, not push / pop, because popping an array
 * to empty makes V8 drop its backing store and the next push allocate a new one (once per message
 * in a call loop). Each buffer is kept as the DataView over all of it that its last segment had:
 * the next segment over the buffer takes that view too (a DataView costs about as much to make
 * as a small object graph; it holds no state but its buffer).
 */
interface FreeList { views: DataView[]; n: number }
/** Free buffers by size in words (each request size gets its own list: wire layouts stay as built). */
const free: (FreeList | undefined)[] = [];
let kept = 0;

/** Used bytes up to which a recycled buffer is zeroed word by word through its DataView. */
const ZERO_BY_VIEW = 256;

const EMPTY = new ArrayBuffer(0);
const EMPTY_VIEW = new DataView(EMPTY);

/** A zero-filled buffer of `bytes` bytes (a multiple of 8). */
export function takeBuffer(bytes: number): ArrayBuffer {
  return takeView(bytes).buffer as ArrayBuffer;
}

/** {@link takeBuffer} as a DataView over all of the buffer (a segment's `_dv`). */
export function takeView(bytes: number): DataView {
  const list = bytes <= MAX_POOLED && (bytes & 7) === 0 ? free[bytes >>> 3] : undefined;
  // A pooled view or a new one: a constant chosen by data, called from one call site. A warm
  // server's Returns always find their size's list; a new connection's first messages (the
  // Bootstrap's Return) may not, and a branch of its own would have no type feedback there.
  const take = list !== undefined && list.n > 0 ? pooledView : newView;
  return take(list, bytes);
}

const pooledView = (list: FreeList | undefined, _bytes: number): DataView => {
  const l = list!;
  const v = l.views[--l.n]!;
  l.views[l.n] = EMPTY_VIEW; // drops the reference, keeps the slot
  kept--;
  return v;
};
const newView = (_list: FreeList | undefined, bytes: number): DataView => new DataView(new ArrayBuffer(bytes));

/**
 * Take back the buffer of `m`, a message built by fastpath.ts (a buffer from {@link takeBuffer})
 * or copied by the engine, whose bytes were copied out by a transport and which nobody reads or
 * writes any more, if it has one segment of at most 1 KiB. `m` is then cut off from the buffer:
 * its segment reads as an empty buffer from now on (so a second call leaves it alone).
 */
export function recycleMessage(m: capnp.Message): void {
  const segs = m._capnp.segments;
  if (segs.length !== 1) return;
  const seg = segs[0]! as unknown as { buffer: ArrayBuffer; _dv: DataView; byteLength: number };
  const b = seg.buffer;
  const size = b.byteLength;
  if (size === 0 || size > MAX_POOLED || (size & 7) !== 0) return;
  const used = seg.byteLength;
  const dv = seg._dv;
  seg.buffer = EMPTY;
  seg._dv = EMPTY_VIEW;
  seg.byteLength = 0;
  const arena = m._capnp.arena as unknown as { buffers?: ArrayBuffer[] };
  if (arena.buffers !== undefined && arena.buffers[0] === b) arena.buffers[0] = EMPTY;
  if (kept >= KEEP) {
    // Full (of sizes nobody asks for any more, or a burst): start over rather than stop pooling.
    free.length = 0;
    kept = 0;
  }
  // Zeroed through the view it keeps anyway: a small message without a typed array per call.
  const whole = dv.buffer === b && dv.byteOffset === 0 && dv.byteLength === size;
  if (whole && used <= ZERO_BY_VIEW) for (let i = 0; i < used; i += 8) dv.setFloat64(i, 0);
  else new Uint8Array(b, 0, used).fill(0);
  const list = (free[size >>> 3] ??= { views: [], n: 0 });
  list.views[list.n++] = whole ? dv : new DataView(b);
  kept++;
}

// ---------------------------------------------------------------------------------------------
// Incoming small messages

/** Bytes of one slab of {@link copyToSlab}; what one live message can keep alive at most. */
const SLAB_BYTES = 2048;
/** Largest message copied into a slab (a quarter of it); larger ones get a buffer of their own. */
const SLAB_MAX_MESSAGE = SLAB_BYTES / 4;
let slab: Uint8Array | null = null;
let slabUsed = 0;

/**
 * A copy of `s` (an incoming segment of a multiple of 8 bytes) packed with others into a shared
 * 2 KiB slab, for a reader that takes segments at an offset (fastpath.ts messageInPlace), or
 * null when `s` is over 512 bytes. One ArrayBuffer per ~dozen small pipelined messages instead
 * of one each. A slab is never written again once full, and only its messages' reader views
 * keep it alive: a view a handler keeps holds at most 2 KiB, at most 4x a message copied here.
 */
export function copyToSlab(s: Uint8Array): Uint8Array | null {
  const n = s.byteLength;
  if (n > SLAB_MAX_MESSAGE || (n & 7) !== 0) return null;
  let b = slab;
  if (b === null || slabUsed + n > SLAB_BYTES) {
    slab = b = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const v = b.subarray(slabUsed, slabUsed + n);
  v.set(s);
  slabUsed += n;
  return v;
}

/** Buffers waiting in the free list (for tests). */
export function freeBufferCount(): number {
  return kept;
}

/**
 * Borrowed looks at a capability inside a message, without a handle: for a server's per-call
 * path, which only needs to know which local Server a capability is, or whether it is the one it
 * already holds (the runtime's `Proxy.Context` threads: docs/threading.md). {@link readCap}
 * (capability.ts) makes a handle (one more reference, registered with the engine's GC safety net)
 * through capnp-ts Pointer objects; these read the pointer words straight from the segment and
 * touch no reference count.
 *
 * Each takes the capability in pointer `sub` of the struct in pointer `ptrIndex` of `s` (`sub` <
 * 0: pointer `ptrIndex` of `s` itself). They answer only what the common layout (near struct
 * pointers, a validated message) lets them read in place; for anything else they say "unknown"
 * and the caller takes the general path ({@link readCap} and the handle's methods).
 *
 * Threading: the thread that owns the message (its connection's loop thread).
 */

import type { Capability, Server, Struct } from "./types.js";
import type { Hook } from "./hook.js";
import { CapHandle } from "./client.js";

interface SegLike {
  _dv: DataView;
  byteLength: number;
}

/**
 * Byte offset of pointer `i` of the struct the near struct pointer at `p` points to: -1 when the
 * struct has no pointer `i` (a null pointer included: its fields read as null), -2 when `p` is not
 * a near struct pointer or runs past the segment (take the general path).
 */
function pointerOf(seg: SegLike, p: number, i: number): number {
  const dv = seg._dv;
  if (p < 0 || p + 8 > seg.byteLength) return -2;
  const lo = dv.getUint32(p, true);
  if ((lo & 3) !== 0) return -2;
  const hi = dv.getUint32(p + 4, true);
  if (i >= hi >>> 16) return -1;
  const q = p + 8 + ((lo | 0) >> 2) * 8 + (hi & 0xffff) * 8 + i * 8;
  return q + 8 > seg.byteLength ? -2 : q;
}

/**
 * Byte offset of pointer `ptrIndex` of `s` when it is null and `s` is a near struct (not a list
 * element): where {@link writeCap} may write a capability pointer in place; else -1.
 */
export function nullPointerIn(s: Struct, ptrIndex: number): number {
  if (s._capnp.compositeIndex !== undefined) return -1;
  const seg = s.segment as unknown as SegLike;
  const q = pointerOf(seg, s.byteOffset, ptrIndex);
  if (q < 0) return -1;
  const dv = seg._dv;
  return dv.getUint32(q, true) === 0 && dv.getUint32(q + 4, true) === 0 ? q : -1;
}

/** The hook a capability pointer names (see the module comment): null for none, undefined for "unknown". */
function hookAt(s: Struct, ptrIndex: number, sub: number): Hook | null | undefined {
  if (s._capnp.compositeIndex !== undefined) return undefined;
  const seg = s.segment as unknown as SegLike;
  let q = pointerOf(seg, s.byteOffset, ptrIndex);
  if (q >= 0 && sub >= 0) q = pointerOf(seg, q, sub);
  if (q === -1) return null;
  if (q < 0) return undefined;
  const dv = seg._dv;
  const w0 = dv.getUint32(q, true);
  const id = dv.getUint32(q + 4, true);
  if (w0 === 0 && id === 0) return null;
  if (w0 !== 3) return undefined; // not a capability pointer: readCap says what is wrong
  const table = s.segment.message._capnp.capTable as unknown as (Hook | null)[] | undefined;
  const h = table?.[id];
  return h === undefined ? undefined : h;
}

/**
 * The local Server the capability is, as resolved now: null when the pointer (or the struct
 * holding it) is null or names a null capability; undefined when it cannot tell without a handle
 * (not a local Server, a promise not resolved yet, an unusual layout, an error readCap reports).
 */
export function peekLocalServer(s: Struct, ptrIndex: number, sub: number): Server | null | undefined {
  const h = hookAt(s, ptrIndex, sub);
  if (h === null) return null;
  if (h === undefined) return undefined;
  const r = h.resolved();
  return r.isNullCap() ? null : r.localServer();
}

/** True when the capability is the one `cap` (an open handle of this engine) refers to. */
export function peekSameCap(s: Struct, ptrIndex: number, sub: number, cap: Capability): boolean {
  if (!(cap instanceof CapHandle) || cap.closed) return false;
  const h = hookAt(s, ptrIndex, sub);
  return h !== null && h !== undefined && h === cap.hookRef();
}

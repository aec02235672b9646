/**
 * The export table of one connection: our capabilities the peer holds (by our ExportId), each
 * with the number of times we sent it, and its rules — describing a cap for the peer
 * (CapDescriptor: senderHosted/senderPromise add a reference; caps the peer hosts go back as
 * receiverHosted/receiverAnswer), Resolve when a promise we exported settles, and the peer's
 * Release.
 *
 * Threading: the connection's loop thread.
 */

import type { Segment } from "capnp-ts/src/serialization/segment.js";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { ProtocolError } from "../errors.js";
import type { Hook } from "./hook.js";
import { newMessage } from "./message.js";
import { PromiseHook } from "./promise.js";
import { ImportHook } from "./imports.js";
import { LocalHook } from "./local.js";
import { EMPTY, writeException, writePromisedAnswer } from "./core.js";
import type { ConnCore } from "./core.js";

interface ExportEntry {
  id: number;
  hook: Hook;
  refcount: number;
  /** The key in byHook. */
  key: Hook;
  /** `hook` when the entry was made for a Server of this vat: its holder counts follow `refcount`. */
  local: LocalHook | null;
}

export class ExportTable {
  // Both start as the shared EMPTY map (read-only); a Map of their own on the first entry.
  private exports = EMPTY as Map<number, ExportEntry>;
  private byHook = EMPTY as Map<Hook, ExportEntry>;
  private readonly freeIds: number[] = [];
  private nextId = 0;

  constructor(private readonly core: ConnCore) {}

  get size(): number {
    return this.exports.size;
  }

  /** A new reference to export `id`, the target of an incoming call or Disembargo. */
  target(id: number): Hook {
    const e = this.exports.get(id);
    if (e === undefined) throw new ProtocolError(`Message target is not a current export ID (${id})`);
    return e.hook.addRef();
  }

  /** A new reference to export `id`, named by a receiverHosted CapDescriptor. */
  receiverHosted(id: number): Hook {
    const e = this.exports.get(id);
    if (e === undefined) throw new ProtocolError(`CapDescriptor.receiverHosted names unknown export ID ${id}`);
    return e.hook.addRef();
  }

  /** Write CapDescriptors for `caps` into `payload`; returns the export ids added (or null). */
  writeCapTable(payload: rpc.Payload, caps: readonly (Hook | null)[]): number[] | null {
    const n = caps.length;
    if (n === 0) return null;
    const at = this.needsPointers(caps) ? -1 : capListIn(payload, n);
    if (at >= 0) return this.writeCapList(segmentView(payload.segment), at, caps);
    return this.writeCapTableSlow(payload, caps);
  }

  /**
   * {@link writeCapTable} into the Payload whose struct pointer is at byte `p` of `seg` (our own
   * Call's params: rpc/questions.ts sendUnguarded), without a Payload object unless capnp-ts must
   * write the table (a receiverAnswer descriptor, or no room in the segment): the same bytes.
   */
  writeCapTableAt(seg: Segment, p: number, caps: readonly (Hook | null)[]): number[] | null {
    const n = caps.length;
    if (n === 0) return null;
    const at = this.needsPointers(caps) ? -1 : capListAt(seg, p, n);
    if (at >= 0) return this.writeCapList(segmentView(seg), at, caps);
    return this.writeCapTableSlow(new rpc.Payload(seg, p), caps);
  }

  /** {@link writeCapTable} through capnp-ts (`initCapTable` and the descriptors' setters). */
  private writeCapTableSlow(payload: rpc.Payload, caps: readonly (Hook | null)[]): number[] | null {
    const n = caps.length;
    const list = payload.initCapTable(n);
    let exp: number[] | null = null;
    for (let i = 0; i < n; i++) {
      const id = this.writeDescriptor(list.get(i), caps[i] ?? null);
      if (id >= 0) (exp ??= []).push(id);
    }
    return exp;
  }

  /** Whether a cap needs a descriptor with a pointer (receiverAnswer: a promisedAnswer path). */
  needsPointers(caps: readonly (Hook | null)[]): boolean {
    const q = this.core.questions;
    for (let i = 0; i < caps.length; i++) {
      const r = caps[i]?.resolved();
      if (r instanceof PromiseHook && r.route !== null && r.route.conn === q && r.route.importHook === null) return true;
    }
    return false;
  }

  /**
   * {@link writeCapTable} into the list {@link capListAt} allocated at byte `at` of `dv`: each
   * descriptor is one data word (`which`, the id), written as writeDescriptor's setters would;
   * zeroed words (also the flat Call's, rpc/questions.ts sendFlatCaps, after {@link needsPointers}).
   */
  writeCapList(dv: DataView, at: number, caps: readonly (Hook | null)[]): number[] | null {
    const core = this.core;
    let exp: number[] | null = null;
    for (let i = 0, e = at; i < caps.length; i++, e += 16) {
      const hook = caps[i] ?? null;
      const r = hook === null ? null : hook.resolved();
      let which: number = rpc.CapDescriptor.NONE;
      let id = 0;
      if (r === null || r.isNullCap()) {
        // none
      } else if (r instanceof ImportHook && r.core === core) {
        which = rpc.CapDescriptor.RECEIVER_HOSTED;
        id = r.id;
      } else if (r instanceof PromiseHook && r.route !== null && r.route.conn === core.questions) {
        which = rpc.CapDescriptor.RECEIVER_HOSTED; // needsPointers: only import routes get here
        id = r.route.importId;
      } else {
        id = this.exportHook(r).id;
        which = r instanceof PromiseHook ? rpc.CapDescriptor.SENDER_PROMISE : rpc.CapDescriptor.SENDER_HOSTED;
        (exp ??= []).push(id);
      }
      dv.setUint16(e, which, true);
      dv.setUint32(e + 4, id, true);
    }
    return exp;
  }

  /** Describe `hook` for the peer. Returns the export id if an export reference was added, else -1. */
  writeDescriptor(desc: rpc.CapDescriptor, hook: Hook | null): number {
    if (hook === null) {
      desc.setNone();
      return -1;
    }
    const core = this.core;
    const r = hook.resolved();
    if (r instanceof ImportHook && r.core === core) {
      desc.setReceiverHosted(r.id);
      return -1;
    }
    if (r instanceof PromiseHook && r.route !== null && r.route.conn === core.questions) {
      const route = r.route;
      if (route.importHook !== null) desc.setReceiverHosted(route.importId);
      else writePromisedAnswer(desc.initReceiverAnswer(), route.qid, route.path);
      return -1;
    }
    if (r.isNullCap()) {
      desc.setNone();
      return -1;
    }
    const e = this.exportHook(r);
    if (r instanceof PromiseHook) desc.setSenderPromise(e.id);
    else desc.setSenderHosted(e.id);
    return e.id;
  }

  private exportHook(h: Hook): ExportEntry {
    let e = this.byHook.get(h);
    if (e !== undefined) {
      e.refcount++;
      if (e.local !== null) e.local.exportRefs++;
      return e;
    }
    const free = this.freeIds.pop();
    const id = free === undefined ? this.nextId++ : free;
    const local = h instanceof LocalHook ? h : null;
    if (local !== null) local.exportRefs++;
    h.exportEntries++;
    e = { id, hook: h.addRef(), refcount: 1, key: h, local };
    (this.exports === EMPTY ? (this.exports = new Map()) : this.exports).set(id, e);
    (this.byHook === EMPTY ? (this.byHook = new Map()) : this.byHook).set(h, e);
    if (h instanceof PromiseHook) {
      const entry = e;
      h.onResolved((res) => this.exportResolved(entry, res));
    }
    return e;
  }

  /** One of our promise exports resolved: send Resolve, and point the export at the resolution. */
  private exportResolved(e: ExportEntry, res: Hook): void {
    const core = this.core;
    if (core.ended || this.exports.get(e.id) !== e) return;
    const m = newMessage(128);
    m._capnp.capTable = [];
    const r = m.initRoot(rpc.Message).initResolve();
    r.setPromiseId(e.id);
    const err = res.resolved().brokenError();
    if (err !== null) writeException(r.initException(), err);
    else this.writeDescriptor(r.initCap(), res);
    // Later calls and Disembargoes aimed at this export go straight to the resolution.
    const old = e.hook;
    e.hook = res.addRef();
    old.release();
    core.send(m);
  }

  /** The peer's Release (or our own undo of a reference we added). */
  release(id: number, count: number): void {
    const e = this.exports.get(id);
    if (e === undefined) throw new ProtocolError(`Release of unknown export ID ${id}`);
    if (count > e.refcount) throw new ProtocolError(`Release of export ${id} by ${count}, more than its ${e.refcount} references`);
    e.refcount -= count;
    if (e.local !== null) e.local.exportRefs -= count;
    if (e.refcount === 0) {
      e.key.exportEntries--;
      this.exports.delete(id);
      if (this.byHook.get(e.key) === e) this.byHook.delete(e.key);
      this.freeIds.push(id);
      this.core.releaseRef(e.hook);
    }
  }

  releaseIfPresent(id: number): void {
    if (this.exports.has(id)) this.release(id, 1);
  }

  /** Connection end: the peer's references are gone (servers get onRelease). */
  shutdown(): void {
    const xs = [...this.exports.values()];
    this.exports.clear();
    this.byHook.clear();
    for (const x of xs) {
      if (x.local !== null) x.local.exportRefs -= x.refcount;
      x.key.exportEntries--;
      this.core.releaseRef(x.hook);
    }
  }
}

/** CapDescriptor's size: one data word, one pointer. */
const DESC_WORDS = 2;

/** A capnp-ts segment's DataView and allocation state, read in place. */
type SegmentState = { _dv: DataView; byteLength: number; buffer: ArrayBuffer };

function segmentView(seg: Segment): DataView {
  return (seg as unknown as SegmentState)._dv;
}

/**
 * `payload.initCapTable(n)` done in place (exported for its test), laid out as capnp-ts lays it
 * out (the list at the end of the payload's segment: its tag word, then `n` zeroed two-word
 * elements): the byte offset of element 0, or -1 when capnp-ts must do it (the payload is not a
 * near struct with a null cap table pointer, or the list does not fit in that segment).
 */
export function capListIn(payload: rpc.Payload, n: number): number {
  if (payload._capnp.compositeIndex !== undefined) return -1;
  return capListAt(payload.segment, payload.byteOffset, n);
}

/**
 * {@link capListIn} for the Payload whose struct pointer is at byte `p` of `seg` (exported for
 * its test). The room is checked as capnp-ts's `Segment.hasCapacity` checks it, without its
 * trace call.
 */
export function capListAt(segment: Segment, p: number, n: number): number {
  const seg = segment as unknown as SegmentState;
  const dv = seg._dv;
  const lo = dv.getUint32(p, true);
  const hi = dv.getUint32(p + 4, true);
  if ((lo & 3) !== 0 || (lo === 0 && hi === 0) || hi >>> 16 < 2) return -1;
  const q = p + 8 + ((lo | 0) >> 2) * 8 + (hi & 0xffff) * 8 + 8; // pointer 1: capTable
  if (dv.getUint32(q, true) !== 0 || dv.getUint32(q + 4, true) !== 0) return -1;
  const bytes = (1 + n * DESC_WORDS) * 8;
  const t = seg.byteLength;
  if (seg.buffer.byteLength - t < bytes) return -1;
  seg.byteLength = t + bytes;
  dv.setUint32(q, (((t - q - 8) >> 3) << 2) | 1, true); // list pointer, inline composite
  dv.setUint32(q + 4, 7 | ((n * DESC_WORDS) << 3), true);
  dv.setUint32(t, n << 2, true); // tag: n elements of 1 data word, 1 pointer
  dv.setUint32(t + 4, 1 | (1 << 16), true);
  return t + 8;
}

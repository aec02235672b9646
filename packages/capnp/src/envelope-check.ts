/**
 * The rpc.capnp envelope check of validate.ts (`validateRpcMessage`), run on a message that passed
 * the pointer walk (walk.ts). capnp-ts does not check what kind of pointer it reads: a list where
 * a struct is expected (or a capability where a list is expected) makes it read with sizes taken
 * from the wrong bits, and composite lists whose elements are smaller than the schema's make it
 * "upgrade" the list by copying inside the message (buggy: it can overrun). This walks the fields
 * an RPC engine reads (Message union, Call, Return, Resolve, Disembargo, MessageTarget,
 * PromisedAnswer and its transform, Payload cap table, CapDescriptor, Exception texts) and
 * requires: struct fields are struct pointers, struct lists are composite lists whose elements
 * are at least the schema's size, Text is a byte list ending in NUL. `Payload.content` and other
 * AnyPointer fields are not checked (their schema is the application's).
 *
 * Cost: it runs on every message, so it allocates nothing: a struct found is a handle into a
 * reused Int32Array of (segment, data word, data words, pointer count) records, a resolved
 * pointer is left in the checker's fields, and words are read from the segments' bytes (every
 * read lies in a range the walk checked).
 *
 * Threading: synchronous and not re-entrant; any thread (each thread has its own module state).
 */

import { ProtocolError } from "./errors.js";
import { u32le } from "./walk.js";

const NO_SEGS: readonly Uint8Array[] = [];

/** No struct (absent or null pointer). */
const NONE = -1;
const REF = 4; // ints per struct record: seg, data word, dw, pc

class EnvelopeCheck {
  private segs: readonly Uint8Array[] = [];
  private refs = new Int32Array(REF * 32);
  private nrefs = 0;
  // The pointer resolve() found: kind, segment, target word, and its second word (sizes).
  private kind = 0;
  private seg = 0;
  private target = 0;
  private hi = 0;

  /** Check the envelope of `segs` (which passed the walk); throws ProtocolError. */
  run(segs: readonly Uint8Array[]): void {
    this.segs = segs;
    this.nrefs = 0;
    try {
      this.message(this.root(), 0);
    } finally {
      this.segs = NO_SEGS;
    }
  }

  private ref(seg: number, data: number, dw: number, pc: number): number {
    const i = this.nrefs++;
    if ((i + 1) * REF > this.refs.length) {
      const r = new Int32Array(this.refs.length * 2);
      r.set(this.refs);
      this.refs = r;
    }
    const o = i * REF;
    const r = this.refs;
    r[o] = seg;
    r[o + 1] = data;
    r[o + 2] = dw;
    r[o + 3] = pc;
    return i;
  }

  /** Resolve the pointer at (seg, word) into kind/seg/target/hi (after far pointers); false if null. */
  private resolve(seg: number, w: number): boolean {
    const v = this.segs[seg]!;
    let lo = u32le(v, w * 8);
    let hi = u32le(v, w * 8 + 4);
    if (lo === 0 && hi === 0) return false;
    if ((lo & 3) === 2) {
      const double = (lo & 4) !== 0;
      const pad = lo >>> 3;
      const pv = this.segs[hi]!;
      const padSeg = hi;
      lo = u32le(pv, pad * 8);
      hi = u32le(pv, pad * 8 + 4);
      if (!double) {
        if (lo === 0 && hi === 0) return false;
        this.kind = lo & 3;
        this.seg = padSeg;
        this.target = pad + 1 + ((lo | 0) >> 2);
        this.hi = hi;
        return true;
      }
      this.kind = u32le(pv, pad * 8 + 8) & 3;
      this.seg = hi;
      this.target = lo >>> 3;
      this.hi = u32le(pv, pad * 8 + 12);
      return true;
    }
    this.kind = lo & 3;
    this.seg = seg;
    this.target = w + 1 + ((lo | 0) >> 2);
    this.hi = hi;
    return true;
  }

  private u16(s: number, byte: number): number {
    const r = this.refs;
    const o = s * REF;
    if (byte + 2 > r[o + 2]! * 8) return 0;
    const b = this.segs[r[o]!]!;
    const at = r[o + 1]! * 8 + byte;
    return b[at]! | (b[at + 1]! << 8);
  }

  /** Resolve pointer field `i` of struct `s`; false when absent or null. */
  private field(s: number, i: number): boolean {
    if (s === NONE) return false;
    const r = this.refs;
    const o = s * REF;
    if (i >= r[o + 3]!) return false;
    return this.resolve(r[o]!, r[o + 1]! + r[o + 2]! + i);
  }

  /** Struct field `i` of `s` (NONE when absent or null). */
  private struct(s: number, i: number, what: string): number {
    if (!this.field(s, i)) return NONE;
    if (this.kind !== 0) throw new ProtocolError(`${what} is not a struct pointer`);
    return this.ref(this.seg, this.target, this.hi & 0xffff, this.hi >>> 16);
  }

  /**
   * Struct-list field `i` of `s`: checks its elements are at least `minDw` data words and `minPc`
   * pointers; calls `each` (a method of this class) on every element.
   */
  private structList(s: number, i: number, minDw: number, minPc: number, what: string, each: ((this: EnvelopeCheck, d: number, what: string) => void) | null): void {
    if (!this.field(s, i)) return;
    if (this.kind !== 1 || (this.hi & 7) !== 7) throw new ProtocolError(`${what} is not a list of structs`);
    const seg = this.seg;
    const target = this.target;
    const v = this.segs[seg]!;
    const tlo = u32le(v, target * 8);
    const thi = u32le(v, target * 8 + 4);
    const n = tlo >>> 2;
    const dw = thi & 0xffff;
    const pc = thi >>> 16;
    if (n > 0 && (dw < minDw || pc < minPc)) {
      throw new ProtocolError(`${what} elements are smaller than the schema's (${dw}/${pc} words, need ${minDw}/${minPc})`);
    }
    if (each === null) return;
    const mark = this.nrefs;
    for (let k = 0; k < n; k++) {
      this.nrefs = mark; // each element's records are dropped once checked
      each.call(this, this.ref(seg, target + 1 + k * (dw + pc), dw, pc), `${what}[]`);
    }
  }

  /** Text field `i` of `s`: null, or a byte list ending in NUL. */
  private text(s: number, i: number, what: string): void {
    if (!this.field(s, i)) return;
    const count = this.hi >>> 3;
    if (this.kind !== 1 || (this.hi & 7) !== 2) throw new ProtocolError(`${what} is not Text (a byte list)`);
    if (count === 0 || this.segs[this.seg]![this.target * 8 + count - 1] !== 0) {
      throw new ProtocolError(`${what} is Text that is not NUL-terminated`);
    }
  }

  private message(m: number, depth: number): void {
    if (m === NONE) return;
    switch (this.u16(m, 0)) {
      case 0: // unimplemented: the message we sent, echoed
        if (depth < 2) this.message(this.struct(m, 0, "Message.unimplemented"), depth + 1);
        return;
      case 1:
        return this.exception(this.struct(m, 0, "Message.abort"), "Message.abort");
      case 2: {
        const c = this.struct(m, 0, "Message.call");
        this.checkTarget(this.struct(c, 0, "Call.target"), "Call.target");
        this.payload(this.struct(c, 1, "Call.params"), "Call.params.capTable");
        return;
      }
      case 3: {
        const r = this.struct(m, 0, "Message.return");
        if (r === NONE) return;
        const w = this.u16(r, 6);
        if (w === 0) this.payload(this.struct(r, 0, "Return.results"), "Return.results.capTable");
        else if (w === 1) this.exception(this.struct(r, 0, "Return.exception"), "Return.exception");
        return;
      }
      case 4: // finish
      case 6: // release
        this.struct(m, 0, "Message body");
        return;
      case 5: {
        const r = this.struct(m, 0, "Message.resolve");
        if (r === NONE) return;
        const w = this.u16(r, 4);
        if (w === 0) this.capDescriptor(this.struct(r, 0, "Resolve.cap"), "Resolve.cap");
        else if (w === 1) this.exception(this.struct(r, 0, "Resolve.exception"), "Resolve.exception");
        return;
      }
      case 8: // bootstrap
        this.struct(m, 0, "Message.bootstrap");
        return;
      case 13: {
        const d = this.struct(m, 0, "Message.disembargo");
        this.checkTarget(this.struct(d, 0, "Disembargo.target"), "Disembargo.target");
        return;
      }
      case 10: // provide
      case 12: // join
        this.checkTarget(this.struct(this.struct(m, 0, "Message body"), 0, "target"), "target");
        return;
      case 11: // accept
        this.struct(m, 0, "Message.accept");
        return;
      default: // obsoleteSave/obsoleteDelete (AnyPointer) or unknown: the engine answers Unimplemented
    }
  }

  private checkTarget(t: number, what: string): void {
    if (t === NONE) return;
    if (this.u16(t, 4) === 1) this.promisedAnswer(this.struct(t, 0, `${what}.promisedAnswer`), `${what}.promisedAnswer`);
  }

  private promisedAnswer(p: number, what: string): void {
    this.structList(p, 0, 1, 0, `${what}.transform`, null);
  }

  /** A Payload's cap table (`what` names it). */
  private payload(p: number, what: string): void {
    this.structList(p, 1, 1, 1, what, this.capDescriptor);
  }

  private capDescriptor(d: number, what: string): void {
    if (d === NONE) return;
    const w = this.u16(d, 0);
    if (w === 4) this.promisedAnswer(this.struct(d, 0, `${what}.receiverAnswer`), `${what}.receiverAnswer`);
    else if (w === 5) this.struct(d, 0, `${what}.thirdPartyHosted`);
  }

  private exception(e: number, what: string): void {
    this.text(e, 0, `${what}.reason`);
    this.text(e, 1, `${what}.trace`);
  }

  /** The root struct: the pointer at word 0 of segment 0. */
  private root(): number {
    if (!this.resolve(0, 0)) return NONE;
    if (this.kind !== 0) throw new ProtocolError("message root is not a struct pointer");
    return this.ref(this.seg, this.target, this.hi & 0xffff, this.hi >>> 16);
  }
}

const checker = new EnvelopeCheck();

/** Check the rpc.capnp envelope of `segs`, a message that passed the walk (walk.ts). */
export function checkRpcEnvelope(segs: readonly Uint8Array[]): void {
  checker.run(segs);
}

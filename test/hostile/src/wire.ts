/**
 * Hand-built Cap'n Proto messages for the hostile-peer suite: a word builder, and rpc.capnp
 * Bootstrap / Call envelopes whose params content an attack writes itself (layouts no honest
 * encoder produces: zero-sized composite elements, pointer DAGs, giant bit lists).
 * Threading: pure functions, any thread.
 */

import { encodeFrameToBytes } from "@multiprocess-ts/capnp";

/** A single-segment message under construction, addressed in words. */
export class Words {
  private buf: Uint8Array;
  private dv: DataView;
  /** Words allocated so far. */
  size = 0;

  constructor(capacityWords = 64) {
    this.buf = new Uint8Array(capacityWords * 8);
    this.dv = new DataView(this.buf.buffer);
  }

  /** Allocate `n` zeroed words; returns the index of the first. */
  alloc(n: number): number {
    const at = this.size;
    const need = (at + n) * 8;
    if (need > this.buf.byteLength) {
      const b = new Uint8Array(Math.max(need, this.buf.byteLength * 2));
      b.set(this.buf.subarray(0, at * 8));
      this.buf = b;
      this.dv = new DataView(b.buffer);
    }
    this.size += n;
    return at;
  }

  u16(word: number, byte: number, v: number): void {
    this.dv.setUint16(word * 8 + byte, v, true);
  }
  u32(word: number, byte: number, v: number): void {
    this.dv.setUint32(word * 8 + byte, v >>> 0, true);
  }
  u64(word: number, v: bigint): void {
    this.dv.setBigUint64(word * 8, v, true);
  }
  byte(word: number, byte: number, v: number): void {
    this.buf[word * 8 + byte] = v;
  }

  /** Struct pointer at word `at` to a struct at word `target`. */
  structPtr(at: number, target: number, dataWords: number, ptrWords: number): void {
    this.u32(at, 0, ((target - at - 1) << 2) >>> 0);
    this.u32(at, 4, (dataWords | (ptrWords << 16)) >>> 0);
  }

  /** List pointer at word `at` to a list at word `target` (`count`: elements, or words for composite). */
  listPtr(at: number, target: number, elementSize: number, count: number): void {
    this.u32(at, 0, (((target - at - 1) << 2) | 1) >>> 0);
    this.u32(at, 4, (elementSize | (count << 3)) >>> 0);
  }

  /** Composite list tag at word `at`: `n` elements of `dataWords` + `ptrWords` each. */
  tag(at: number, n: number, dataWords: number, ptrWords: number): void {
    this.u32(at, 0, (n << 2) >>> 0);
    this.u32(at, 4, (dataWords | (ptrWords << 16)) >>> 0);
  }

  /** The segment (a copy of exactly the used words). */
  segment(): Uint8Array {
    return this.buf.slice(0, this.size * 8);
  }
}

/** rpc.capnp `Message.which` values used here. */
export const MSG = { unimplemented: 0, abort: 1, call: 2, return: 3, finish: 4, bootstrap: 8 } as const;

/**
 * A message whose body is one data word holding question `qid` in its first 32 bits, plus
 * `ptrs` null pointers (Bootstrap: its deprecated objectId; Finish: none).
 */
function questionMessage(which: number, qid: number, ptrs: number): Uint8Array[] {
  const w = new Words();
  w.alloc(1);
  const m = w.alloc(2);
  w.structPtr(0, m, 1, 1);
  w.u16(m, 0, which);
  const body = w.alloc(1 + ptrs);
  w.structPtr(m + 1, body, 1, ptrs);
  w.u32(body, 0, qid);
  return [w.segment()];
}

/** A Bootstrap message with question `qid`. */
export function bootstrapMessage(qid: number): Uint8Array[] {
  return questionMessage(MSG.bootstrap, qid, 1);
}

/** A Finish for question `qid` (releaseResultCaps = false). */
export function finishMessage(qid: number): Uint8Array[] {
  return questionMessage(MSG.finish, qid, 0);
}

/** Where a Call is sent: a method of the bootstrap capability (pipelined on question `bootstrapQid`). */
export interface CallTarget {
  bootstrapQid: number;
  interfaceId: bigint;
  methodId: number;
}

/**
 * A Call with question `qid` to `target`. `content(w, ptrWord)` writes the params: it must
 * set the pointer at word `ptrWord` (the Payload's content) and allocate what it points to.
 * With `capTable` a number, the Payload carries that many `none` CapDescriptors; with a list of
 * export IDs, one `senderHosted` CapDescriptor for each (capabilities the sender exports).
 */
export function callMessage(
  qid: number,
  target: CallTarget,
  content: (w: Words, ptrWord: number) => void,
  caps: number | readonly number[] = 0,
): Uint8Array[] {
  const capTable = typeof caps === "number" ? caps : caps.length;
  const w = new Words(32);
  w.alloc(1);
  const m = w.alloc(2);
  w.structPtr(0, m, 1, 1);
  w.u16(m, 0, MSG.call);
  const c = w.alloc(6); // Call: 3 data words, 3 pointers (target, params, thirdParty)
  w.structPtr(m + 1, c, 3, 3);
  w.u32(c, 0, qid);
  w.u16(c, 4, target.methodId);
  w.u16(c, 6, 0); // sendResultsTo.caller
  w.u64(c + 1, target.interfaceId);
  const t = w.alloc(2); // MessageTarget: 1 data word, 1 pointer
  w.structPtr(c + 3, t, 1, 1);
  w.u16(t, 4, 1); // promisedAnswer
  const p = w.alloc(2); // Payload: content, capTable
  w.structPtr(c + 4, p, 0, 2);
  const pa = w.alloc(2); // PromisedAnswer: questionId, transform (empty)
  w.structPtr(t + 1, pa, 1, 1);
  w.u32(pa, 0, target.bootstrapQid);
  if (capTable > 0) {
    const list = w.alloc(1 + capTable * 2); // CapDescriptor: 1 data word, 1 pointer
    w.listPtr(p + 1, list, 7, capTable * 2);
    w.tag(list, capTable, 1, 1);
    if (typeof caps !== "number") {
      caps.forEach((id, i) => {
        w.u16(list + 1 + 2 * i, 0, 1); // senderHosted
        w.u32(list + 1 + 2 * i, 4, id);
      });
    }
  }
  content(w, p);
  return [w.segment()];
}

/** One message framed for a byte stream. */
export function frame(segments: Uint8Array[]): Uint8Array {
  return encodeFrameToBytes(segments);
}

/** Bytes of a framed message. */
export function frameBytes(segments: Uint8Array[]): number {
  let n = 8 * ((segments.length + 2) >>> 1);
  for (const s of segments) n += s.byteLength;
  return n;
}

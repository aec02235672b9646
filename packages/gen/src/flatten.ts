/**
 * Copies a framed, possibly multi-segment Cap'n Proto message into a single segment without far
 * pointers.
 *
 * Why: `capnp compile -o-` writes CodeGeneratorRequests in many segments, and capnp-ts 0.9.3
 * mis-reads composite lists reached through a double-far pointer (it throws CAPNP-TS024 on
 * `CodeGeneratorRequest.sourceInfo`). A flat copy sidesteps that bug and is cheap for schema-sized
 * messages. The copy is schema-agnostic: it walks struct and list pointers only.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */

const MAX_DEPTH = 256;

interface Loc { seg: number; word: number }

class Reader {
  private readonly segs: DataView[] = [];

  constructor(bytes: Uint8Array) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 8) throw new Error("mpgen: CodeGeneratorRequest is truncated");
    const count = dv.getUint32(0, true) + 1;
    let headerBytes = 4 + count * 4;
    if (headerBytes % 8 !== 0) headerBytes += 4;
    let off = headerBytes;
    for (let i = 0; i < count; i++) {
      const words = dv.getUint32(4 + i * 4, true);
      if (off + words * 8 > bytes.byteLength) throw new Error("mpgen: CodeGeneratorRequest is truncated");
      this.segs.push(new DataView(bytes.buffer, bytes.byteOffset + off, words * 8));
      off += words * 8;
    }
  }

  lo(l: Loc): number { return this.seg(l.seg).getUint32(l.word * 8, true); }
  hi(l: Loc): number { return this.seg(l.seg).getUint32(l.word * 8 + 4, true); }
  seg(i: number): DataView {
    const s = this.segs[i];
    if (s === undefined) throw new Error(`mpgen: bad segment id ${i} in CodeGeneratorRequest`);
    return s;
  }
  copyWords(from: Loc, n: number, out: Writer, to: number): void {
    const s = this.seg(from.seg);
    for (let i = 0; i < n * 8; i++) out.bytes[to * 8 + i] = s.getUint8(from.word * 8 + i);
  }
}

class Writer {
  bytes = new Uint8Array(1024);
  words = 0;
  alloc(n: number): number {
    const at = this.words;
    this.words += n;
    if (this.words * 8 > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.words * 8));
      grown.set(this.bytes);
      this.bytes = grown;
    }
    return at;
  }
  put32(word: number, half: 0 | 1, v: number): void {
    const o = word * 8 + half * 4;
    this.bytes[o] = v & 0xff; this.bytes[o + 1] = (v >>> 8) & 0xff;
    this.bytes[o + 2] = (v >>> 16) & 0xff; this.bytes[o + 3] = (v >>> 24) & 0xff;
  }
}

/** Where a (non-far) pointer's target lives, plus the word holding its type and size bits. */
interface Target { content: Loc; tagLo: number; tagHi: number }

function resolve(r: Reader, at: Loc): Target {
  const lo = r.lo(at);
  if ((lo & 3) !== 2) {
    const offset = lo >> 2; // signed
    return { content: { seg: at.seg, word: at.word + 1 + offset }, tagLo: lo, tagHi: r.hi(at) };
  }
  const pad: Loc = { seg: r.hi(at), word: lo >>> 3 };
  if ((lo & 4) === 0) return resolve(r, pad);
  // Double far: the landing pad is a far pointer to the content, followed by a tag word.
  const far = r.lo(pad);
  const tag: Loc = { seg: pad.seg, word: pad.word + 1 };
  return { content: { seg: r.hi(pad), word: far >>> 3 }, tagLo: r.lo(tag), tagHi: r.hi(tag) };
}

const ELEMENT_BITS = [0, 1, 8, 16, 32, 64];

function copyPointer(r: Reader, w: Writer, from: Loc, to: number, depth: number): void {
  if (depth > MAX_DEPTH) throw new Error("mpgen: CodeGeneratorRequest nests too deeply");
  const lo = r.lo(from), hi = r.hi(from);
  if (lo === 0 && hi === 0) return;
  if ((lo & 3) === 3) { w.put32(to, 0, lo); w.put32(to, 1, hi); return; } // capability
  const t = resolve(r, from);
  const kind = t.tagLo & 3;
  if (kind === 0) {
    const dataWords = t.tagHi & 0xffff, ptrs = t.tagHi >>> 16;
    const at = w.alloc(dataWords + ptrs);
    r.copyWords(t.content, dataWords, w, at);
    for (let i = 0; i < ptrs; i++) {
      copyPointer(r, w, { seg: t.content.seg, word: t.content.word + dataWords + i }, at + dataWords + i, depth + 1);
    }
    w.put32(to, 0, ((at - to - 1) << 2) | 0);
    w.put32(to, 1, t.tagHi);
    return;
  }
  if (kind !== 1) throw new Error("mpgen: unexpected pointer kind in CodeGeneratorRequest");
  const size = t.tagHi & 7, count = t.tagHi >>> 3;
  let at: number;
  if (size <= 5) {
    const words = Math.ceil((count * (ELEMENT_BITS[size] ?? 0)) / 64);
    at = w.alloc(words);
    r.copyWords(t.content, words, w, at);
  } else if (size === 6) {
    at = w.alloc(count);
    for (let i = 0; i < count; i++) {
      copyPointer(r, w, { seg: t.content.seg, word: t.content.word + i }, at + i, depth + 1);
    }
  } else {
    const tag = t.content;
    const elements = r.lo(tag) >>> 2, sizeHi = r.hi(tag);
    const dataWords = sizeHi & 0xffff, ptrs = sizeHi >>> 16, stride = dataWords + ptrs;
    at = w.alloc(1 + count);
    r.copyWords(tag, 1, w, at);
    for (let e = 0; e < elements; e++) {
      const src: Loc = { seg: tag.seg, word: tag.word + 1 + e * stride };
      const dst = at + 1 + e * stride;
      r.copyWords(src, dataWords, w, dst);
      for (let i = 0; i < ptrs; i++) {
        copyPointer(r, w, { seg: src.seg, word: src.word + dataWords + i }, dst + dataWords + i, depth + 1);
      }
    }
  }
  w.put32(to, 0, ((at - to - 1) << 2) | 1);
  w.put32(to, 1, t.tagHi);
}

/**
 * Returns a framed single-segment copy of the framed message `bytes`.
 * The input is not modified; capability pointers are copied as they are.
 */
export function flattenMessage(bytes: Uint8Array): Uint8Array {
  const r = new Reader(bytes);
  const w = new Writer();
  w.alloc(1); // the root pointer
  copyPointer(r, w, { seg: 0, word: 0 }, 0, 0);
  const out = new Uint8Array(8 + w.words * 8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0, true);
  dv.setUint32(4, w.words, true);
  out.set(w.bytes.subarray(0, w.words * 8), 8);
  return out;
}

/**
 * Raw Cap'n Proto messages as trees of pointer values: `writeMessage` lays a tree out in one
 * segment (stream framing included); `readMessage` materialises any framed message (far pointers
 * included) back into a tree. Everything schema-aware lives in dynamic.ts. Runs at build time.
 *
 * Encoding reference: capnproto's doc/encoding.md (pointers, lists, composite tags, far pointers).
 *
 * @module
 */

/** A struct: its data section (a multiple of 8 bytes) and its pointer section. */
export interface StructVal { k: "s"; data: Uint8Array; ptrs: Ptr[] }
/**
 * A list. `size` is the element size code (0 void, 1 bit, 2 byte, 3 two bytes, 4 four bytes,
 * 5 eight bytes, 6 pointer, 7 composite). Data lists keep their bytes in `data`; pointer lists
 * their elements in `ptrs`; composite lists their structs in `elems` (all `dataWords`/`ptrCount`).
 */
export interface ListVal {
  k: "l"; size: number; count: number;
  data?: Uint8Array; ptrs?: Ptr[]; elems?: StructVal[]; dataWords?: number; ptrCount?: number;
}
/** A capability pointer (an index into the message's capability table). */
export interface CapVal { k: "c"; index: number }
export type Ptr = null | StructVal | ListVal | CapVal;

export class MessageError extends Error {
  override name = "MessageError";
}

const BITS = [0, 1, 8, 16, 32, 64, 0, 0];

class Writer {
  buf = new Uint8Array(1024);
  view = new DataView(this.buf.buffer);
  words = 0;

  alloc(n: number): number {
    const at = this.words;
    this.words += n;
    if (this.words * 8 > this.buf.length) {
      let len = this.buf.length;
      while (len < this.words * 8) len *= 2;
      const nb = new Uint8Array(len);
      nb.set(this.buf);
      this.buf = nb;
      this.view = new DataView(nb.buffer);
    }
    return at;
  }

  setPtr(at: number, offset: number, kind: number, hi: number): void {
    this.view.setUint32(at * 8, ((offset << 2) | kind) >>> 0, true);
    this.view.setUint32(at * 8 + 4, hi >>> 0, true);
  }

  writeStructBody(at: number, s: StructVal): void {
    this.buf.set(s.data, at * 8);
    const pbase = at + s.data.length / 8;
    s.ptrs.forEach((p, i) => this.writePtr(pbase + i, p));
  }

  writePtr(at: number, p: Ptr): void {
    if (p === null) return;
    if (p.k === "c") {
      this.view.setUint32(at * 8, 3, true);
      this.view.setUint32(at * 8 + 4, p.index, true);
      return;
    }
    if (p.k === "s") {
      const dw = p.data.length / 8;
      const target = this.alloc(dw + p.ptrs.length);
      this.setPtr(at, target - at - 1, 0, dw | (p.ptrs.length << 16));
      this.writeStructBody(target, p);
      return;
    }
    this.writeList(at, p);
  }

  writeList(at: number, l: ListVal): void {
    if (l.size === 7) {
      const dw = l.dataWords ?? 0;
      const pc = l.ptrCount ?? 0;
      const per = dw + pc;
      const tag = this.alloc(1 + per * l.count);
      this.setPtr(at, tag - at - 1, 1, 7 | ((per * l.count) << 3));
      this.setPtr(tag, l.count, 0, dw | (pc << 16));
      (l.elems ?? []).forEach((e, i) => this.writeStructBody(tag + 1 + i * per, e));
      return;
    }
    if (l.size === 6) {
      const target = this.alloc(l.count);
      this.setPtr(at, target - at - 1, 1, 6 | (l.count << 3));
      (l.ptrs ?? []).forEach((p, i) => this.writePtr(target + i, p));
      return;
    }
    const nwords = Math.ceil((BITS[l.size]! * l.count) / 64);
    const target = this.alloc(nwords);
    this.setPtr(at, target - at - 1, 1, l.size | (l.count << 3));
    if (l.data !== undefined) this.buf.set(l.data.subarray(0, nwords * 8), target * 8);
  }
}

/** One framed, single-segment message whose root pointer points at `root`. */
export function writeMessage(root: Ptr): Uint8Array {
  const w = new Writer();
  w.alloc(1);
  w.writePtr(0, root);
  const out = new Uint8Array(8 + w.words * 8);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0, true);
  dv.setUint32(4, w.words, true);
  out.set(w.buf.subarray(0, w.words * 8), 8);
  return out;
}

class Reader {
  segs: DataView[] = [];
  bytes: Uint8Array[] = [];
  budget: number;

  constructor(msg: Uint8Array) {
    const dv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    if (msg.length < 8) throw new MessageError("message too short");
    const n = dv.getUint32(0, true) + 1;
    let pos = 4 + n * 4;
    if (pos % 8 !== 0) pos += 4;
    for (let i = 0; i < n; i++) {
      const len = dv.getUint32(4 + i * 4, true) * 8;
      if (pos + len > msg.length) throw new MessageError("truncated message");
      this.bytes.push(msg.subarray(pos, pos + len));
      this.segs.push(new DataView(msg.buffer, msg.byteOffset + pos, len));
      pos += len;
    }
    // Like capnp's traversal limit: bounds the work a malicious message with shared or cyclic
    // pointers can cause.
    this.budget = Math.max(msg.length * 8, 1 << 20);
  }

  word(seg: number, at: number): [number, number] {
    const s = this.segs[seg];
    if (s === undefined || at < 0 || at * 8 + 8 > s.byteLength) throw new MessageError("pointer out of bounds");
    return [s.getUint32(at * 8, true), s.getUint32(at * 8 + 4, true)];
  }

  /** Resolves far pointers: the segment and position of the content, and the pointer words. */
  follow(seg: number, at: number): { seg: number; target: number; lo: number; hi: number } | null {
    const [lo, hi] = this.word(seg, at);
    if (lo === 0 && hi === 0) return null;
    if ((lo & 3) !== 2) return { seg, target: at + 1 + (lo >> 2), lo, hi };
    const pad = lo >>> 3;
    if ((lo & 4) === 0) {
      const [plo, phi] = this.word(hi, pad);
      return { seg: hi, target: pad + 1 + (plo >> 2), lo: plo, hi: phi };
    }
    const [flo, fhi] = this.word(hi, pad);
    const [, thi] = this.word(hi, pad + 1);
    const [tlo] = this.word(hi, pad + 1);
    return { seg: fhi, target: flo >>> 3, lo: tlo, hi: thi };
  }

  readStruct(seg: number, at: number, dw: number, pc: number): StructVal {
    if ((this.budget -= (dw + pc) * 8 + 8) < 0) throw new MessageError("traversal limit exceeded");
    const b = this.bytes[seg]!;
    if ((at + dw + pc) * 8 > b.length) throw new MessageError("struct out of bounds");
    const data = b.slice(at * 8, (at + dw) * 8);
    const ptrs: Ptr[] = [];
    for (let i = 0; i < pc; i++) ptrs.push(this.readPtr(seg, at + dw + i));
    return { k: "s", data, ptrs };
  }

  readPtr(seg: number, at: number): Ptr {
    const f = this.follow(seg, at);
    if (f === null) return null;
    const kind = f.lo & 3;
    if (kind === 3) return { k: "c", index: f.hi };
    if (kind === 0) return this.readStruct(f.seg, f.target, f.hi & 0xffff, f.hi >>> 16);
    const size = f.hi & 7;
    const count = f.hi >>> 3;
    if (size === 7) {
      const [tlo, thi] = this.word(f.seg, f.target);
      const n = tlo >>> 2;
      const dw = thi & 0xffff;
      const pc = thi >>> 16;
      const elems: StructVal[] = [];
      for (let i = 0; i < n; i++) elems.push(this.readStruct(f.seg, f.target + 1 + i * (dw + pc), dw, pc));
      return { k: "l", size, count: n, elems, dataWords: dw, ptrCount: pc };
    }
    if (size === 6) {
      const ptrs: Ptr[] = [];
      if ((this.budget -= count * 8) < 0) throw new MessageError("traversal limit exceeded");
      for (let i = 0; i < count; i++) ptrs.push(this.readPtr(f.seg, f.target + i));
      return { k: "l", size, count, ptrs };
    }
    const nbytes = Math.ceil((BITS[size]! * count) / 8);
    const b = this.bytes[f.seg]!;
    if (f.target * 8 + nbytes > b.length) throw new MessageError("list out of bounds");
    return { k: "l", size, count, data: b.slice(f.target * 8, f.target * 8 + nbytes) };
  }
}

/** Materialises a framed message (as written by `capnp` or `writeMessage`) into its root tree. */
export function readMessage(msg: Uint8Array): Ptr {
  const r = new Reader(msg);
  return r.readPtr(0, 0);
}

/** A stable text form of a pointer tree, with trailing zero bytes and null pointers trimmed. */
export function canonicalPtr(p: Ptr): string {
  if (p === null) return "null";
  if (p.k === "c") return `cap(${p.index})`;
  if (p.k === "s") return canonicalStruct(p);
  if (p.elems !== undefined) return `[${p.elems.map(canonicalStruct).join(",")}]`;
  if (p.ptrs !== undefined) return `[${p.ptrs.map(canonicalPtr).join(",")}]`;
  return `list${p.size}x${p.count}:${hex(p.data ?? new Uint8Array(0))}`;
}

function canonicalStruct(s: StructVal): string {
  let end = s.data.length;
  while (end > 0 && s.data[end - 1] === 0) end--;
  let pend = s.ptrs.length;
  while (pend > 0 && s.ptrs[pend - 1] === null) pend--;
  return `(${hex(s.data.subarray(0, end))}|${s.ptrs.slice(0, pend).map(canonicalPtr).join(",")})`;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

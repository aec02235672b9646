/**
 * Seeded generators of peer bytes for fuzzing (moved here from packages/capnp/test/fuzz.test.ts
 * so that the test and `pnpm bench --hostile --fuzz-frames N` share them): a PRNG, valid
 * rpc.capnp messages built with capnp-ts, and segment-level / byte-level mutations of them.
 * Threading: pure functions, any thread.
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { FrameDecoder, encodeFrameToBytes } from "@multiprocess-ts/capnp";

// ---------------------------------------------------------------------------------------------
// PRNG: mulberry32, seeded and reproducible.

export class Rng {
  constructor(private s: number) {}
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  int(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() < p * 4294967296;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** Mostly small numbers, sometimes anything. */
  id(): number {
    return this.chance(0.9) ? this.int(4) : this.u32();
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}


// ---------------------------------------------------------------------------------------------
// Valid rpc.capnp messages (built with capnp-ts), for mutation.

export class FuzzBox extends capnp.Struct {
  static readonly _capnp = { displayName: "FuzzBox", id: "f00000000000f0f0", size: new capnp.ObjectSize(16, 2) };
  get a(): number {
    return capnp.Struct.getInt32(0, this);
  }
  set a(v: number) {
    capnp.Struct.setInt32(0, v, this);
  }
  text(): string {
    return capnp.Struct.getText(0, this);
  }
  setText(v: string): void {
    capnp.Struct.setText(0, v, this);
  }
}

function segmentsOf(m: capnp.Message): Uint8Array[] {
  return m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength).slice());
}

function fillPayload(r: Rng, p: rpc.Payload): void {
  if (r.chance(0.8)) {
    const box = capnp.Struct.initStructAt(0, FuzzBox, p);
    box.a = r.u32() | 0;
    if (r.chance(0.5)) box.setText("x".repeat(r.int(40)));
  }
  if (r.chance(0.4)) {
    const n = 1 + r.int(3);
    const t = p.initCapTable(n);
    for (let i = 0; i < n; i++) {
      const d = t.get(i);
      switch (r.int(5)) {
        case 0: d.setNone(); break;
        case 1: d.senderHosted = r.id(); break;
        case 2: d.senderPromise = r.id(); break;
        case 3: d.receiverHosted = r.id(); break;
        default: {
          const pa = d.initReceiverAnswer();
          pa.questionId = r.id();
          if (r.chance(0.5)) pa.initTransform(1).get(0).getPointerField = r.int(3);
        }
      }
    }
  }
}

function fillTarget(r: Rng, t: rpc.MessageTarget): void {
  if (r.chance(0.5)) t.importedCap = r.id();
  else {
    const pa = t.initPromisedAnswer();
    pa.questionId = r.id();
    const n = r.int(3);
    if (n > 0) {
      const ops = pa.initTransform(n);
      for (let i = 0; i < n; i++) {
        if (r.chance(0.8)) ops.get(i).getPointerField = r.int(3);
        else ops.get(i).setNoop();
      }
    }
  }
}

function fillException(r: Rng, e: rpc.Exception): void {
  e.reason = r.pick(["boom", "", "a longer reason text for the exception"]);
  e.type = r.int(5) as rpc.Exception_Type;
}

export const KINDS = ["bootstrap", "call", "return", "finish", "resolve", "release", "disembargo", "abort", "unimplemented", "other"] as const;

export function buildValid(r: Rng, kind = r.pick(KINDS)): Uint8Array[] {
  const m = r.chance(0.15) ? new capnp.Message(new MultiSegmentArena()) : new capnp.Message();
  const root = m.initRoot(rpc.Message);
  switch (kind) {
    case "bootstrap":
      root.initBootstrap().questionId = r.id();
      break;
    case "call": {
      const c = root.initCall();
      c.questionId = r.id();
      c.interfaceId = r.chance(0.5) ? 0xa1a1n : BigInt(r.u32());
      c.methodId = r.int(4);
      fillTarget(r, c.initTarget());
      fillPayload(r, c.initParams());
      if (r.chance(0.2)) c.initSendResultsTo().setYourself();
      break;
    }
    case "return": {
      const ret = root.initReturn();
      ret.answerId = r.id();
      ret.releaseParamCaps = r.chance(0.5);
      switch (r.int(5)) {
        case 0: fillPayload(r, ret.initResults()); break;
        case 1: fillException(r, ret.initException()); break;
        case 2: ret.setCanceled(); break;
        case 3: ret.setResultsSentElsewhere(); break;
        default: ret.takeFromOtherQuestion = r.id();
      }
      break;
    }
    case "finish": {
      const f = root.initFinish();
      f.questionId = r.id();
      f.releaseResultCaps = r.chance(0.5);
      break;
    }
    case "resolve": {
      const res = root.initResolve();
      res.promiseId = r.id();
      if (r.chance(0.5)) res.initCap().senderHosted = r.id();
      else fillException(r, res.initException());
      break;
    }
    case "release": {
      const rel = root.initRelease();
      rel.id = r.id();
      rel.referenceCount = r.chance(0.8) ? 1 : r.id();
      break;
    }
    case "disembargo": {
      const d = root.initDisembargo();
      fillTarget(r, d.initTarget());
      const ctx = d.initContext();
      switch (r.int(3)) {
        case 0: ctx.senderLoopback = r.id(); break;
        case 1: ctx.receiverLoopback = r.id(); break;
        default: ctx.setAccept();
      }
      break;
    }
    case "abort":
      fillException(r, root.initAbort());
      break;
    case "unimplemented":
      root.initUnimplemented().initFinish().questionId = r.id();
      break;
    default:
      // A union member we never handle (provide/accept/join), or an out-of-range discriminant.
      if (r.chance(0.5)) root.initProvide().questionId = r.id();
      else capnp.Struct.setUint16(0, 14 + r.int(100), root);
  }
  return segmentsOf(m);
}

// ---------------------------------------------------------------------------------------------
// Mutations

function randomPointer(r: Rng): [number, number] {
  const small = () => (r.chance(0.7) ? r.int(16) - 4 : (r.u32() | 0) >> 2);
  switch (r.int(6)) {
    case 0: return [((small() << 2) >>> 0), (r.int(4) | (r.int(4) << 16)) >>> 0]; // struct
    case 1: return [(((small() << 2) | 1) >>> 0), ((r.int(8)) | ((r.chance(0.8) ? r.int(64) : r.u32()) << 3)) >>> 0]; // list
    case 2: return [(((r.int(16) << 3) | (r.chance(0.3) ? 4 : 0) | 2) >>> 0), r.chance(0.8) ? r.int(3) : r.u32()]; // far
    case 3: return [3, r.id()]; // capability
    case 4: return [r.u32(), r.u32()];
    default: return [0, 0];
  }
}

/** Mutate a copy of `segs` (segment level: what a memory transport can carry). */
export function mutateSegments(r: Rng, segs: Uint8Array[]): Uint8Array[] {
  let out: Uint8Array[] = segs.map((s) => s.slice());
  const rounds = 1 + r.int(3);
  for (let k = 0; k < rounds; k++) {
    const si = r.int(out.length);
    const s = out[si]!;
    const words = s.byteLength >>> 3;
    switch (r.int(7)) {
      case 0: { // bit flips
        const n = 1 + r.int(4);
        for (let i = 0; i < n && s.byteLength > 0; i++) s[r.int(s.byteLength)]! ^= 1 << r.int(8);
        break;
      }
      case 1: // truncation (whole words)
        out[si] = s.subarray(0, r.int(words + 1) * 8);
        break;
      case 2: { // pointer corruption
        if (words === 0) break;
        const w = r.int(words);
        const [lo, hi] = randomPointer(r);
        const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
        dv.setUint32(w * 8, lo, true);
        dv.setUint32(w * 8 + 4, hi, true);
        break;
      }
      case 3: { // random word
        if (words === 0) break;
        const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
        dv.setUint32(r.int(words) * 8 + (r.chance(0.5) ? 4 : 0), r.u32(), true);
        break;
      }
      case 4: { // extend with random words
        const ext = new Uint8Array(s.byteLength + 8 * (1 + r.int(4)));
        ext.set(s);
        ext.set(r.bytes(ext.byteLength - s.byteLength), s.byteLength);
        out[si] = ext;
        break;
      }
      case 5: // extra / missing segments
        if (r.chance(0.5)) out.push(r.bytes(8 * r.int(4)));
        else if (out.length > 1) out = out.slice(0, out.length - 1);
        break;
      default: // rare: a segment that is not whole words
        if (r.chance(0.1)) out[si] = s.subarray(0, Math.max(0, s.byteLength - 1 - r.int(7)));
    }
  }
  return out;
}

/** Mutate framed bytes (byte level: what a stream can carry), including the segment table. */
export function mutateFrame(r: Rng, frame: Uint8Array): Uint8Array {
  const f = frame.slice();
  const dv = new DataView(f.buffer);
  switch (r.int(8)) {
    case 0: { // segment count
      const v = r.chance(0.5) ? r.int(6) : r.u32();
      dv.setUint32(0, v, true);
      return f;
    }
    case 1: { // a segment size
      const n = dv.getUint32(0, true) + 1;
      const i = r.int(Math.min(n, 8));
      if (4 + 4 * i + 4 <= f.byteLength) dv.setUint32(4 + 4 * i, r.chance(0.6) ? r.int(64) : r.u32(), true);
      return f;
    }
    case 2: // truncation
      return f.subarray(0, r.int(f.byteLength));
    case 3: { // bit flips anywhere
      const n = 1 + r.int(4);
      for (let i = 0; i < n && f.byteLength > 0; i++) f[r.int(f.byteLength)]! ^= 1 << r.int(8);
      return f;
    }
    default: { // segment-level mutation, re-framed consistently
      const segs = new FrameDecoder({ maxSegments: 1 << 20, maxMessageBytes: Infinity }).push(f)[0];
      return segs === undefined ? f : encodeFrameToBytes(mutateSegments(r, segs));
    }
  }
}

export function randomBytesFrame(r: Rng): Uint8Array {
  const b = r.bytes(r.int(r.chance(0.9) ? 64 : 600));
  if (b.byteLength >= 8 && r.chance(0.5)) {
    // a plausible segment table: 1 segment of the right size
    const dv = new DataView(b.buffer);
    dv.setUint32(0, 0, true);
    dv.setUint32(4, (b.byteLength - 8) >>> 3, true);
    return b.subarray(0, 8 + (((b.byteLength - 8) >>> 3) << 3));
  }
  return b;
}


/**
 * `n` fuzz frames from `seed`, as the first part of the fuzz test draws them: 20% random bytes,
 * 10% valid messages, 70% mutated valid messages (from a pool of 300).
 */
export function* fuzzFrames(seed: number, n: number): Generator<Uint8Array> {
  const r = new Rng(seed);
  const pool = Array.from({ length: 300 }, () => encodeFrameToBytes(buildValid(r)));
  for (let i = 0; i < n; i++) {
    const roll = r.u32() / 4294967296;
    yield roll < 0.2 ? randomBytesFrame(r) : roll < 0.3 ? r.pick(pool) : mutateFrame(r, r.pick(pool));
  }
}

// Generators, mutators and the engine harness of fuzz.test.ts (seeded; see its header for how
// to reproduce a failure): valid rpc.capnp messages, byte/segment/frame mutations, a decoder
// that touches every field, and fuzzEngine, which feeds frames to an RpcConnection over a memory
// or stream transport and checks it never crashes, hangs or leaks.
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import {
  FrameDecoder,
  encodeFrameToBytes,
  RpcConnection,
  RpcError,
  localCapability,
  writeCap,
  deferred,
} from "@multiprocess-ts/capnp";
import type { Capability, IncomingCall, ReaderLimits, Server, Transport, TransportSink } from "@multiprocess-ts/capnp";
import { expect } from "vitest";

export const SEED = (Number(process.env.FUZZ_SEED ?? 0x5eed2026) >>> 0) || 1;
export const FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000);
export const STREAM_FRAMES = Math.max(1000, Math.floor(FRAMES / 20));

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

export const hex = (b: Uint8Array): string => Buffer.from(b.subarray(0, 256)).toString("hex") + (b.byteLength > 256 ? "…" : "");
export const where = (part: string, i: number): string => `[${part}] FUZZ_SEED=${SEED} case ${i}`;

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

export function segmentsOf(m: capnp.Message): Uint8Array[] {
  return m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength).slice());
}

export function fillPayload(r: Rng, p: rpc.Payload): void {
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

export function fillTarget(r: Rng, t: rpc.MessageTarget): void {
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

export function fillException(r: Rng, e: rpc.Exception): void {
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

export function randomPointer(r: Rng): [number, number] {
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

// ---------------------------------------------------------------------------------------------
// Checks shared by the parts

export const FUZZ_LIMITS: Partial<ReaderLimits> = { maxSegments: 64, maxMessageBytes: 1 << 20, traversalLimitWords: 1 << 16, nestingLimit: 16 };

/**
 * capnp-ts's own reports of bad content are fine: schema mismatches (a list where a struct is
 * expected, a union member not set) and invalid UTF-8 name themselves "CAPNP-TS…". Two capnp-ts
 * bugs remain possible for the application part of a message (`Payload.content`, which
 * validateRpcMessage cannot type-check): formatting the message of such an error can read past a
 * segment and throw a bare DataView RangeError from `Pointer.toString`/`dump`; and Text.get throws
 * a bare RangeError for a zero-length byte list. Anything else (a TypeError, a RangeError from an
 * actual field read) means a read went where validation should have stopped. (The envelope
 * check of validateRpcMessage exists because such reads happened in the rpc.capnp fields.)
 */
export function isCapnpTsError(e: unknown): boolean {
  if (!(e instanceof Error) || e instanceof TypeError) return false;
  if (/^CAPNP-TS/.test(e.message)) return true;
  return e instanceof RangeError && /at (Pointer\.toString|dump|format|Text\.get) /.test(e.stack ?? "");
}

// capnp-ts getters of a null struct or list field do not return a default: they allocate one in
// the message (writing into it). Readers must ask hasX() first, as the engine does.
export function touchPayload(p: rpc.Payload): void {
  if (p.hasContent()) {
    // Typed read (checks the pointer kind), as generated code does for a struct field.
    const box = capnp.Struct.getStruct(0, FuzzBox, p);
    void box.a;
    if (!capnp.Pointer.isNull(capnp.Struct.getPointer(0, box))) void box.text();
  }
  if (!p.hasCapTable()) return;
  const t = p.capTable;
  for (let i = 0; i < t.getLength(); i++) {
    const d = t.get(i);
    if (d.which() === rpc.CapDescriptor.RECEIVER_ANSWER) {
      if (d.hasReceiverAnswer()) touchPromisedAnswer(d.receiverAnswer);
    } else void d.senderHosted;
  }
}
export function touchPromisedAnswer(pa: rpc.PromisedAnswer): void {
  void pa.questionId;
  if (!pa.hasTransform()) return;
  const ops = pa.transform;
  for (let i = 0; i < ops.getLength(); i++) void ops.get(i).getPointerField;
}
export function touchTarget(t: rpc.MessageTarget): void {
  if (t.which() === rpc.MessageTarget.PROMISED_ANSWER) {
    if (t.hasPromisedAnswer()) touchPromisedAnswer(t.promisedAnswer);
  } else void t.importedCap;
}
export function touchException(e: rpc.Exception): void {
  void e.type;
  void e.reason; // (Text: a null pointer reads as "")
}

/** Read every field an engine would read. */
export function touchRpc(m: rpc.Message): void {
  switch (m.which()) {
    case rpc.Message.CALL: {
      if (!m.hasCall()) return;
      const c = m.call;
      void c.questionId, c.interfaceId, c.methodId;
      if (c.hasTarget()) touchTarget(c.target);
      if (c.hasParams()) touchPayload(c.params);
      void c.sendResultsTo.which();
      break;
    }
    case rpc.Message.RETURN: {
      if (!m.hasReturn()) return;
      const r = m.return;
      void r.answerId;
      if (r.which() === rpc.Return.RESULTS && r.hasResults()) touchPayload(r.results);
      else if (r.which() === rpc.Return.EXCEPTION && r.hasException()) touchException(r.exception);
      break;
    }
    case rpc.Message.RESOLVE: {
      if (!m.hasResolve()) return;
      const r = m.resolve;
      if (r.which() === rpc.Resolve.CAP && r.hasCap()) void r.cap.which();
      else if (r.which() === rpc.Resolve.EXCEPTION && r.hasException()) touchException(r.exception);
      break;
    }
    case rpc.Message.DISEMBARGO:
      if (!m.hasDisembargo()) return;
      if (m.disembargo.hasTarget()) touchTarget(m.disembargo.target);
      void m.disembargo.context.which();
      break;
    case rpc.Message.ABORT:
      if (m.hasAbort()) touchException(m.abort);
      break;
    case rpc.Message.UNIMPLEMENTED:
      if (m.hasUnimplemented()) void m.unimplemented.which();
      break;
    default:
      void m.which();
  }
}

export const unhandled: unknown[] = [];
/** Non-"CAPNP-TS" errors capnp-ts threw inside the engine (reported, not failures). */
export const capnpTsFailures = new Map<string, number>();
export const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};

export interface Link {
  /** Inject one message (memory) or raw frame bytes (stream) as the peer. */
  peer(segs: Uint8Array[]): void;
  peerEnd(): Promise<void>;
  /** The transport the RpcConnection under test uses. */
  mine: Transport;
  /** Observe what the engine sends (the peer's receiving side). */
  start(sink: TransportSink): void;
  /** Message kinds the engine sent (memory transports). */
  sentKinds?: () => string[];
}

/** Counts messages the engine actually received. */
export class CountingTransport implements Transport {
  count = 0;
  constructor(private readonly inner: Transport) {}
  start(sink: TransportSink): void {
    this.inner.start({
      message: (segs) => {
        this.count++;
        sink.message(segs);
      },
      closed: (err) => sink.closed(err),
    });
  }
  send(segs: Uint8Array[]): void {
    this.inner.send(segs);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  destroy(err?: Error): void {
    this.inner.destroy(err);
  }
}

export class FuzzServer implements Server {
  static created = 0;
  static released = 0;
  constructor() {
    FuzzServer.created++;
  }
  async dispatch(call: IncomingCall): Promise<void> {
    const p = call.params(FuzzBox);
    const res = call.results(FuzzBox);
    res.a = p.a + 1;
    switch (call.methodId) {
      case 1: {
        const cap = localCapability(new FuzzServer());
        writeCap(res, 1, cap);
        cap.close();
        return;
      }
      case 2:
        await Promise.resolve();
        throw new RpcError("failed", "server says no");
      case 3:
        res.setText(p.text());
        return;
      default:
    }
  }
  onRelease(): void {
    FuzzServer.released++;
  }
}

export async function turn(): Promise<void> {
  await new Promise<void>((res) => setImmediate(res));
}

export async function fuzzEngine(
  r: Rng,
  frames: number,
  part: string,
  makeLink: (batch: number) => Link,
  makeBatch: () => Uint8Array[][],
): Promise<{ frames: number; errorEnds: number; cleanEnds: number; sent: Map<string, number> }> {
  const sent = new Map<string, number>();
  FuzzServer.created = 0;
  FuzzServer.released = 0;
  let fed = 0;
  let errorEnds = 0;
  let cleanEnds = 0;
  let batchNo = 0;
  const prof = { settle: 0, end: 0 };
  while (fed < frames) {
    const batchIndex = batchNo++;
    const batch = makeBatch();
    const link = makeLink(batchIndex);
    const counting = new CountingTransport(link.mine);
    const boot = localCapability(new FuzzServer());
    const conn = new RpcConnection(counting, { bootstrap: boot, limits: FUZZ_LIMITS, name: `fuzz-${batchIndex}` });
    boot.close();
    link.start({ message: () => {}, closed: () => {} });
    // Sometimes the engine under test also makes calls of its own, so Returns can match questions.
    let mineCap: Capability | undefined;
    if (r.chance(0.3)) {
      mineCap = conn.bootstrap();
      const req = mineCap.newCall(0xa1a1n, 0, FuzzBox);
      req.params.a = 1;
      req.send().then((resp) => resp.close(), () => {});
    }
    const tA = performance.now();
    for (const m of batch) link.peer(m);
    // Let the engine chew through the batch: each turn lets transports deliver and servers run.
    let settled = false;
    void conn.closed.then(() => (settled = true));
    let lastCount = -1;
    for (let t = 0; t < 50 && !settled; t++) {
      await turn();
      if (counting.count === lastCount && t > 3) break;
      lastCount = counting.count;
    }
    mineCap?.close();
    const tB = performance.now();
    prof.settle += tB - tA;
    let err: Error | undefined;
    if (!conn.isClosed) {
      // Still going: the batch was acceptable to it. End it ourselves; it must end, and cleanly.
      const guard = deferred<"timeout">();
      const timer = setTimeout(() => guard.resolve("timeout"), 10_000);
      const ending = (async () => {
        await link.peerEnd();
        await conn.close();
        return conn.closed;
      })();
      const closedOrTimeout = await Promise.race([ending, guard.promise]);
      clearTimeout(timer);
      if (closedOrTimeout === "timeout") expect.fail(`${where(part, batchIndex)}: connection did not end (hang)`);
      cleanEnds++;
    } else {
      err = await conn.closed;
      errorEnds++;
      if (err !== undefined && !(err instanceof RpcError)) {
        expect.fail(`${where(part, batchIndex)}: connection ended with a non-RpcError ${String(err)}`);
      }
      const cause = (err as { cause?: unknown } | undefined)?.cause;
      // The engine wraps whatever its decoding threw into a ProtocolError. capnp-ts's own
      // bad-content errors may hide there (see isCapnpTsError), and so may capnp-ts's failures
      // on content it cannot handle (e.g. a RangeError from its copy-on-read list upgrade); a
      // TypeError means a bug (a property of undefined, ...).
      if (cause instanceof Error && !(cause instanceof RpcError) && !isCapnpTsError(cause)) {
        capnpTsFailures.set(String(cause), (capnpTsFailures.get(String(cause)) ?? 0) + 1);
      }
      if (cause instanceof TypeError) {
        expect.fail(
          `${where(part, batchIndex)}: engine bug surfaced as ${err!.message}\n${(cause as Error).stack}\n` +
            batch.map((m) => m.map(hex).join("|")).join("\n"),
        );
      }
    }
    prof.end += performance.now() - tB;
    const s = conn.stats();
    if (s.questions + s.answers + s.imports + s.exports + s.embargoes !== 0) {
      expect.fail(`${where(part, batchIndex)}: tables not empty after the end: ${JSON.stringify(s)}`);
    }
    fed += counting.count;
    for (const k of link.sentKinds?.() ?? []) sent.set(k, (sent.get(k) ?? 0) + 1);
    if (batchIndex % 500 === 0) await turn();
  }
  if (process.env.FUZZ_VERBOSE) console.log(part, prof, { errorEnds, cleanEnds });
  // Leak check: every server object made (bootstrap and returned caps) was released.
  for (let t = 0; t < 20 && FuzzServer.released !== FuzzServer.created; t++) await turn();
  expect(FuzzServer.released, `[${part}] FUZZ_SEED=${SEED}: servers released`).toBe(FuzzServer.created);
  if (process.env.FUZZ_VERBOSE) console.log(part, "engine sent", Object.fromEntries(sent));
  return { frames: fed, errorEnds, cleanEnds, sent };
}

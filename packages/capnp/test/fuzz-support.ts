// Generators, mutators and the engine harness of fuzz.test.ts (seeded; see its header for how
// to reproduce a failure): valid rpc.capnp messages, byte/segment/frame mutations, a decoder
// that touches every field, and fuzzEngine, which feeds frames to an RpcConnection over a memory
// or stream transport and checks it never crashes, hangs or leaks.
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
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

// Generators (PRNG, valid rpc.capnp messages, mutations): test/hostile/src/fuzz.ts, shared with
// `pnpm bench --fuzz-frames N`.
export { Rng, FuzzBox, KINDS, buildValid, mutateSegments, mutateFrame, randomBytesFrame } from "../../../test/hostile/dist/fuzz.js";
import { FuzzBox, Rng } from "../../../test/hostile/dist/fuzz.js";

/** A seeded xorshift32 stream of draws: `rand(n)` is an integer in [0, n). */
export function xorshift(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

export const hex = (b: Uint8Array): string => Buffer.from(b.subarray(0, 256)).toString("hex") + (b.byteLength > 256 ? "…" : "");
export const where = (part: string, i: number): string => `[${part}] FUZZ_SEED=${SEED} case ${i}`;

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

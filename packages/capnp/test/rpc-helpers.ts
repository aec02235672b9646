// Shared fixtures for the rpc*.test.ts files (engine level, no runtime): a hand-written test
// schema (capnp-ts Struct subclasses, the engine does not check struct ids), test servers, and
// `makePair`, @multiprocess-ts/testing's createRpcPair serving them.
// Threading: loop thread (the test's thread).
import * as capnp from "capnp-ts";
import { createRpcPair, type RpcPair, type RpcPairOptions } from "@multiprocess-ts/testing";
import * as rpcSchema from "capnp-ts/src/std/rpc.capnp.js";
import { MultiSegmentArena } from "capnp-ts/src/serialization/arena/multi-segment-arena.js";
import { preallocateSegments } from "capnp-ts/src/serialization/message.js";
import {
  RpcError,
  deferred,
  RpcConnection,
  localCapability,
  memoryTransportPair,
  promiseCapability,
  readCap,
  writeCap,
} from "@multiprocess-ts/capnp";
import type { Capability, IncomingCall, MemoryTransport, PendingCall, Server, Deferred } from "@multiprocess-ts/capnp";
export { drain, wireKinds as wire } from "@multiprocess-ts/testing";

/** A generic struct: 16 data bytes (i32 at 0 and 4), 4 pointers (text/data/caps). */
export class Box extends capnp.Struct {
  static readonly _capnp = { displayName: "Box", id: "f0000000000000b1", size: new capnp.ObjectSize(16, 4) };
  get a(): number {
    return capnp.Struct.getInt32(0, this);
  }
  set a(v: number) {
    capnp.Struct.setInt32(0, v, this);
  }
  get b(): number {
    return capnp.Struct.getInt32(4, this);
  }
  set b(v: number) {
    capnp.Struct.setInt32(4, v, this);
  }
  get big(): bigint {
    return capnp.Struct.getInt64(8, this);
  }
  set big(v: bigint) {
    capnp.Struct.setInt64(8, v, this);
  }
  text(i = 0): string {
    return capnp.Struct.getText(i, this);
  }
  setText(i: number, v: string): void {
    capnp.Struct.setText(i, v, this);
  }
  data(i = 1): Uint8Array {
    return capnp.Struct.getData(i, this).toUint8Array();
  }
  setData(i: number, v: Uint8Array): void {
    capnp.Struct.initData(i, v.byteLength, this).copyBuffer(v);
  }
  inner(i = 2): Box {
    return capnp.Struct.getStruct(i, Box, this);
  }
  initInner(i = 2): Box {
    return capnp.Struct.initStructAt(i, Box, this);
  }
}

export const CALC = 0xa1a1a1a1a1a1a1a1n;
export const CB = 0xb2b2b2b2b2b2b2b2n;
export const COUNTER = 0xc3c3c3c3c3c3c3c3n;

export const M = {
  add: 0,
  echo: 1,
  callback: 2,
  register: 3,
  fire: 4,
  makeCounter: 5,
  fail: 6,
  sleep: 7,
  identity: 8,
  makeLater: 9,
  tail: 10,
  nested: 11,
  callKept: 12,
} as const;

/** Counter: inc() -> ++n (a); logs each call's tag (b) for ordering checks. */
export class CounterServer implements Server {
  n: number;
  released = 0;
  readonly seen: number[] = [];
  constructor(start = 0) {
    this.n = start;
  }
  dispatch(call: IncomingCall): void {
    if (call.interfaceId !== COUNTER && call.interfaceId !== CB) throw new RpcError("unimplemented", "unknown interface");
    const p = call.params(Box);
    this.seen.push(p.b);
    this.n += p.a === 0 ? 1 : p.a;
    call.results(Box).a = this.n;
  }
  onRelease(): void {
    this.released++;
  }
}

/** Callback: notify(a) -> a * 2, records values. */
export class CallbackServer implements Server {
  readonly values: number[] = [];
  released = 0;
  dispatch(call: IncomingCall): void {
    const v = call.params(Box).a;
    this.values.push(v);
    call.results(Box).a = v * 2;
  }
  onRelease(): void {
    this.released++;
  }
}

export class CalcServer implements Server {
  kept: Capability | null = null;
  released = 0;
  later: Deferred<Capability> | null = null;
  sleepStarted = deferred<void>();
  sleepAborted = deferred<unknown>();
  readonly counters: CounterServer[] = [];

  async dispatch(call: IncomingCall): Promise<void> {
    if (call.interfaceId !== CALC) throw new RpcError("unimplemented", `unknown interface ${call.interfaceId}`);
    const p = call.params(Box);
    const r = call.results(Box);
    switch (call.methodId) {
      case M.add:
        r.a = p.a + p.b;
        return;
      case M.echo:
        r.setText(0, p.text(0));
        r.setData(1, p.data(1));
        r.big = p.big;
        return;
      case M.callback: {
        const cb = readCap(p, 0)!;
        try {
          const req = cb.newCall(CB, 0, Box);
          req.params.a = p.a;
          const resp = await req.send();
          r.a = resp.results(Box).a;
          resp.close();
        } finally {
          cb.close();
        }
        return;
      }
      case M.register:
        this.kept?.close();
        this.kept = readCap(p, 0);
        return;
      case M.fire:
      case M.callKept: {
        const req = this.kept!.newCall(CB, 0, Box);
        req.params.a = p.a;
        const resp = await req.send();
        r.a = resp.results(Box).a;
        resp.close();
        return;
      }
      case M.makeCounter: {
        const c = new CounterServer(p.a);
        this.counters.push(c);
        const cap = localCapability(c);
        writeCap(r, 0, cap);
        cap.close();
        return;
      }
      case M.fail: {
        const kind = p.text(0) as "failed" | "overloaded" | "disconnected" | "unimplemented" | "plain";
        if (kind === "plain") throw new Error("plain error");
        throw new RpcError(kind, `boom-${kind}`);
      }
      case M.sleep: {
        const sig = call.signal;
        this.sleepStarted.resolve();
        await new Promise<void>((resolve) => {
          if (sig.aborted) resolve();
          else sig.addEventListener("abort", () => resolve(), { once: true });
        });
        this.sleepAborted.resolve(sig.reason);
        return;
      }
      case M.identity: {
        const c = readCap(p, 0);
        writeCap(r, 0, c);
        c?.close();
        return;
      }
      case M.makeLater: {
        this.later = deferred<Capability>();
        const cap = promiseCapability(this.later.promise);
        writeCap(r, 0, cap);
        cap.close();
        return;
      }
      case M.tail: {
        const req = this.kept!.newCall(CB, 0, Box);
        req.params.a = p.a;
        call.tailCall(req);
        return;
      }
      case M.nested: {
        // results.inner.ptr0 = a new counter
        const c = new CounterServer(p.a);
        this.counters.push(c);
        const cap = localCapability(c);
        writeCap(r.initInner(2), 0, cap);
        cap.close();
        return;
      }
      default:
        throw new RpcError("unimplemented", `method ${call.methodId}`);
    }
  }

  onRelease(): void {
    this.released++;
    this.kept?.close();
    this.kept = null;
  }
}

/** A client/server pair of RpcConnections (createRpcPair) whose server bootstraps `impl`. */
export interface Pair extends RpcPair {
  /** The bootstrap object, as a CalcServer (what most tests serve). */
  calc: CalcServer;
}

/** Serves `impl` (default: a new CalcServer); `await using` runs the pair's leak check. */
export function makePair(impl: Server = new CalcServer(), opts: RpcPairOptions = {}): Pair {
  return Object.assign(createRpcPair(impl, opts), { calc: impl as CalcServer });
}

export function call(cap: Capability, methodId: number, fill?: (p: Box) => void, iface = CALC): PendingCall {
  const req = cap.newCall(iface, methodId, Box);
  fill?.(req.params);
  return req.send();
}

export async function callA(cap: Capability, methodId: number, fill?: (p: Box) => void, iface = CALC): Promise<number> {
  const resp = await call(cap, methodId, fill, iface);
  try {
    return resp.results(Box).a;
  } finally {
    resp.close();
  }
}

/** Decode every message sent on `t` from now on (wraps `send`; the transport still gets them). */
export function capture(t: MemoryTransport): rpcSchema.Message[] {
  const out: rpcSchema.Message[] = [];
  const orig = t.send.bind(t);
  t.send = (segs: Uint8Array[]) => {
    const bufs = segs.map((s) => s.slice().buffer as ArrayBuffer);
    const m = new capnp.Message(new MultiSegmentArena(bufs), false);
    preallocateSegments(m);
    out.push(m.getRoot(rpcSchema.Message));
    orig(segs);
  };
  return out;
}

/** A hand-driven peer on the other end of `t`: decodes what the engine sends, sends what `build` writes. */
export function rawPeer(t: MemoryTransport): { got: rpcSchema.Message[]; send(build: (r: rpcSchema.Message) => void): void } {
  const got: rpcSchema.Message[] = [];
  t.start({
    message(segs) {
      const m = new capnp.Message(segs[0]!.slice().buffer, false, true);
      got.push(m.getRoot(rpcSchema.Message));
    },
    closed() {},
  });
  return {
    got,
    send(build) {
      const m = new capnp.Message();
      build(m.initRoot(rpcSchema.Message));
      t.send(m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength)));
    },
  };
}

/** A raw peer's Call of `add(a, 1)` (question `qid`) on the answer of its Bootstrap question `boot`. */
/**
 * An RpcConnection (named "server") serving `impl` as its bootstrap capability to a raw peer on
 * the other end of a memory transport pair: the test writes the peer's messages by hand.
 */
export function rawServed(impl: Server): { conn: RpcConnection; peer: ReturnType<typeof rawPeer> } {
  const [ta, tb] = memoryTransportPair();
  const bootCap = localCapability(impl);
  const conn = new RpcConnection(ta, { bootstrap: bootCap, name: "server" });
  bootCap.close();
  return { conn, peer: rawPeer(tb) };
}

export const addCall = (qid: number, boot: number, a: number) => (r: rpcSchema.Message): void => {
  const c = r.initCall();
  c.setQuestionId(qid);
  c.initTarget().initPromisedAnswer().setQuestionId(boot);
  c.setInterfaceId(CALC);
  c.setMethodId(M.add);
  const p = capnp.Struct.initStructAt(0, Box, c.initParams());
  p.a = a;
  p.b = 1;
};

/** A raw peer's Finish of question `qid`, releasing its results' capabilities. */
export const finish = (qid: number) => (r: rpcSchema.Message): void => {
  const f = r.initFinish();
  f.setQuestionId(qid);
  f.setReleaseResultCaps(true);
};

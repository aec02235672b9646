/**
 * Flat results whose caller is not resolved from the Return's dispatch: the runtime's ClientCall
 * (runtime proxy/client.ts `onCompleteFlat`) keeps the value a flat results reader read (capnp
 * questions.ts handleFlatResults, Sink.completeFlat) and hands it over in `finish`, when
 *  - the Return arrives while the Call is still being sent (the call is settled during its send,
 *    then handled once the send and the caller's bookkeeping are done): here a scripted peer that
 *    answers each Call from inside the transport's `sendCopy`, before the engine's send returns;
 *  - the call is made from a server Thread's task (the task leaves its wait first, a microtask
 *    after the Return's dispatch): here FooInterface.callIntFnAsync's implementation calling
 *    FlatEcho on its own loop.
 * Each value is checked against the general path's for the same call (no flat reader: the
 * capnp-ts results struct and the generated reader): every numeric kind FlatEcho carries, with
 * extremes, NaN, ±0 and ±Infinity (flat-echo-cases.ts); the flat reader runs once per call, while
 * the send is still running / while the task waits; an abort of the call's signal, or its
 * connection closed, after its Return was read does not change what the caller gets; an abort or a
 * disconnect before the Return rejects with the typed error and reads nothing; every table is
 * empty afterwards.
 *
 * Threading: loop thread (the test's thread); each side's connection on an event loop of it.
 */
import { getEventListeners } from "node:events";
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { setInterfacePointer } from "capnp-ts/src/serialization/pointers/pointer.js";
import { deferred, memoryTransportPair, type FlatRead, type Transport, type TransportSink } from "@multiprocess-ts/capnp";
import { CanceledError, Connection, EventLoop, connectTransport, currentFrame, serveTransport, type CallOptions, type TaskFrame } from "@multiprocess-ts/runtime";
import type { ClientIO, ProxyMethod } from "@multiprocess-ts/runtime/gen";
import { FooImplementation, assertIdle, createTestSetup, drain } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import { FlatEchoClient, FlatEchoServer, ThreadFooClient, ThreadFooServer, type FlatEcho, type FlatKind, type ThreadFoo } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { FlatSwitch } from "./flat-switch.js";
import { FLAT_ECHO_CASES, type FlatEchoValues } from "./flat-echo-cases.js";

const ZERO_STATS = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };
type EchoArgs = [number, number, number, number, number, number, bigint, bigint, number, number, FlatKind];
const args = (c: FlatEchoValues): EchoArgs => [c.i8, c.u8, c.i16, c.u16, c.i32, c.u32, c.i64, c.u64, c.f32, c.f64, c.k];

/** What each flat reader call saw (set by the test: whether the send / the task's wait was running). */
let observe: () => string = () => "read";
const sw = new FlatSwitch(() => observe());

class EchoClient extends FlatEchoClient {
  protected override $invokeFlat<R>(m: ProxyMethod, write: (dv: DataView, at: number) => void, read: (r: any, io: ClientIO) => R, options?: CallOptions, readFlat?: FlatRead): Promise<R> {
    return super.$invokeFlat(m, write, read, options, sw.wrap(readFlat));
  }
}

/** The bootstrap capability's export ID at the scripted peer. */
const PEER_CAP = 7;

/**
 * The client's transport, the peer scripted: the Bootstrap is answered a microtask later with one
 * capability; a Call to it is answered from inside `sendCopy` (before the engine's send returns)
 * with results that echo the params' data section (no cap table: a hot-shaped Return), or not at
 * all while `hold` is set. Finish and Release are counted.
 */
class EchoPeer implements Transport {
  sink: TransportSink | null = null;
  /** The peer is inside sendCopy, delivering the Return. */
  sending = false;
  hold = false;
  /** Run after the Return was delivered, still inside sendCopy. */
  afterReturn: (() => void) | null = null;
  /** The question IDs of the Calls and of the Finishes received, in order. */
  readonly calls: number[] = [];
  readonly finishes: number[] = [];
  releases = 0;

  start(sink: TransportSink): void {
    this.sink = sink;
  }
  send(segments: Uint8Array[]): void {
    this.take(segments);
  }
  sendCopy(segments: Uint8Array[]): boolean {
    this.take(segments);
    return true;
  }
  close(): Promise<void> {
    const s = this.sink;
    this.sink = null;
    queueMicrotask(() => s?.closed(undefined));
    return Promise.resolve();
  }
  destroy(): void {
    void this.close();
  }

  private take(segments: Uint8Array[]): void {
    if (this.sink === null) return;
    expect(segments).toHaveLength(1);
    const m = new capnp.Message(segments[0]!.slice().buffer, false, true).getRoot(rpc.Message);
    switch (m.which()) {
      case rpc.Message.BOOTSTRAP: {
        const qid = m.getBootstrap().getQuestionId();
        queueMicrotask(() =>
          this.deliver((r) => {
            const ret = r.initReturn();
            ret.setAnswerId(qid);
            const payload = ret.initResults();
            setInterfacePointer(0, capnp.Struct.getPointer(0, payload));
            payload.initCapTable(1).get(0).setSenderHosted(PEER_CAP);
          }),
        );
        return;
      }
      case rpc.Message.CALL: {
        const call = m.getCall();
        expect(call.getTarget().getImportedCap()).toBe(PEER_CAP);
        expect(call.getInterfaceId()).toBe(FlatEchoClient.interfaceId);
        const qid = call.getQuestionId();
        this.calls.push(qid);
        if (this.hold) return;
        const params = capnp.Struct.getStruct(0, DataOnly, call.getParams());
        const bytes = new Uint8Array(48);
        for (let i = 0; i < 48; i++) bytes[i] = capnp.Struct.getUint8(i, params);
        this.sending = true;
        try {
          this.deliver((r) => {
            const ret = r.initReturn();
            ret.setAnswerId(qid);
            const results = capnp.Struct.initStructAt(0, DataOnly, ret.initResults());
            for (let i = 0; i < 48; i++) capnp.Struct.setUint8(i, bytes[i]!, results);
          });
          this.afterReturn?.();
        } finally {
          this.sending = false;
        }
        return;
      }
      case rpc.Message.FINISH:
        this.finishes.push(m.getFinish().getQuestionId());
        return;
      case rpc.Message.RELEASE:
        this.releases++;
        return;
      default:
        throw new Error(`unexpected message ${m.which()}`);
    }
  }

  private deliver(build: (r: rpc.Message) => void): void {
    const m = new capnp.Message();
    build(m.initRoot(rpc.Message));
    const segs = m._capnp.segments;
    expect(segs).toHaveLength(1);
    this.sink?.message([new Uint8Array(segs[0]!.buffer, 0, segs[0]!.byteLength)]);
  }
}

/** FlatEcho's params and results: six data words, no pointer. */
class DataOnly extends capnp.Struct {
  static readonly _capnp = { displayName: "DataOnly", id: "f1e0000000000001", size: new capnp.ObjectSize(48, 0) };
}

describe("flat results of a call settled during its send", () => {
  async function withPeer(body: (client: EchoClient, peer: EchoPeer) => Promise<void>): Promise<void> {
    const loop = new EventLoop("deferred-client", { log: { level: "warning" } });
    const peer = new EchoPeer();
    const conn = new Connection(loop, peer);
    const client = new EchoClient(conn.rpc.bootstrap(), conn, { destroyConnection: true });
    try {
      await drain(); // the Bootstrap's Return (a microtask later): Calls go to the import
      await body(client, peer);
    } finally {
      await client.close();
      await loop.done;
      assertIdle({ connections: { client: conn }, loops: { client: loop } });
      expect(conn.rpc.stats()).toEqual(ZERO_STATS);
    }
  }

  it("gives the caller the general path's value, every numeric kind, read once while the send runs", async () => {
    await withPeer(async (client, peer) => {
      observe = () => (peer.sending ? "during send" : "after send");
      const signals: AbortSignal[] = [];
      for (const c of FLAT_ECHO_CASES) {
        // A live signal: its abort listener (the call's Canceler, added after the send) is removed
        // once the caller has the value.
        const [flat, general] = await sw.both(() => {
          const ac = new AbortController();
          signals.push(ac.signal);
          return client.echo(...args(c), { signal: ac.signal });
        });
        expect(flat).toEqual(c);
        expect(general).toEqual(flat);
        expect(Object.is(flat.f32, c.f32) && Object.is(flat.f64, c.f64)).toBe(true);
        expect(Object.is(general.f32, c.f32) && Object.is(general.f64, c.f64)).toBe(true);
        expect(sw.reads).toEqual(["during send"]);
        expect(client.$connection.rpc.stats()).toEqual({ ...ZERO_STATS, imports: 1 });
      }
      expect(signals.map((sg) => getEventListeners(sg, "abort").length)).toEqual(signals.map(() => 0));
      // Each call's Finish, once (the question IDs are reused: one per call in turn).
      expect(peer.calls).toHaveLength(FLAT_ECHO_CASES.length * 2);
      expect(peer.finishes.slice(-peer.calls.length)).toEqual(peer.calls);
    });
  });

  it("an abort after the Return was read, still during the send, does not change the value", async () => {
    await withPeer(async (client, peer) => {
      observe = () => (peer.sending ? "during send" : "after send");
      const c = FLAT_ECHO_CASES[3]!; // ±0 and the sign bits
      const [flat, general] = await sw.both(() => {
        const ac = new AbortController();
        peer.afterReturn = () => ac.abort();
        return client.echo(...args(c), { signal: ac.signal });
      });
      peer.afterReturn = null;
      expect(flat).toEqual(c);
      expect(general).toEqual(flat);
      expect(Object.is(flat.f64, -0)).toBe(true);
      expect(sw.reads).toEqual(["during send"]);
    });
  });

  for (const flat of [true, false]) {
    it(`a disconnect after the Return was read, still during the send, does not change the value (${flat ? "flat" : "general path"})`, async () => {
      await withPeer(async (client, peer) => {
        observe = () => (peer.sending ? "during send" : "after send");
        const conn = client.$connection;
        let closing: Promise<void> | undefined;
        peer.afterReturn = () => {
          closing = conn.close();
        };
        sw.reads.length = 0;
        sw.on = flat;
        let got: FlatEchoValues;
        try {
          got = await client.echo(...args(FLAT_ECHO_CASES[1]!));
        } finally {
          sw.on = true;
          peer.afterReturn = null;
        }
        await closing;
        expect(got).toEqual(FLAT_ECHO_CASES[1]);
        expect(sw.reads).toEqual(flat ? ["during send"] : []);
        expect(conn.state).toBe("closed");
        await expect(client.echo(...args(FLAT_ECHO_CASES[1]!))).rejects.toThrow("IPC client method called after disconnect.");
      });
    });
  }

  it("an abort or a disconnect before the Return rejects with its typed error; nothing read, nothing left", async () => {
    await withPeer(async (client, peer) => {
      peer.hold = true;
      sw.reads.length = 0;
      const ac = new AbortController();
      const aborted = client.echo(...args(FLAT_ECHO_CASES[1]!), { signal: ac.signal });
      ac.abort();
      await expect(aborted).rejects.toThrow(CanceledError);
      expect(peer.finishes.at(-1)).toBe(peer.calls.at(-1)); // the cancel's Finish; no Return comes for it
      const cut = client.echo(...args(FLAT_ECHO_CASES[2]!));
      await client.$connection.close();
      await expect(cut).rejects.toThrow("IPC client method call interrupted by disconnect.");
      expect(sw.reads).toEqual([]);
    });
  });
});

/** A transport that runs `after` (once) right after the next incoming message's dispatch. */
class Tap implements Transport {
  after: (() => void) | null = null;
  readonly sendLazy?: (segments: Uint8Array[]) => void;
  readonly sendCopy?: (segments: Uint8Array[]) => boolean;
  constructor(private readonly inner: Transport) {
    if (inner.sendLazy !== undefined) this.sendLazy = (s) => inner.sendLazy!(s);
    if (inner.sendCopy !== undefined) this.sendCopy = (s) => inner.sendCopy!(s);
  }
  start(sink: TransportSink): void {
    this.inner.start({
      message: (segments) => {
        sink.message(segments);
        const f = this.after;
        this.after = null;
        f?.();
      },
      closed: (err) => sink.closed(err),
    });
  }
  send(segments: Uint8Array[]): void {
    this.inner.send(segments);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  destroy(err?: Error): void {
    this.inner.destroy(err);
  }
}

describe("flat results of a call made from a server Thread's task", () => {
  /**
   * ThreadFoo whose callIntFnAsync (a Context call: it runs as a task of a server Thread) calls
   * `echo` on a FlatEcho client of its own loop with FLAT_ECHO_CASES[arg], keeping the value.
   */
  class Caller extends FooImplementation implements ThreadFoo {
    echo: EchoClient | null = null;
    frame: TaskFrame | undefined;
    signal: AbortSignal | undefined;
    /** Run before the task's call (the abort and disconnect variants). */
    before: ((call: Promise<FlatEchoValues>) => void) | null = null;
    readonly got: (FlatEchoValues | string)[] = [];
    threadName(): string {
      return "";
    }
    override async callIntFnAsync(arg: number): Promise<number> {
      this.frame = currentFrame();
      const call = this.echo!.echo(...args(FLAT_ECHO_CASES[arg]!), this.signal === undefined ? undefined : { signal: this.signal });
      this.before?.(call);
      try {
        this.got.push(await call);
      } catch (e) {
        this.got.push(`${(e as Error).name}: ${(e as Error).message}`);
      }
      expect(currentFrame()).toBe(this.frame);
      // The task left its wait before it resumed (ClientCall's finish, once).
      expect(this.frame!.waits).toBe(0);
      return arg;
    }
  }

  /** The echo server's `echo`, held while `gate` is set. */
  class Echo implements FlatEcho {
    gate: Promise<void> | null = null;
    async echo(...a: EchoArgs): Promise<FlatEchoValues> {
      if (this.gate !== null) await this.gate;
      const [i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, k] = a;
      return { i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, k };
    }
  }

  async function withCaller(body: (c: Caller, foo: ThreadFooClient, echo: Echo, echoConn: Connection, tap: Tap) => Promise<void>): Promise<void> {
    const impl = new Caller();
    await using p = await createTestSetup({ impl, Server: ThreadFooServer, Client: ThreadFooClient });
    await p.client.initThreadMap();
    const echoLoop = new EventLoop("deferred-echo", { log: { level: "warning" } });
    const echo = new Echo();
    const [a, b] = memoryTransportPair();
    const echoConn = serveTransport(echoLoop, b, echo, FlatEchoServer);
    const tap = new Tap(a);
    impl.echo = await connectTransport(p.serverLoop, tap, EchoClient);
    const callerConn = impl.echo.$connection;
    // One call from outside a task: the bootstrap's Return has come (the Tap sees only calls' Returns).
    expect(await impl.echo.echo(...args(FLAT_ECHO_CASES[0]!))).toEqual(FLAT_ECHO_CASES[0]);
    try {
      await body(impl, p.client, echo, echoConn, tap);
    } finally {
      await impl.echo.close();
      await echoConn.close();
      await echoLoop.done;
      assertIdle({ connections: { caller: callerConn, echo: echoConn }, loops: { echo: echoLoop } });
    }
  }

  it("gives the task the general path's value, every numeric kind, read once while the task waits", async () => {
    await withCaller(async (impl, foo) => {
      observe = () => (impl.frame !== undefined && impl.frame.waits > 0 ? "task waits" : "task runs");
      for (let i = 0; i < FLAT_ECHO_CASES.length; i++) {
        const c = FLAT_ECHO_CASES[i]!;
        impl.got.length = 0;
        const [flat, general] = await sw.both(() => foo.callIntFnAsync(i));
        expect([flat, general]).toEqual([i, i]);
        expect(impl.got).toEqual([c, c]);
        const [f, g] = impl.got as FlatEchoValues[];
        expect(Object.is(f!.f32, c.f32) && Object.is(f!.f64, c.f64) && Object.is(g!.f32, c.f32) && Object.is(g!.f64, c.f64)).toBe(true);
        expect(sw.reads).toEqual(["task waits"]);
        expect(impl.frame!.waits).toBe(0);
      }
      expect(impl.echo!.$connection.rpc.stats()).toEqual({ ...ZERO_STATS, imports: 1 });
    });
  });

  it("an abort or a disconnect after the Return was read, before the task resumes, does not change the value", async () => {
    await withCaller(async (impl, foo, _echo, _echoConn, tap) => {
      const c = FLAT_ECHO_CASES[4]!; // Infinity and NaN
      impl.got.length = 0;
      observe = () => (impl.frame !== undefined && impl.frame.waits > 0 ? "task waits" : "task runs");
      // Right after the Return's dispatch (the value kept, the task's reaction queued): abort.
      const [flat, general] = await sw.both(() => {
        const ac = new AbortController();
        impl.signal = ac.signal;
        tap.after = () => ac.abort();
        return foo.callIntFnAsync(4);
      });
      impl.signal = undefined;
      expect([flat, general]).toEqual([4, 4]);
      expect(sw.reads).toEqual(["task waits"]);
      expect(impl.got).toEqual([c, c]);
      expect(impl.frame!.waits).toBe(0);
    });
  });

  for (const flat of [true, false]) {
    it(`a disconnect after the Return was read, before the task resumes, does not change the value (${flat ? "flat" : "general path"})`, async () => {
      await withCaller(async (impl, foo, _echo, _echoConn, tap) => {
        observe = () => (impl.frame !== undefined && impl.frame.waits > 0 ? "task waits" : "task runs");
        const conn = impl.echo!.$connection;
        let closing: Promise<void> | undefined;
        tap.after = () => {
          closing = conn.close();
        };
        sw.reads.length = 0;
        sw.on = flat;
        try {
          expect(await foo.callIntFnAsync(3)).toBe(3);
        } finally {
          sw.on = true;
        }
        await closing;
        expect(sw.reads).toEqual(flat ? ["task waits"] : []);
        expect(impl.got).toEqual([FLAT_ECHO_CASES[3]]);
        expect(Object.is((impl.got[0] as FlatEchoValues).f64, -0) && Object.is((impl.got[0] as FlatEchoValues).f32, -0)).toBe(true);
        expect(conn.state).toBe("closed");
      });
    });
  }

  it("an abort or a disconnect while the task waits rejects with its typed error; nothing read, nothing left", async () => {
    await withCaller(async (impl, foo, echo, echoConn) => {
      const gate = deferred<void>();
      echo.gate = gate.promise;
      sw.reads.length = 0;
      const ac = new AbortController();
      impl.signal = ac.signal;
      impl.before = () => ac.abort();
      impl.got.length = 0;
      expect(await foo.callIntFnAsync(1)).toBe(1);
      impl.signal = undefined;
      impl.before = () => void echoConn.close();
      expect(await foo.callIntFnAsync(2)).toBe(2);
      impl.before = null;
      gate.resolve();
      expect(impl.got).toEqual(["CanceledError: IPC client method call canceled.", "IpcInterruptedError: IPC client method call interrupted by disconnect."]);
      expect(sw.reads).toEqual([]);
      expect(impl.frame!.waits).toBe(0);
    });
  });
});

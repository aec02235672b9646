// The RPC bridge at the engine level: a worker calls capabilities the loop shares, passes its own
// capabilities (callbacks) that the loop calls back on the worker, receives capabilities in
// results, sees errors with their kind, and the loop disposes everything when the worker goes.
// Workers run worker-fixtures/bridge.mjs.
import { threadId as mainThreadId, Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import * as capnp from "capnp-ts";
import { deferred, localCapability, readCap, writeCap, RpcError, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import { loopBridge, loopHandleTransferList, WorkerHost, WorkerSession, type LoopBridge } from "../dist/worker/index.js";
import { RpcEnd } from "../dist/worker/rpc-end.js";

const FIXTURE = new URL("./worker-fixtures/bridge.mjs", import.meta.url);

class Args extends capnp.Struct {
  static override readonly _capnp = { displayName: "Args", id: "0", size: new capnp.ObjectSize(8, 2) };
  get a(): number {
    return capnp.Struct.getInt32(0, this);
  }
  set a(v: number) {
    capnp.Struct.setInt32(0, v, this);
  }
  get b(): number {
    return capnp.Struct.getInt32(4, this);
  }
  get text(): string {
    return capnp.Struct.getText(1, this);
  }
  set text(v: string) {
    capnp.Struct.setText(1, v, this);
  }
}
const CB = 0x5678n;

/** The loop-side "calc" object the worker calls. */
class Calc implements Server {
  released = 0;
  counterReleased = deferred<void>();
  hangStarted = deferred<AbortSignal>();
  async dispatch(call: IncomingCall): Promise<void> {
    const p = call.params(Args);
    const r = call.results(Args);
    switch (call.methodId) {
      case 0: // add
        r.a = p.a + p.b;
        return;
      case 1: {
        // callback: call the worker's capability with arg, return its answer + 1
        const cb = readCap(p, 0)!;
        try {
          const req = cb.newCall(CB, 0, Args);
          req.params.a = p.a;
          const resp = await req.send();
          r.a = resp.results(Args).a + 1;
          resp.close();
        } finally {
          cb.close();
        }
        return;
      }
      case 2: {
        // returns a new capability (a counter) in pointer 0
        let n = 0;
        const counter = localCapability({
          dispatch: (c: IncomingCall) => void (c.results(Args).a = ++n),
          onRelease: () => this.counterReleased.resolve(),
        });
        writeCap(r, 0, counter);
        counter.close();
        r.text = `made ${p.text}`;
        return;
      }
      case 4:
        throw new RpcError("overloaded", "calc is busy", { code: "MP_ERR_BUSY" });
      case 6: // a method with a Context at pointer 1: answer whether one arrived
        r.a = capnp.Pointer.isNull(capnp.Struct.getPointer(1, p)) ? 0 : 1;
        return;
      case 5: {
        // hangs until canceled
        this.hangStarted.resolve(call.signal);
        await new Promise<void>((_, reject) => call.signal.addEventListener("abort", () => reject(call.signal.reason)));
        return;
      }
      default:
        throw new RpcError("unimplemented", "no such method");
    }
  }
  onRelease(): void {
    this.released++;
  }
}

interface Started {
  worker: Worker;
  session: WorkerSession;
  messages: any[];
  result: Promise<any>;
  started: Promise<void>;
  exited: Promise<number>;
}

let refs = 0;
let host: WorkerHost;
let bridge: LoopBridge;
let calc: Calc;
/** Calls the bridge asked us to fill a Context for: [session name, the Context struct's pointer index]. */
let filled: [string, boolean][] = [];
let unshare: () => void;
let live: Started[] = [];

function setup(): void {
  host = new WorkerHost({
    name: "bridge-loop",
    ref: () => {
      refs++;
      let done = false;
      return { [Symbol.dispose]: () => void (done ? 0 : ((done = true), refs--)) };
    },
  });
  filled = [];
  bridge = loopBridge(host, {
    fillContext: (ctx, session) => {
      // The runtime glue calls fillContext(ctx, connection, <worker ThreadContext>) here.
      filled.push([session.name, capnp.Pointer.isNull(ctx) === false]);
    },
  });
  calc = new Calc();
  const cap = localCapability(calc);
  unshare = bridge.share("calc", cap);
  cap.close(); // the bridge keeps its own reference
}

function start(scenario: string): Started {
  const handle = host.handle({ name: scenario });
  const session = [...host.sessions].find((s) => s.id === handle.session)!;
  const worker = new Worker(FIXTURE, { workerData: { handle, scenario }, transferList: loopHandleTransferList(handle) });
  const messages: any[] = [];
  const result = deferred<any>();
  const started = deferred<void>();
  worker.on("message", (m) => {
    messages.push(m);
    if (m.started) started.resolve();
    else result.resolve(m);
  });
  worker.once("error", (e) => result.reject(e));
  const exited = new Promise<number>((r) => worker.once("exit", r));
  // A worker that exits before it posted its result (e.g. nothing kept it alive mid-call) fails
  // the test at once instead of leaving it waiting (a no-op once the result arrived).
  void exited.then((code) => result.reject(new Error(`worker "${scenario}" exited (${code}) without a result`)));
  result.promise.catch(() => {}); // tests that terminate the worker never read its result
  const s = { worker, session, messages, result: result.promise, started: started.promise, exited };
  live.push(s);
  return s;
}

// Leak check: workers gone, sessions closed, bridge tables empty, loop refs zero, and once the
// share is dropped the loop object has been released exactly once.
afterEach(async () => {
  await Promise.all(live.map((s) => s.exited));
  await Promise.all(live.map((s) => s.session.closed));
  live = [];
  expect(host.sessions.size).toBe(0);
  expect(bridge.stats()).toEqual({ caps: 0, answers: 0, questions: 0, objects: 0, sessions: 0 });
  expect(refs).toBe(0);
  unshare();
  expect(calc.released).toBe(1);
  bridge.close();
  await host.close();
});

describe("worker → loop calls", () => {
  it("calls a shared capability and reads its results", async () => {
    setup();
    const r = await start("add").result;
    expect(r).toMatchObject({ ok: true, value: 5 });
    expect(r.stats).toEqual({ imports: 0, exports: 0, questions: 0, answers: 0 });
  });

  it("keeps the worker alive through sequential and concurrent calls, and lets it exit once none is pending", async () => {
    setup();
    const s = start("sequential");
    const r = await s.result;
    expect(r).toMatchObject({ ok: true, value: 5050 + 3000 });
    expect(r.stats).toEqual({ imports: 0, exports: 0, questions: 0, answers: 0 });
    // The fixture closed its parentPort: only a ref'd loop port could keep it running now.
    expect(await s.exited).toBe(0);
  });

  it("blocks on a call with callSync", async () => {
    setup();
    expect((await start("addSync").result).value).toBe(42);
  });

  it("receives capabilities in results, calls them, and releases them on the loop", async () => {
    setup();
    const r = await start("capInResults").result;
    expect(r.value).toEqual(["made counter", 1, 2]);
    await calc.counterReleased.promise; // the worker's close() reached the loop object
  });

  it("rethrows loop errors with their kind and code; unknown names fail clearly", async () => {
    setup();
    const r = await start("errors").result;
    expect(r.value.thrown).toMatchObject({ name: "RpcError", kind: "overloaded", code: "MP_ERR_BUSY", message: "calc is busy" });
    expect(r.value.unknown).toMatchObject({ kind: "failed", message: 'nothing is shared under "nothing"' });
  });
});

describe("flat frames (protocol.ts)", () => {
  it("sends capability-free calls and returns as frames, in port order with the other messages", async () => {
    setup();
    const proto = WorkerSession.prototype as unknown as { sendFrame(f: ArrayBuffer): void };
    const sendFrame = proto.sendFrame;
    let loopFrames = 0;
    // Every buffer the loop end received from the worker, and which of the loop's return frames
    // went back in one of them (RpcEnd.#spare: a call's buffer, its params copied out).
    const end = RpcEnd.prototype as unknown as { onMessage(m: unknown): void };
    const onMessage = end.onMessage;
    const received = new Set<ArrayBuffer>();
    let reused = 0;
    end.onMessage = function (this: unknown, m: unknown) {
      if (m instanceof ArrayBuffer) received.add(m);
      else if ((m as { op?: string; params?: { buf: ArrayBuffer } }).op === "call") received.add((m as { params: { buf: ArrayBuffer } }).params.buf);
      onMessage.call(this, m);
    };
    proto.sendFrame = function (this: WorkerSession, f: ArrayBuffer) {
      loopFrames++;
      if (received.has(f)) reused++;
      sendFrame.call(this, f);
    };
    try {
      const r = await start("frameOrder").result;
      expect(r.value).toMatchObject({ a: 3, b: 71, c: 21 });
      const sent: string[] = r.value.sent;
      // get, the add call as a frame, the callback call as a CallMsg, get, a frame, its target's
      // release; the worker's answer to the loop's callback (capability-free results) as a frame.
      expect(sent.slice(0, 4)).toEqual(["get", "frame", "call", "get"]);
      expect(sent.indexOf("release")).toBeGreaterThan(sent.indexOf("frame", 2));
      expect(sent.filter((s) => s === "frame")).toHaveLength(3);
      // The loop answered the three calls with capability-free results: three return frames.
      expect(loopFrames).toBe(3);
      // Each went back in the buffer of the call it answered: no new ArrayBuffer on the loop.
      expect(reused).toBe(3);
      expect(r.stats).toEqual({ imports: 0, exports: 0, questions: 0, answers: 0 });
    } finally {
      proto.sendFrame = sendFrame;
      end.onMessage = onMessage;
    }
  });
});

describe("one engine pass in the worker (rpc/forward.ts)", () => {
  it("sends a capability-free call to the loop from send() itself and reads the results in place", async () => {
    setup();
    const r = await start("forwardedAtSend").result;
    expect(r.value).toEqual({ atSend: 1, a: 42 });
    expect(r.stats).toEqual({ imports: 0, exports: 0, questions: 0, answers: 0 });
  });

  it("serves a call pipelined on a capability in the results of a call in flight", async () => {
    setup();
    const r = await start("pipelined").result;
    expect(r.value).toEqual(["made piped", 1, 2]);
    await calc.counterReleased.promise;
  });

  it("cancels the loop call when the worker cancels its call; the worker sees CanceledError", async () => {
    setup();
    const w = start("cancelFromWorker");
    const signal = await calc.hangStarted.promise;
    await w.started;
    const aborted = new Promise<unknown>((r) => signal.addEventListener("abort", () => r(signal.reason)));
    w.worker.postMessage("cancel");
    expect(await aborted).toBeInstanceOf(Error);
    const r = await w.result;
    expect(r.value).toMatchObject({ name: "CanceledError", after: 3 });
    expect(r.stats).toEqual({ imports: 0, exports: 0, questions: 0, answers: 0 });
  });
});

describe("Context filling", () => {
  it("asks the loop to fill the Context of methods the worker registered, with the worker's session", async () => {
    setup();
    const r = await start("withContext").result;
    expect(r.value).toEqual({ withContext: 1, add: 2 });
    expect(filled).toEqual([["withContext", true]]); // only the registered method
  });
});

describe("loop → worker callbacks", () => {
  it("runs a worker's callback on that worker while it is blocked in callSync", async () => {
    setup();
    const r = await start("callbackSync").result;
    expect(r.ok).toBe(true);
    expect(r.value.threadId).not.toBe(mainThreadId);
    // The callback ran on the worker, inside callSync's wait (waiting=1), before the result.
    expect(r.value.log[0]).toBe(`callback(7) on thread ${r.value.threadId}, waiting=1`);
    expect(r.value.log.indexOf("result 71")).toBeGreaterThan(0);
    // The loop drops its stand-in when the server closes it: before or after the return arrives.
    expect(r.value.log).toContain("callback released");
    expect(r.stats).toEqual({ imports: 0, exports: 0, questions: 0, answers: 0 });
  });
});

describe("teardown with calls in flight", () => {
  it("rejects the worker's call with DisconnectedError when the loop closes the session; the loop call is canceled", async () => {
    setup();
    const w = start("hangThenReport");
    const signal = await calc.hangStarted.promise;
    await w.started;
    expect(bridge.stats(w.session)).toMatchObject({ answers: 1 });
    await w.session.close();
    expect(signal.aborted).toBe(true); // the bridge canceled the call it was running for the worker
    const r = await w.result;
    expect(r.value).toMatchObject({ name: "DisconnectedError", code: "MP_ERR_DISCONNECTED" });
  });

  it("cancels the loop call when the worker is terminated in the middle of it", async () => {
    setup();
    const w = start("hangForever");
    const signal = await calc.hangStarted.promise;
    await w.started;
    const aborted = new Promise<unknown>((r) => signal.addEventListener("abort", () => r(signal.reason)));
    await w.worker.terminate();
    expect(await aborted).toBeInstanceOf(Error);
    await w.session.closed;
  });
});

// Worker attachment: handles, post/sync between a worker and its loop thread, the closure check,
// blocking waits that still run callbacks, callSync, and session teardown. Workers run
// worker-fixtures/basic.mjs, which imports the built package (dist/).
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import { deferred } from "@multiprocess-ts/capnp";
import {
  attachLoop,
  loopHandleTransferList,
  workerHost,
  type WorkerHost,
  type WorkerSession,
} from "../dist/worker/index.js";
import { WAITERS } from "../dist/worker/protocol.js";

const FIXTURE = new URL("./worker-fixtures/basic.mjs", import.meta.url);

/**
 * The bridge-channel API (`listen`, `sendChannel`) is @internal: stripped from the shipped .d.ts,
 * used by the bridge modules only. This white-box test reaches it through these views.
 */
interface ChannelSession {
  sendChannel(ch: string, body: unknown): void;
}
interface ChannelHost {
  listen(ch: string, fn: (body: unknown, from: ChannelSession) => void): () => void;
}
const channels = (h: WorkerHost): ChannelHost => h as unknown as ChannelHost;
const channelOf = (s: WorkerSession): ChannelSession => s as unknown as ChannelSession;

/** A stand-in for the runtime EventLoop's ref counting: what the leak check compares. */
function countingLoop(name: string) {
  const loop = {
    name,
    refs: 0,
    ref(): Disposable {
      loop.refs++;
      let done = false;
      return {
        [Symbol.dispose]() {
          if (!done) {
            done = true;
            loop.refs--;
          }
        },
      };
    },
  };
  return loop;
}

interface Started {
  handle: ReturnType<WorkerHost["handle"]>;
  worker: Worker;
  session: WorkerSession;
  result: Promise<{ ok: boolean; value?: any; error?: any }>;
  exited: Promise<number>;
}

let live: Started[] = [];
let loop = countingLoop("test-loop");
let host: WorkerHost;

function setup(): void {
  loop = countingLoop("test-loop");
  host = workerHost(loop);
}

function start(scenario: string, extra: Record<string, unknown> = {}): Started {
  const handle = host.handle({ name: scenario });
  const session = [...host.sessions].find((s) => s.id === handle.session)!;
  const worker = new Worker(FIXTURE, {
    workerData: { handle, scenario, ...extra },
    transferList: loopHandleTransferList(handle),
  });
  const result = new Promise<{ ok: boolean; value?: any; error?: any }>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
  });
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
  const s = { handle, worker, session, result, exited };
  live.push(s);
  return s;
}

// Leak check after every test: no live workers, no open sessions, loop refs back to zero.
afterEach(async () => {
  await Promise.all(live.map((s) => s.exited));
  await Promise.all(live.map((s) => s.session.closed));
  live = [];
  expect(host.sessions.size).toBe(0);
  expect(loop.refs).toBe(0);
  await host.close();
});

describe("post and sync", () => {
  it("runs posts in FIFO order and sync is a barrier behind them", async () => {
    setup();
    const seen: number[] = [];
    host.register("append", (d) => void seen.push(d as number));
    host.register("get", () => [...seen]);
    const w = start("fifo", { n: 200 });
    expect(loop.refs).toBe(1); // the open session holds the loop
    const r = await w.result;
    expect(r).toEqual({ ok: true, value: Array.from({ length: 200 }, (_, i) => i) });
  });

  it("sync returns the awaited handler value and carries structured data", async () => {
    setup();
    host.register("echo", async (d) => ({ back: d, at: "loop" }));
    const data = { n: 1, s: "two", big: 3n, list: [1, 2], map: new Map([["k", 1]]), bytes: new Uint8Array([1, 2]) };
    const r = await start("echo", { data }).result;
    expect(r.ok).toBe(true);
    expect(r.value).toEqual({ back: data, at: "loop" });
  });

  it("sync rethrows handler errors with their RpcError kind and code; unknown names fail clearly", async () => {
    setup();
    const { RpcError } = await import("@multiprocess-ts/capnp");
    host.register("fail", () => {
      throw new RpcError("overloaded", "too busy", { code: "MP_ERR_TEST" });
    });
    host.register("failAsync", async () => {
      throw new RangeError("async bad");
    });
    const r = await start("errors").result;
    expect(r.value.fail).toMatchObject({ name: "RpcError", message: "too busy", kind: "overloaded", code: "MP_ERR_TEST" });
    expect(r.value.failAsync).toMatchObject({ name: "RangeError", message: "async bad" });
    expect(r.value.nope.message).toBe('no handler "nope" is registered on loop "test-loop"');
  });

  it("rejects closures with a clear TypeError, in either direction, and keeps working", async () => {
    setup();
    const got: unknown[] = [];
    host.register("append", (d) => void got.push(d));
    host.register("echo", (d) => d);
    host.register("returnsFunction", () => ({ cb: () => 1 }));
    const r = await start("closures").result;
    expect(r.value.post.isTypeError).toBe(true);
    expect(r.value.post.message).toMatch(/^WorkerLoop\.post\("append"\): cannot send a function \(at data\.nested\[1\]\.f\) to another thread\. Threads share data and MessagePorts, never closures/);
    expect(r.value.sync.isTypeError).toBe(true);
    expect(r.value.sync.message).toMatch(/^WorkerLoop\.sync\("echo"\): cannot send a function to another thread/);
    expect(r.value.reply.name).toBe("TypeError");
    expect(r.value.reply.message).toMatch(/^reply to worker "closures": cannot send a function \(at data\.cb\)/);
    expect(r.value.after).toBe("still works");
    expect(got).toEqual([]); // the rejected post sent nothing
  });

  it("transfers MessagePorts inside the data", async () => {
    setup();
    host.register("usePort", (d) => {
      const { port, text } = d as { port: import("node:worker_threads").MessagePort; text: string };
      port.postMessage(`${text} from the loop`);
      port.close();
      return "posted";
    });
    const r = await start("port").result;
    expect(r.value).toEqual({ r: "posted", m: "hi from the loop" });
  });
});

describe("Waiter: a blocked worker still runs what the loop sends it", () => {
  function askHandler(h: WorkerHost): void {
    let pending: ((v: unknown) => void) | undefined;
    channels(h).listen("a", (v) => pending?.(v));
    h.register("ask", (n, from) => {
      const d = deferred<unknown>();
      pending = d.resolve;
      channelOf(from).sendChannel("q", n); // runs on the worker while it is blocked in sync("ask")
      return d.promise;
    });
  }

  it("runs a callback while blocked in sync, before sync returns", async () => {
    setup();
    askHandler(host);
    const r = await start("callbackWhileBlocked").result;
    expect(r.value).toEqual(["callback 21 (waiting: 1)", "sync returned 42"]);
  });

  it("lets that callback block on the loop again (recursion)", async () => {
    setup();
    askHandler(host);
    host.register("double", (n) => (n as number) * 2);
    const r = await start("nested").result;
    expect(r.value).toEqual([
      "callback 5 (waiting: 1)",
      "nested sync returned 10 (waiting: 1)",
      "outer sync returned 10",
    ]);
  });
});

describe("callSync", () => {
  it("completes promises while blocked, returns plain values, rethrows rejections", async () => {
    setup();
    expect((await start("callSyncJobs").result).value).toBe(42);
    expect((await start("callSyncValue").result).value).toBe("plain");
    expect((await start("callSyncReject").result).value).toMatchObject({ name: "RangeError", message: "bad" });
  });

  it("waits for an answer that arrives over the loop port", async () => {
    setup();
    channels(host).listen("req", (v, from) => from.sendChannel("res", (v as number) * 6));
    expect((await start("callSyncChannel").result).value).toBe("got 42");
  });

  it("counts its blocking waits in the shared WAITERS word, so the loop notifies only then", async () => {
    setup();
    let state: Int32Array | undefined;
    const seen: number[] = [];
    host.register("echo", async (d) => {
      // The request is posted before the worker enters its wait: the word rises when it does
      // (the worker stays blocked until this handler returns), checked once per loop turn.
      while (Atomics.load(state!, WAITERS) === 0) await new Promise((ok) => setImmediate(ok));
      seen.push(Atomics.load(state!, WAITERS));
      return d;
    });
    const w = start("echo", { data: 7 });
    state = new Int32Array(w.handle.shared);
    expect((await w.result).value).toBe(7);
    expect(seen).toEqual([1]);
    expect(Atomics.load(state, WAITERS)).toBe(0); // the wait is over
  });

  it("is a clear error inside a promise job, where it could never finish", async () => {
    setup();
    const r = await start("callSyncInJob").result;
    expect(r.value.message).toMatch(/^callSync: cannot block inside a promise job/);
  });

  it("is a clear error on the loop thread, which never blocks; post still works there", async () => {
    setup();
    const got: unknown[] = [];
    host.register("append", (d) => void got.push(d));
    host.register("echo", (d) => d);
    const handle = host.handle({ name: "same-thread" });
    const wl = attachLoop(handle); // attaching on the loop thread itself
    expect(() => wl.sync("echo", 1)).toThrow(/^WorkerLoop\.sync\("echo"\): blocking call from the event loop thread/);
    expect(() => wl.callSync(() => 1)).toThrow(/^callSync: blocking call from the event loop thread/);
    expect(() => wl.waiter.wait(() => true)).toThrow(/blocking call from the event loop thread/);
    wl.post("append", "posted");
    const session = [...host.sessions].find((s) => s.id === handle.session)!;
    const closed = deferred<void>();
    host.register("done", () => closed.resolve());
    wl.post("done");
    await closed.promise;
    expect(got).toEqual(["posted"]);
    wl.close();
    await session.closed;
  });
});

describe("session teardown", () => {
  it("closes the session, runs its cleanups and releases the loop ref when the worker exits", async () => {
    setup();
    host.register("echo", (d) => d);
    const w = start("echo", { data: 1 });
    const reasons: string[] = [];
    w.session.onClose((e) => reasons.push(`first registered: ${e.name}`));
    w.session.onClose((e) => reasons.push(`last registered: ${e.name}`));
    const removed = w.session.onClose(() => reasons.push("removed"));
    removed();
    await w.result;
    await w.exited;
    await w.session.closed;
    expect(reasons).toEqual(["last registered: DisconnectedError", "first registered: DisconnectedError"]);
    expect(w.session.reason?.message).toBe('worker "echo" went away');
  });

  it("wakes a worker blocked in sync with DisconnectedError when the loop closes its session", async () => {
    setup();
    const started = deferred<void>();
    const hang = deferred<void>();
    host.register("hang", () => {
      started.resolve();
      return hang.promise;
    });
    const w = start("blockUntilClosed");
    await started.promise; // the worker is now blocked in sync("hang")
    await w.session.close();
    const r = await w.result;
    expect(r.value.error).toMatchObject({ name: "DisconnectedError", code: "MP_ERR_DISCONNECTED" });
    expect(r.value.isClosed).toBe(true);
    hang.resolve(); // the late reply is dropped: the session is closed
  });

  it("interrupt() is the shared cancel flag: the blocked wait throws CanceledError, later waits work", async () => {
    setup();
    const started = deferred<void>();
    const hang = deferred<void>();
    host.register("hang", () => {
      started.resolve();
      return hang.promise;
    });
    host.register("echo", (d) => d);
    const w = start("interrupted");
    await started.promise; // the worker is blocked in sync("hang")
    w.session.interrupt();
    const r = await w.result;
    expect(r.value.first).toMatchObject({ name: "CanceledError", code: "MP_ERR_CANCELED", message: 'WorkerLoop.sync("hang"): interrupted by the loop' });
    expect(r.value.second).toBe("a later wait is not interrupted");
    hang.resolve(); // its reply finds no waiter and is dropped
  });

  it("closes the session when a worker blocked in sync is terminated", async () => {
    setup();
    const started = deferred<void>();
    const hang = deferred<void>();
    host.register("hang", () => {
      started.resolve();
      return hang.promise;
    });
    const w = start("blockForever");
    const cleanup = deferred<string>();
    w.session.onClose((e) => cleanup.resolve(e.message));
    await started.promise;
    await w.worker.terminate();
    expect(await cleanup.promise).toBe('worker "blockForever" went away');
    hang.resolve();
  });

  it("WorkerLoop.close() detaches: the loop disposes the session, later posts throw", async () => {
    setup();
    host.register("echo", (d) => d);
    host.register("append", () => {});
    const w = start("detach");
    const r = await w.result;
    expect(r.value).toMatchObject({ name: "DisconnectedError" });
    await w.session.closed;
    expect(w.session.reason?.message).toBe('worker "detach" detached');
  });

  it("host.close() closes open sessions and refuses new handles", async () => {
    setup();
    const h = host.handle();
    expect(host.sessions.size).toBe(1);
    expect(loop.refs).toBe(1);
    await host.close();
    expect(host.sessions.size).toBe(0);
    expect(() => host.handle()).toThrow(/is closed/);
    h.port.close();
  });
});

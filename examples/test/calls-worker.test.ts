// Per-call options and errors on a worker thread (issue 15): a worker-side call canceled through
// the bridge cancels the loop's call (the server's ctx.signal fires); a call made after the
// connection is gone rejects with the same class, message, code and cause on the loop thread and
// on a worker. The worker is fixtures/calls-worker.mjs; events are ordered by messages.
import { Worker } from "node:worker_threads";
import { CanceledError, DisconnectedError, deferred, memoryTransportPair } from "@multiprocess-ts/capnp";
import { Connection, EventLoop, IpcCalledAfterDisconnectError, serveTransport, type CallContext } from "@multiprocess-ts/runtime";
import { attachWorkers, loopHandleTransferList } from "@multiprocess-ts/node";
import { type FooInterface, FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { describe, expect, it } from "vitest";

interface Msg {
  op: string;
  value?: number;
  error?: { name: string; message: string; code: string; kind: string; cause?: { name: string; code: string; kind: string } };
}

/** Messages from a worker, awaited by op in arrival order. */
function inbox(worker: Worker): (op: string) => Promise<Msg> {
  const queued: Msg[] = [];
  const waiting: { op: string; resolve: (m: Msg) => void }[] = [];
  worker.on("message", (m: Msg) => {
    const i = waiting.findIndex((w) => w.op === m.op);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(m);
    else queued.push(m);
  });
  return (op) => {
    const i = queued.findIndex((m) => m.op === op);
    if (i >= 0) return Promise.resolve(queued.splice(i, 1)[0]!);
    return new Promise((resolve) => waiting.push({ op, resolve }));
  };
}

function describeError(e: unknown): Msg["error"] {
  const x = e as { name: string; message: string; code: string; kind: string; cause?: { name: string; code: string; kind: string } };
  return {
    name: x.name,
    message: x.message,
    code: x.code,
    kind: x.kind,
    cause: x.cause === undefined ? undefined : { name: x.cause.name, code: x.cause.code, kind: x.cause.kind },
  };
}

async function setup() {
  const errors: string[] = [];
  const log = (level: string, msg: string): void => {
    if (level === "error") errors.push(msg);
  };
  const serverLoop = new EventLoop("w-server", { log: { logFn: log, level: "warning" } });
  const loop = new EventLoop("w-loop", { log: { logFn: log, level: "warning" } });
  const started = deferred<AbortSignal>();
  const abortedOnServer = deferred<unknown>();
  const impl: Partial<FooInterface> = {
    add(a: number, b: number, ctx?: CallContext): number | Promise<number> {
      if (a === 0) return a + b;
      const signal = ctx!.signal;
      started.resolve(signal);
      return new Promise<number>((_resolve, reject) =>
        signal.addEventListener("abort", () => {
          abortedOnServer.resolve(signal.reason);
          reject(signal.reason);
        }),
      );
    },
  };
  const [ct, st] = memoryTransportPair();
  const serverConn = serveTransport(serverLoop, st, impl as FooInterface, FooInterfaceServer);
  serverConn.onDisconnect(() => void serverConn.close());
  const clientConn = new Connection(loop, ct);
  const foo = new FooInterfaceClient(clientConn.rpc.bootstrap(), clientConn, { destroyConnection: true });
  const workers = attachWorkers(loop);
  const unshare = workers.share("foo", foo);
  const handle = workers.handle({ name: "calls-worker" });
  const worker = new Worker(new URL("./fixtures/calls-worker.mjs", import.meta.url), {
    workerData: { handle },
    transferList: loopHandleTransferList(handle),
  });
  const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
  const next = inbox(worker);
  await next("ready");
  return {
    serverLoop, loop, serverConn, clientConn, foo, worker, next, started, abortedOnServer, errors,
    async finish(): Promise<void> {
      worker.postMessage({ op: "close" });
      expect(await exited).toBe(0);
      unshare();
      await foo.close();
      await serverConn.close();
      await Promise.all([serverLoop.done, loop.done]);
      // Leak check: RPC tables empty, loops unreferenced and idle, no error logs.
      for (const c of [serverConn, clientConn]) {
        expect(c.rpc.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
      }
      for (const l of [serverLoop, loop]) {
        expect(l.numRefs).toBe(0);
        expect(l.pendingWork).toBe(0);
      }
      expect(errors).toEqual([]);
    },
  };
}

describe("calls from a worker thread", () => {
  it("a worker-side abort rejects the worker's call with CanceledError and fires the server's ctx.signal", async () => {
    const t = await setup();
    t.worker.postMessage({ op: "call", a: 1, b: 2 });
    await t.next("sent");
    const signal = await t.started.promise;
    expect(signal.aborted).toBe(false);
    t.worker.postMessage({ op: "abort" });
    const r = await t.next("result");
    expect(r.error).toMatchObject({ name: "CanceledError", code: "MP_ERR_CANCELED" });
    expect(await t.abortedOnServer.promise).toBeInstanceOf(CanceledError);
    // The worker's client still works.
    t.worker.postMessage({ op: "call", a: 0, b: 4 });
    expect((await t.next("result")).value).toBe(4);
    await t.finish();
  });

  it("a call after the connection is gone: same class, message, code and cause on the loop thread and on a worker", async () => {
    const t = await setup();
    await t.serverConn.close();
    await t.clientConn.disconnected;
    const onLoop = await t.foo.add(0, 1).then(() => undefined, (e: unknown) => e);
    expect(onLoop).toBeInstanceOf(IpcCalledAfterDisconnectError);
    expect((onLoop as Error).cause).toBeInstanceOf(DisconnectedError);
    t.worker.postMessage({ op: "call", a: 0, b: 1 });
    const r = await t.next("result");
    const expected = {
      name: "IpcCalledAfterDisconnectError",
      message: "IPC client method called after disconnect.",
      code: "MP_ERR_CALLED_AFTER_DISCONNECT",
      kind: "disconnected",
      cause: { name: "DisconnectedError", code: "MP_ERR_DISCONNECTED", kind: "disconnected" },
    };
    expect(describeError(onLoop)).toEqual(expected);
    expect(r.error).toEqual(expected);
    await t.finish();
  });
});

// Per-call options and errors on a worker thread (issue 15): a worker-side call canceled through
// the bridge cancels the loop's call (the server's ctx.signal fires); a call made after the
// connection is gone rejects with the same class, message, code and cause on the loop thread and
// on a worker. The worker is fixtures/calls-worker.mjs; events are ordered by messages.
import { CanceledError, DisconnectedError, deferred } from "@multiprocess-ts/capnp";
import { IpcCalledAfterDisconnectError, type CallContext } from "@multiprocess-ts/runtime";
import type { FooInterface } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { describe, expect, it } from "vitest";
import { startFooWorker } from "./support/foo-worker.js";

interface Msg {
  op: string;
  value?: number;
  error?: { name: string; message: string; code: string; kind: string; cause?: { name: string; code: string; kind: string } };
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
  const t = await startFooWorker<Msg>({ name: "calls-worker", fixture: new URL("./fixtures/calls-worker.mjs", import.meta.url), impl });
  return { ...t, started, abortedOnServer };
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

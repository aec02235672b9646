// The same error class, message, code and cause for the same situation on every thread (issue 15):
// each row of fixtures/error-rows.mjs runs on the loop thread and on a worker thread
// (fixtures/errors-worker.mjs) against one server, and the two errors must describe the same
// (plus what each row must be). Events are ordered by messages and the server's own hooks.
import { deferred, type Capability } from "@multiprocess-ts/capnp";
import type { CallContext } from "@multiprocess-ts/runtime";
import { type FooInterface, FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { describe, expect, it } from "vitest";
import { startFooWorker } from "./support/foo-worker.js";
import { ROWS, describeError, type RowEnv } from "./fixtures/error-rows.mjs";

interface Msg {
  op: string;
  value?: unknown;
  error?: Record<string, unknown>;
}

const dupCap = (c: FooInterfaceClient): Capability => (c as unknown as { $dupCap(): Capability }).$dupCap();

async function setup() {
  let running = 0;
  const twoRunning = deferred<void>();
  const impl: Partial<FooInterface> = {
    initThreadMap(): void {}, // the generated server exchanges the ThreadMaps
    add(a: number, b: number, ctx?: CallContext): number | Promise<number> {
      if (a === 0) return a + b;
      if (a === 2) throw Object.assign(new TypeError("bad thing"), { code: "E_BAD" });
      if (++running === 2) twoRunning.resolve();
      const signal = ctx!.signal;
      return new Promise<number>((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
    },
  };
  const others: FooInterfaceClient[] = [];
  const t = await startFooWorker<Msg>({
    name: "errors-worker",
    fixture: new URL("./fixtures/errors-worker.mjs", import.meta.url),
    impl,
    serverLoop: { errorStacks: true },
    threadMap: true,
    beforeFinish: async () => {
      for (const c of others) await c.close();
    },
  });
  const foo = t.foo;
  const loopEnv: RowEnv = {
    foo,
    another: () => {
      const c = new FooInterfaceClient(dupCap(foo), foo.$connection);
      others.push(c);
      return Promise.resolve(c);
    },
    started: () => {},
  };
  return { ...t, loopEnv, twoRunning: twoRunning.promise };
}

type Setup = Awaited<ReturnType<typeof setup>>;

async function onLoop(t: Setup, row: string): Promise<Record<string, unknown>> {
  return ROWS[row]!(t.loopEnv).then((value) => ({ value }), (e: unknown) => describeError(e));
}

async function onWorker(t: Setup, row: string): Promise<Record<string, unknown>> {
  t.worker.postMessage({ op: "run", row });
  const r = await t.next("result");
  return r.error ?? { value: r.value };
}

const disconnected = { name: "DisconnectedError", code: "MP_ERR_DISCONNECTED" };

/** What each row must produce (on both threads). */
const EXPECTED: Record<string, Record<string, unknown>> = {
  canceled: { name: "CanceledError", message: "IPC client method call canceled.", code: "MP_ERR_CANCELED", kind: "failed", cause: { name: "Error", message: "stop" } },
  signalTimeout: { name: "TimeoutError", message: "IPC client method call timed out.", code: "MP_ERR_TIMEOUT", timeout: undefined, cause: { name: "TimeoutError" } },
  timeout: { name: "TimeoutError", message: "IPC client method call timed out after 1 ms.", code: "MP_ERR_TIMEOUT", timeout: 1, cause: undefined },
  badTimeout: { name: "RangeError", code: undefined, cause: undefined },
  remote: { name: "RemoteError [TypeError]", message: "bad thing", code: "E_BAD", kind: "failed", remoteName: "TypeError", hasRemoteStack: true },
  noPool: { name: "RemoteError [ThreadSelectionError]", code: "MP_ERR_NO_THREAD", kind: "failed", remoteName: "ThreadSelectionError" },
  closed: { name: "IpcClientClosedError", message: "IPC client method called after close.", code: "MP_ERR_CLIENT_CLOSED" },
  afterDisconnect: { name: "IpcCalledAfterDisconnectError", message: "IPC client method called after disconnect.", code: "MP_ERR_CALLED_AFTER_DISCONNECT", kind: "disconnected", cause: expect.objectContaining(disconnected) },
  interrupted: { name: "IpcInterruptedError", message: "IPC client method call interrupted by disconnect.", code: "MP_ERR_INTERRUPTED_BY_DISCONNECT", kind: "disconnected", cause: expect.objectContaining(disconnected) },
};

describe("the same error on the loop thread and on a worker thread", () => {
  it("covers every row", () => {
    expect(Object.keys(EXPECTED).sort()).toEqual(Object.keys(ROWS).sort());
  });

  it.each(Object.keys(ROWS).filter((r) => r !== "afterDisconnect" && r !== "interrupted"))("%s", async (row) => {
    const t = await setup();
    const loopSide = await onLoop(t, row);
    const workerSide = await onWorker(t, row);
    expect(loopSide).toMatchObject(EXPECTED[row]!);
    expect(workerSide).toEqual(loopSide);
    await t.finish();
  });

  it("afterDisconnect", async () => {
    const t = await setup();
    await t.serverConn.close();
    await t.clientConn.disconnected;
    const loopSide = await onLoop(t, "afterDisconnect");
    const workerSide = await onWorker(t, "afterDisconnect");
    expect(loopSide).toMatchObject(EXPECTED.afterDisconnect!);
    expect(workerSide).toEqual(loopSide);
    await t.finish();
  });

  it("interrupted", async () => {
    const t = await setup();
    // Both calls in flight (the server is running both), then the connection ends.
    const loopSide = onLoop(t, "interrupted");
    const workerSide = onWorker(t, "interrupted");
    await t.twoRunning;
    await t.serverConn.close();
    expect(await loopSide).toMatchObject(EXPECTED.interrupted!);
    expect(await workerSide).toEqual(await loopSide);
    await t.finish();
  });
});

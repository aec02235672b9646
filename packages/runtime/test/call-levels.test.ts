// Generated calls end alike at every log level (issue 13, ninth session): the client reads
// whether to trace, and the server whether to write a debug line per call, once per proxy (the
// loop's level is fixed when it is made) instead of asking the loop on every call. Each scenario
// runs at "warning" (neither), "debug" (the server's per-call line) and "trace" (the client names
// its methods for the engine's trace lines), with and without call options, and must end the same:
// results, errors (class, message, the caller's stack), what reached the server, what was released.
// Threading: loop thread (the test's thread).
import { RemoteError } from "@multiprocess-ts/capnp";
import {
  CanceledError,
  IntRangeError,
  IpcCalledAfterDisconnectError,
  IpcClientClosedError,
  setCallDefaults,
  type LogLevel,
} from "@multiprocess-ts/runtime";
import { FooCallbackClient, type FooCallback } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { describe, expect, it } from "vitest";
import { FooImpl, InitImpl, fooSetup, initSetup } from "./fixtures.js";

const LEVELS: LogLevel[] = ["warning", "debug", "trace"];

/** What a call ended with, comparable across paths. */
async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await p };
  } catch (e) {
    const err = e as Error;
    return { err: err.constructor.name, message: err.message, remote: e instanceof RemoteError };
  }
}

describe.each(LEVELS)("generated calls at log level %s", (level) => {
  it("return results; an out-of-range param rejects with IntRangeError before anything is sent", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: level });
    expect(await p.client.add(2, 3)).toBe(5);
    const sent = p.clientTransport.wireLog.length;
    const bad = p.client.add(2 ** 31, 1);
    await expect(bad).rejects.toBeInstanceOf(IntRangeError);
    await expect(bad).rejects.toThrow("value 2147483648 out of range for Int32");
    expect(await p.client.add(-4, 1)).toBe(-3);
    expect(impl.calls).toEqual(["add(2,3)", "add(-4,1)"]);
    // The rejected call sent nothing: one Call (the last good one) went out after the first.
    expect(p.clientTransport.wireLog.slice(sent).filter((m) => m.which === "call").length).toBe(1);
  });

  it("map the implementation's throw and rejection to the same RemoteError, with the caller's frames in its stack", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: level });
    // The implementation may be sync or async (FooInterface's `number | Promise<number>`).
    const setAdd = (f: (a: number, b: number) => number | Promise<number>): void => {
      (impl as unknown as { add: typeof f }).add = f;
    };
    setAdd(() => {
      throw new Error("sync boom");
    });
    const sync = p.client.add(1, 1);
    expect(await outcome(sync)).toEqual({ err: "RemoteError", message: expect.stringContaining("sync boom"), remote: true });
    setAdd(async () => {
      throw new TypeError("async boom");
    });
    const callerFrame = async (): Promise<void> => {
      await p.client.add(1, 1);
    };
    const e = (await callerFrame().catch((x: unknown) => x)) as Error;
    expect(e).toBeInstanceOf(RemoteError);
    expect(e.message).toContain("async boom");
    expect(e.stack).toContain("callerFrame");
    setAdd(async (a: number, b: number) => a * b);
    expect(await p.client.add(6, 7)).toBe(42);
    // A result out of its field's range is the server's error (results are checked on write).
    setAdd(() => 2 ** 40);
    expect(await outcome(p.client.add(0, 0))).toEqual({ err: "RemoteError", message: expect.stringContaining("out of range for Int32"), remote: true });
  });

  it("reject on a closed or disconnected client; options and defaults still apply", async () => {
    const impl = new FooImpl();
    {
      await using p = await fooSetup(impl, { logLevel: level });
      // Call options take the general path whatever the level.
      const ctl = new AbortController();
      ctl.abort();
      await expect(p.client.add(1, 2, { signal: ctl.signal })).rejects.toBeInstanceOf(CanceledError);
      await expect(p.client.add(1, 2, { timeout: -1 })).rejects.toBeInstanceOf(RangeError);
      expect(await p.client.add(1, 2, { timeout: 10_000 })).toBe(3);
      setCallDefaults(p.client, { signal: ctl.signal });
      await expect(p.client.add(1, 2)).rejects.toBeInstanceOf(CanceledError);
      setCallDefaults(p.client, undefined);
      expect(await p.client.add(1, 2)).toBe(3);
      await p.connections.server.close();
      await expect(p.client.add(1, 2)).rejects.toBeInstanceOf(IpcCalledAfterDisconnectError);
    }
    expect(impl.calls).toEqual(["add(1,2)", "add(1,2)"]);
    const init = new InitImpl();
    {
      await using p = await initSetup(init, { logLevel: level });
      const foo = await p.client.makeFoo();
      expect(await foo.add(2, 2)).toBe(4);
      await foo.close();
      await expect(foo.add(1, 2)).rejects.toBeInstanceOf(IpcClientClosedError);
    }
    expect(init.foos[0]!.calls).toEqual(["add(2,2)"]);
  });

  it("pass capabilities both ways and release them (the server's CallIO holds, then lets go)", async () => {
    const impl = new FooImpl();
    await using p = await fooSetup(impl, { logLevel: level });
    await p.client.initThreadMap();
    let disposed = 0;
    const cb: FooCallback & Disposable = {
      call: (n: number) => n + 100,
      [Symbol.dispose]: () => {
        disposed++;
      },
    };
    impl.callback = async (client: FooCallback | null, arg: number) => {
      try {
        return await client!.call(arg);
      } finally {
        await (client as FooCallbackClient).close();
      }
    };
    expect(await p.client.callback(cb, 1)).toBe(101);
    expect(disposed).toBe(1);
  });
});

describe("per-call log lines follow the level the loop was made with", () => {
  it.each(LEVELS)("at %s", async (level) => {
    const lines: string[] = [];
    await using p = await fooSetup(new FooImpl(), { logLevel: level, log: (l) => lines.push(l) });
    expect(await p.client.add(1, 1)).toBe(2);
    const recv = lines.filter((l) => l.includes("IPC server recv add"));
    expect(recv.length).toBe(level === "debug" ? 1 : 0);
    if (level === "trace") expect(lines.some((l) => l.includes("-> call") && l.includes(".add (a = 1, b = 1)"))).toBe(true);
  });
});

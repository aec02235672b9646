// Readable trace (docs/usage.md, "Tracing"): one named line per call and return with params /
// results in capnp text form and the exception text; the connection name appears once per line;
// MPTS_TRACE=1 / DEBUG=multiprocess-ts:* switch it on for loops created without a `log` option.
import { describe, expect, it } from "vitest";
import { EventLoop } from "@multiprocess-ts/runtime";
import { assertNoLeaks, createFooSetup } from "@multiprocess-ts/testing";

describe("trace", () => {
  it("names Interface.method, prints params/results as capnp text and the exception text", async () => {
    const lines: string[] = [];
    const s = await createFooSetup({ logLevel: "trace", log: (l) => lines.push(l) });
    lines.length = 0;
    expect(await s.client.add(1, 2)).toBe(3);
    s.impl.fn = () => {
      throw new TypeError("bad thing");
    };
    await expect(s.client.callFn()).rejects.toThrow("bad thing");
    const trace = lines.filter((l) => l.includes("] trace: ")).map((l) => l.replace(/\{[^}]*\} /, ""));
    expect(trace).toContain("[client] trace: IPC client send FooInterface.add (a = 1, b = 2)");
    expect(trace).toContain("[server] trace: IPC server recv FooInterface.add (a = 1, b = 2)");
    expect(trace).toContain("[server] trace: IPC server send FooInterface.add (result = 3)");
    expect(trace).toContain("[client] trace: IPC client recv FooInterface.add (result = 3)");
    expect(trace.some((l) => /^\[server\] trace: connection#\d+: -> return a\d+ exception: TypeError: bad thing$/.test(l))).toBe(true);
    expect(trace.some((l) => /^\[client\] trace: connection#\d+: <- return q\d+ exception: TypeError: bad thing$/.test(l))).toBe(true);
    expect(trace).toContain("[client] trace: IPC client recv FooInterface.callFn threw RemoteError [TypeError]: bad thing");
    // The connection name is not repeated.
    expect(lines.filter((l) => /(connection#\d+): \1:/.test(l))).toEqual([]);
    await s.dispose();
    assertNoLeaks(s);
  });

  it("MPTS_TRACE=1 and DEBUG=multiprocess-ts:* log trace lines to stderr; off otherwise", () => {
    const saved = { t: process.env["MPTS_TRACE"], d: process.env["DEBUG"] };
    const written: string[] = [];
    const loops: EventLoop[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      delete process.env["DEBUG"];
      process.env["MPTS_TRACE"] = "1";
      const a = new EventLoop("traced");
      loops.push(a);
      expect(a.logEnabled("trace")).toBe(true);
      a.log("trace", "hello");
      delete process.env["MPTS_TRACE"];
      process.env["DEBUG"] = "other,multiprocess-ts:*";
      expect(new EventLoop("debugged").logEnabled("trace")).toBe(true);
      process.env["DEBUG"] = "other";
      expect(new EventLoop("quiet").logEnabled("trace")).toBe(false);
      // An explicit log option wins over the environment.
      process.env["MPTS_TRACE"] = "1";
      expect(new EventLoop("explicit", { log: { level: "info", logFn: () => {} } }).logEnabled("trace")).toBe(false);
    } finally {
      process.stderr.write = write;
      if (saved.t === undefined) delete process.env["MPTS_TRACE"];
      else process.env["MPTS_TRACE"] = saved.t;
      if (saved.d === undefined) delete process.env["DEBUG"];
      else process.env["DEBUG"] = saved.d;
    }
    expect(written).toHaveLength(1);
    expect(written[0]).toMatch(/^multiprocess-ts \{.*\/traced\} hello\n$/);
    // Leak check: the loops never took a reference or queued work.
    expect(loops.map((l) => [l.numRefs, l.pendingWork])).toEqual([[0, 0]]);
  });
});

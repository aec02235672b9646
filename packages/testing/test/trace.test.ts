// Readable trace (docs/usage.md, "Tracing"): one named line per call and return with params /
// results in capnp text form and the exception text; the connection name appears once per line;
// MPTS_TRACE=1 / DEBUG=multiprocess-ts:* switch it on for loops created without a `log` option.
import { describe, expect, it } from "vitest";
import { EventLoop } from "@multiprocess-ts/runtime";
import { assertNoLeaks, createFooSetup } from "@multiprocess-ts/testing";

describe("trace", () => {
  it("one line per message: connection, direction, question id, Interface.method, capnp text, <cap>, exception text", async () => {
    const lines: string[] = [];
    const s = await createFooSetup({ logLevel: "trace", log: (l) => lines.push(l) });
    await s.client.initThreadMap(); // Context calls need the ThreadMaps exchanged
    lines.length = 0;
    expect(await s.client.add(1, 2)).toBe(3);
    s.impl.fn = () => {
      throw new TypeError("bad thing");
    };
    await expect(s.client.callFn()).rejects.toThrow("bad thing");
    await s.client.saveCallback({ call: (n: number) => n });
    const trace = lines
      .filter((l) => l.includes("] trace: "))
      .map((l) => l.replace(/\{[^}]*\} /, "").replace(/connection#\d+/, "conn").replace(/ [qa]\d+ /, " q# ").replace(/process-\d+\//, ""));
    const calls = trace.filter((l) => / (->|<-) (call|return) /.test(l));
    expect(calls).toEqual([
      "[client] trace: conn: -> call q# FooInterface.add (a = 1, b = 2)",
      "[server] trace: conn: <- call q# FooInterface.add (a = 1, b = 2)",
      "[server] trace: conn: -> return q# FooInterface.add (result = 3)",
      "[client] trace: conn: <- return q# FooInterface.add (result = 3)",
      "[client] trace: conn: -> call q# FooInterface.callFn ()",
      "[server] trace: conn: <- call q# FooInterface.callFn ()",
      "[server] trace: conn: -> return q# FooInterface.callFn exception: TypeError: bad thing",
      "[client] trace: conn: <- return q# FooInterface.callFn exception: TypeError: bad thing",
      // The first Context call from this thread asks the server for its Thread (pipelined).
      '[client] trace: conn: -> call q# ThreadMap.makeThread (name = "test-client")',
      "[client] trace: conn: -> call q# FooInterface.saveCallback (context = (<cap>, <cap>), <cap>)",
      '[server] trace: conn: <- call q# ThreadMap.makeThread (name = "test-client")',
      "[server] trace: conn: <- call q# FooInterface.saveCallback (context = (<cap>, <cap>), <cap>)",
      "[server] trace: conn: -> return q# ThreadMap.makeThread (<cap>)",
      "[client] trace: conn: <- return q# ThreadMap.makeThread (<cap>)",
      "[server] trace: conn: -> return q# FooInterface.saveCallback ()",
      "[client] trace: conn: <- return q# FooInterface.saveCallback ()",
    ]);
    // No second (runtime) line per call, and the connection name is never repeated.
    expect(trace.filter((l) => l.includes("IPC "))).toEqual([]);
    expect(lines.filter((l) => /(connection#\d+): \1:/.test(l))).toEqual([]);
    await s.dispose();
    assertNoLeaks(s);
  });

  it("params / results text is cut at the loop's maxChars", async () => {
    const lines: string[] = [];
    const s = await createFooSetup({ logLevel: "trace", log: (l) => lines.push(l) });
    lines.length = 0;
    const long = "x".repeat(500);
    expect(await s.client.passData(new TextEncoder().encode(long))).toHaveLength(500);
    const call = lines.find((l) => l.includes("-> call") && l.includes("FooInterface.passData"));
    expect(call).toMatch(/FooInterface\.passData \(arg = 0x"7878[78]*\.\.\. \(\d+ more chars\)$/);
    expect(call!.slice(call!.indexOf("(arg = "), call!.indexOf("..."))).toHaveLength(200); // maxChars default
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

// Trace lines for calls a worker thread makes (docs/usage.md, "Tracing"): the loop relays them
// and its trace names them `FooInterface.add` like its own calls, not by interface and method
// id, although the loop thread never used that method itself. The worker
// (fixtures/calls-worker.mjs) sends each method's name ahead of its first call, on the same port.
// Threads: the loop thread of the test; the fixture runs on its worker thread.
import type { FooInterface } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { describe, expect, it } from "vitest";
import { startFooWorker } from "./support/foo-worker.js";

describe("trace of calls relayed from a worker thread", () => {
  it("names the interface and method, as for a loop-thread call", async () => {
    const lines: string[] = [];
    const impl: Partial<FooInterface> = { add: (a, b) => a + b };
    const t = await startFooWorker<{ op: string; value?: number }>({
      name: "trace-worker", fixture: new URL("./fixtures/calls-worker.mjs", import.meta.url), impl, loopTrace: (l) => lines.push(l),
    });
    for (const [a, b] of [[0, 5], [0, 7]] as const) {
      t.worker.postMessage({ op: "call", a, b });
      await t.next("sent");
      expect((await t.next("result")).value).toBe(a + b);
    }
    await t.finish();
    const calls = lines.filter((l) => / (->|<-) (call|return) /.test(l)).map((l) => l.replace(/^.*?: /, "").replace(/ [qa]\d+ /, " q# "));
    expect(calls.filter((l) => l.includes("add"))).toEqual([
      "-> call q# FooInterface.add",
      "<- return q# FooInterface.add",
      "-> call q# FooInterface.add",
      "<- return q# FooInterface.add",
    ]);
    // No call on this loop is shown by ids (`interfaceId/methodId`).
    expect(calls.filter((l) => /[0-9a-f]{8,}\/\d+/.test(l))).toEqual([]);
  });
});

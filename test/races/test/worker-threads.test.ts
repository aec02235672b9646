// Thread mapping with worker_threads: workers attached to a client loop call a FooInterface
// server through it. Each worker gets its own server Thread per Connection (makeThread, once),
// its own callback Thread, and callbacks the server makes run on the worker that passed them,
// also while that worker is blocked in callSync (recursion).
// Threading: loop thread (the test's thread); workers run dist/workers/foo-worker.js.
import { threadId as mainThreadId } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { createWorkerSetup } from "../dist/index.js";

describe("worker requests to the EventLoop", () => {
  it("runs post/sync on handlers registered with loop.handle, FIFO; closures are a clear error", async () => {
    await using t = await createWorkerSetup();
    const notes: unknown[] = [];
    const h1 = t.clientLoop.handle("note", (d) => void notes.push(d));
    const h2 = t.clientLoop.handle("double", (d) => {
      notes.push("double");
      return (d as number) * 2;
    });
    const r = await t.start("loopHandlers").done;
    expect(r.value.doubled).toBe(42);
    expect(notes).toEqual([{ from: "loopHandlers", n: 1 }, "double"]);
    expect(r.value.closure).toMatchObject({ isTypeError: true });
    expect(r.value.closure.message).toMatch(/^WorkerLoop\.post\("note"\): cannot send a function \(at data\.callback\)/);
    h1[Symbol.dispose]();
    h2[Symbol.dispose]();
  });
});

describe("worker thread mapping", () => {
  it("runs each worker's calls on its own server thread, made once per worker and connection", async () => {
    await using t = await createWorkerSetup();
    let makeThreads = 0;
    t.serverLoop.hooks.makeThread = () => void makeThreads++;
    const a = t.start("threadNames");
    const b = t.start("threadNames");
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra).toMatchObject({ ok: true });
    expect(rb).toMatchObject({ ok: true });
    const [a1, a2, sumA] = ra.value;
    const [b1, b2] = rb.value;
    expect(sumA).toBe(3); // a context-less call works too
    expect(a1).toBe(a2); // the same server thread for both calls of one worker
    expect(b1).toBe(b2);
    expect(a1).not.toBe(b1); // ...and a different one per worker
    expect(a1).toMatch(/\(from .*\/threadNames\)$/); // made for the worker's name
    expect(makeThreads).toBe(2); // once per (worker, connection)
    const loopOwn = await t.client.threadName(); // the loop thread has its own, too
    expect(loopOwn).not.toBe(a1);
    expect(loopOwn).not.toBe(b1);
  });

  it("delivers each worker's calls in the order it made them, on its own thread", async () => {
    await using t = await createWorkerSetup();
    const n = 40;
    const [ra, rb] = await Promise.all([t.start("ordered", { n }).done, t.start("ordered", { n }).done]);
    const seq = Array.from({ length: n }, (_, i) => i);
    expect(ra.value).toEqual(seq);
    expect(rb.value).toEqual(seq);
    // Server side: per server thread, the arguments arrived in order.
    const byThread = new Map<string, number[]>();
    for (const line of t.impl.log) {
      const m = /^callIntFnAsync\((\d+)\) on (.*)$/.exec(line)!;
      byThread.set(m[2]!, [...(byThread.get(m[2]!) ?? []), Number(m[1])]);
    }
    expect([...byThread.values()]).toEqual([seq, seq]);
  });

  it("releases a worker's server Thread when the worker exits, while the Connection stays open", async () => {
    await using t = await createWorkerSetup();
    const baseline = t.connections.server.threads.size;
    const w = t.start("callsThenCommand");
    const { name } = await w.ready;
    expect(t.connections.server.threads.size).toBe(baseline + 1);
    expect([...t.connections.server.threads].map((th) => th.name)).toContain(name);
    w.send("exit");
    await w.exited;
    await w.session.closed; // its ThreadContext closed: the Thread capability was released
    // Release and the next call travel the same Connection in order: once this call returns, the
    // server has processed the Release.
    expect(await t.client.add(1, 1)).toBe(2);
    expect(t.connections.server.threads.size).toBe(baseline);
    expect(t.connections.client.state).toBe("open");
  });

  it("runs callbacks on the worker that passed them; nested calls go back to the waiting server thread", async () => {
    await using t = await createWorkerSetup();
    const w = t.start("callbackRecursion");
    const r = await w.done;
    expect(r).toMatchObject({ ok: true });
    expect(r.value.outer).toBe(42);
    expect(r.value.threadId).not.toBe(mainThreadId);
    const serverThread = t.impl.log[0]!.replace(/^callback\(21\) on /, "");
    expect(r.value.log).toEqual([
      `callback(21) on worker thread ${r.value.threadId}`,
      `nested call ran on ${serverThread}`, // the server thread waiting for the callback
    ]);
  });

  it("runs the callback and its nested call while the worker is blocked in callSync", async () => {
    await using t = await createWorkerSetup();
    const w = t.start("callbackRecursionBlocked");
    const r = await w.done;
    expect(r).toMatchObject({ ok: true });
    const serverThread = t.impl.log[0]!.replace(/^callback\(5\) on /, "");
    expect(r.value.log).toEqual([
      `callback(5) on worker thread ${r.value.threadId}, blocked waits: 1`,
      `nested call ran on ${serverThread}`,
      "callSync returned 10",
    ]);
  });
});

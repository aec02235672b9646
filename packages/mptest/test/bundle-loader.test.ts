// The worker bundle loader (CodeCachedBundle, src/bundle-loader.ts) with real worker threads
// running the scenarios' worker entry: a thread started without a code cache compiles the bundle
// and can hand out a cache of its compiled code; V8 accepts that cache in the threads started after
// it; a cache V8 rejects only costs the compile. Each test ends every thread it started and checks
// no handle is left open.
import type { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { CodeCachedBundle, fooWorkerEntry } from "@multiprocess-ts/mptest";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";

type Event = { ev: string; [k: string]: unknown };

/** Sends `op` to `w` and resolves with its next event `ev`; rejects on an "error" event, an error or an exit. */
function ask(w: Worker, op: { op: string }, ev: string): Promise<Event> {
  return new Promise((resolve, reject) => {
    const off = (): void => {
      w.off("message", onMessage);
      w.off("error", onError);
      w.off("exit", onExit);
    };
    const onMessage = (e: Event): void => {
      if (e.ev !== ev && e.ev !== "error") return;
      off();
      if (e.ev === "error") reject(new Error(`worker reported: ${String(e.message)}`));
      else resolve(e);
    };
    const onError = (e: Error): void => {
      off();
      reject(e);
    };
    const onExit = (code: number): void => {
      off();
      reject(new Error(`worker exited (code ${code}) before "${ev}"`));
    };
    w.on("message", onMessage);
    w.on("error", onError);
    w.on("exit", onExit);
    w.postMessage(op);
  });
}

/** The worker is idle and detached (what "state" reports before any attach). */
async function expectIdle(w: Worker): Promise<void> {
  const { state } = (await ask(w, { op: "state" }, "state")) as Event & { state: { attached: boolean; extraResources: string[] } };
  expect(state.attached).toBe(false);
  expect(state.extraResources).toEqual([]);
}

/** Runs `fn` with a list it adds its workers to; terminates them all and checks the handles after. */
async function withWorkers(fn: (started: Worker[]) => Promise<void>): Promise<void> {
  const baseline = handleBaseline();
  const started: Worker[] = [];
  try {
    await fn(started);
  } finally {
    await Promise.all(started.map((w) => w.terminate()));
  }
  await assertNoHandleLeaks(baseline);
}

describe("CodeCachedBundle", () => {
  it("threads started after one made a code cache compile the bundle from it, and V8 accepts it", () =>
    withWorkers(async (started) => {
      const bundle = new CodeCachedBundle(fooWorkerEntry);
      expect(bundle.hasCodeCache).toBe(false);
      const first = bundle.start();
      started.push(first);
      expect((await ask(first, { op: "loaded" }, "loaded")).codeCache).toBe("none");
      const { data } = (await ask(first, { op: "codeCache" }, "codeCache")) as Event & { data: Uint8Array };
      expect(data).toBeInstanceOf(Uint8Array);
      bundle.adoptCodeCache(data);
      expect(bundle.hasCodeCache).toBe(true);
      expect(bundle.codeCacheBytes).toBe(data.byteLength);
      for (let i = 0; i < 2; i++) {
        const w = bundle.start();
        started.push(w);
        expect((await ask(w, { op: "loaded" }, "loaded")).codeCache).toBe("accepted");
        await expectIdle(w);
      }
    }));

  it("a code cache V8 rejects only costs the compile: the thread runs the bundle and reports it", () =>
    withWorkers(async (started) => {
      const bundle = new CodeCachedBundle(fooWorkerEntry);
      bundle.adoptCodeCache(new Uint8Array(4096).fill(0x5a));
      const w = bundle.start();
      started.push(w);
      expect((await ask(w, { op: "loaded" }, "loaded")).codeCache).toBe("rejected");
      await expectIdle(w);
    }));

  it("keeps the first code cache it is given and refuses an empty one", () =>
    withWorkers(async () => {
      const bundle = new CodeCachedBundle(fooWorkerEntry);
      expect(() => bundle.adoptCodeCache(new Uint8Array(0))).toThrow(TypeError);
      bundle.adoptCodeCache(new Uint8Array(8).fill(1));
      bundle.adoptCodeCache(new Uint8Array(16).fill(2));
      expect(bundle.codeCacheBytes).toBe(8);
      await Promise.resolve();
    }));
});

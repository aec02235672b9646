/**
 * The capability lifetime scenario (story and checks: lifetime-story.ts), run on the lifetime
 * thread: one long-lived worker thread, started at the first iteration and kept for the next ones,
 * that runs the story per iteration (lifetime-thread.ts) and reports back.
 *
 * Why a thread of its own: each iteration needs a real full GC, and a full GC costs CPU in
 * proportion to the live heap it marks. A --jobs shard's main thread holds every scenario's code
 * and state (12.5 MB after 30 s of the full mix: 26 ms of CPU per gc()); the lifetime thread holds
 * the fixtures' code only (7.3 MB: 13 ms, measured side by side in one process). And after a forced
 * full GC V8 optimizes much of that isolate's hot code again (`--trace-opt`: ~12 TurboFan jobs per
 * iteration in steady state): on the main thread, every other scenario warmed up again after each
 * iteration of this one ("Call FooInterface methods" next to it: 51 ms of CPU per iteration, 36 of
 * them recompiling on V8's helper threads; 23.5 ms with the GC here).
 *
 * Between iterations the thread holds no reference on the main thread's event loop (unref): it
 * neither keeps the process alive nor counts in the runner's leak check; during an iteration it is
 * referenced. The thread checks its own fixtures and handles for leaks after each iteration
 * (lifetime-thread.ts); a leak there fails the iteration with the counters in its message. A
 * thread that dies is replaced at the next iteration; on a timeout (ctx.signal) it is terminated.
 *
 * Threading: main thread of the mptest process (or of a --jobs shard child); the story runs on the
 * lifetime thread.
 */

import { Worker } from "node:worker_threads";
import type { LeakProbe } from "../leaks.js";
import type { Scenario, ScenarioContext } from "../scenario.js";
import type { LifetimeReply, LifetimeRequest } from "./lifetime-thread.js";

type Done = Extract<LifetimeReply, { t: "done" }>;

interface Thread {
  worker: Worker;
  /** Settles at the thread's "ready" (its modules loaded), or rejects if it died first. */
  ready: Promise<void>;
  /** Set once the thread has exited (or failed): it is replaced at the next iteration. */
  dead?: Error;
}

let current: Thread | undefined;
let started = 0;
let iterations = 0;

function startThread(): Thread {
  const worker = new Worker(new URL("./lifetime-thread.js", import.meta.url));
  started++;
  const t: Thread = { worker, ready: Promise.resolve() };
  // Listeners for the thread's whole life: an error or exit between iterations only marks it dead.
  worker.on("error", (e) => (t.dead ??= e));
  worker.on("exit", (code) => {
    t.dead ??= new Error(`the lifetime thread exited (code ${code})`);
    if (current === t) current = undefined;
  });
  t.ready = new Promise<void>((resolve, reject) => {
    worker.once("message", (m: LifetimeReply) => (m.t === "ready" ? resolve() : reject(new Error(`lifetime thread: unexpected first message ${m.t}`))));
    worker.once("exit", () => reject(t.dead ?? new Error("the lifetime thread exited before it was ready")));
  });
  t.ready.catch(() => {}); // observed by the iteration that awaits it
  return t;
}

/** Runs one iteration of the story on the lifetime thread; throws what failed there. */
async function runOnThread(ctx: ScenarioContext, hold = false): Promise<void> {
  if (current === undefined || current.dead !== undefined) current = startThread();
  const t = current;
  t.worker.ref();
  try {
    await t.ready;
    const done = await new Promise<Done>((resolve, reject) => {
      const cleanup = (): void => {
        t.worker.off("message", onMessage);
        t.worker.off("exit", onExit);
        ctx.signal.removeEventListener("abort", onAbort);
      };
      const onMessage = (m: LifetimeReply): void => {
        if (m.t !== "done") return;
        cleanup();
        resolve(m);
      };
      const onExit = (): void => {
        cleanup();
        reject(t.dead ?? new Error("the lifetime thread exited mid-iteration"));
      };
      const onAbort = (): void => {
        cleanup();
        t.dead ??= new Error("terminated after a timeout");
        void t.worker.terminate();
        reject(ctx.signal.reason);
      };
      t.worker.on("message", onMessage);
      t.worker.on("exit", onExit);
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      t.worker.postMessage({ t: "run", seed: ctx.seed, ...(hold ? { hold } : {}) } satisfies LifetimeRequest);
    });
    iterations++;
    for (const line of done.log) ctx.log(line);
    const problems = [
      ...(done.error !== undefined ? [done.error] : []),
      ...(done.leaks !== undefined ? [`leaked on the lifetime thread (counter: baseline -> after): ${done.leaks.join(", ")}`] : []),
    ];
    if (problems.length > 0) {
      const e = new Error(problems[0]!.split("\n", 1)[0]);
      e.stack = problems.join("\n");
      throw e;
    }
  } finally {
    if (t.dead === undefined) t.worker.unref();
  }
}

/**
 * The lifetime thread's state for hang reports (in `defaultProbes`): no counters (the thread
 * checks its own), and a dump the thread writes when asked: the iteration in progress (seed, for
 * how long, the story's log), its live TestSetups (questions, answers, threads) and its handles.
 */
export const lifetimeProbe: LeakProbe = {
  name: "lifetime thread",
  snapshot: () => ({}),
  dumpAsync(): Promise<string> {
    const t = current;
    if (t === undefined || t.dead !== undefined) return Promise.resolve("not running");
    return new Promise<string>((resolve) => {
      const onMessage = (m: LifetimeReply): void => {
        if (m.t !== "dump") return;
        done();
        resolve(m.text);
      };
      const onExit = (): void => {
        done();
        resolve(`exited: ${t.dead?.message ?? "unknown"}`);
      };
      const done = (): void => {
        t.worker.off("message", onMessage);
        t.worker.off("exit", onExit);
      };
      t.worker.on("message", onMessage);
      t.worker.on("exit", onExit);
      t.worker.postMessage({ t: "dump" } satisfies LifetimeRequest);
    });
  },
};

/**
 * White-box tests only: the lifetime scenario whose iteration waits forever on the lifetime thread
 * before the story, so a test can time it out and read the hang report.
 */
export function heldLifetimeScenario(): Scenario {
  return { name: "lifetime thread held (test)", origin: "test", run: (ctx) => runOnThread(ctx, true) };
}

/** Threads started and iterations run on them (the test suite checks the thread is reused). */
export function lifetimeThreadStats(): { started: number; iterations: number } {
  return { started, iterations };
}

/** Ends the lifetime thread (end of a test run; a CLI process just exits). */
export async function closeLifetimeThread(): Promise<void> {
  const t = current;
  current = undefined;
  if (t !== undefined && t.dead === undefined) {
    t.dead = new Error("closed");
    await t.worker.terminate();
  }
}

export const lifetimeScenarios: Scenario[] = [
  {
    name: "Capability is released exactly once whichever of dispose, gc or teardown comes first",
    origin: "ours: capability lifetime",
    run: (ctx) => runOnThread(ctx),
  },
];

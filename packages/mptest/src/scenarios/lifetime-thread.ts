/**
 * Entry of the lifetime thread: the long-lived worker thread that runs the capability lifetime
 * story (lifetime-story.ts) for lifetime.ts, one iteration per request. Its heap holds the
 * fixtures' code and nothing of the other scenarios, so the full GC each iteration needs marks
 * about half of what it would on the mptest process's main thread (figures in lifetime.ts).
 *
 * Each iteration gets the same checks the runner applies on the main thread: a leak check of this
 * thread's fixture counters and handles against the baseline taken before it (leaks.ts), and the
 * errors that escape the story (unhandled rejections, exceptions from callbacks) count as
 * failures. The reply carries the failure text, the counters left above baseline and the story's
 * log; the main thread turns them into the iteration's result. Asked for a dump (the main
 * thread's hang report), it describes the iteration in progress, its live fixtures and handles.
 *
 * Threading: the lifetime thread (a worker thread), started by lifetime.ts.
 */

import { parentPort, threadId } from "node:worker_threads";
import { dumpFixtures, fixtureCounters } from "@multiprocess-ts/testing";
import { settle, takeSnapshot, type LeakProbe } from "../leaks.js";
import { createRng } from "../rng.js";
import { errorText } from "../runner.js";
import { runLifetime } from "./lifetime-story.js";

/**
 * Main thread -> lifetime thread: run one iteration with this seed (`hold`, white-box tests only:
 * wait forever before the story, so the hang report can be checked), or describe your state.
 */
export type LifetimeRequest = { t: "run"; seed: number; hold?: boolean } | { t: "dump" };

/** Lifetime thread -> main thread. */
export type LifetimeReply =
  | { t: "ready" }
  | { t: "done"; log: string[]; error?: string; leaks?: string[] }
  | { t: "dump"; text: string };

/** The iteration in progress (for the hang dump), and how many finished. */
let running: { seed: number; since: number; log: string[] } | undefined;
let finished = 0;

/** This thread's state for the main thread's hang report (runner.ts, leaks.ts `dumpAsync`). */
function dumpState(): string {
  const head = running === undefined
    ? `idle (thread ${threadId}; ${finished} iteration(s) finished)`
    : `iteration with seed ${running.seed} running for ${Math.round(performance.now() - running.since)} ms (thread ${threadId}; ${finished} finished before)`;
  const log = running?.log.slice(-8) ?? [];
  return [
    head,
    `story log (last ${log.length}): ${log.join(" | ") || "(empty)"}`,
    dumpFixtures(),
    `[handles] ${process.getActiveResourcesInfo().join(", ") || "(none)"}`,
  ].join("\n");
}

/** How long this thread's counters may take to come back to baseline (the runner's default). */
const SETTLE_MS = 2_000;
const probes: LeakProbe[] = [{ name: "fixture", snapshot: fixtureCounters }];

async function runOne(seed: number, hold: boolean): Promise<LifetimeReply> {
  const log: string[] = [];
  running = { seed, since: performance.now(), log };
  const stray: unknown[] = [];
  const onStray = (e: unknown): void => void stray.push(e);
  process.on("unhandledRejection", onStray);
  process.on("uncaughtException", onStray);
  const baseline = takeSnapshot(probes);
  const errors: string[] = [];
  try {
    if (hold) {
      log.push("held before the story (white-box test)");
      await new Promise<never>(() => {});
    }
    await runLifetime({ seed, rng: createRng(seed), log: (m) => void log.push(m), signal: new AbortController().signal });
  } catch (e) {
    errors.push(errorText(e));
  }
  const leaks = await settle(baseline, probes, SETTLE_MS);
  // Let late rejections of this iteration surface before attributing them.
  await new Promise<void>((r) => setImmediate(r));
  process.off("unhandledRejection", onStray);
  process.off("uncaughtException", onStray);
  for (const e of stray) errors.push(`escaped the scenario on the lifetime thread (unhandled): ${errorText(e)}`);
  running = undefined;
  finished++;
  return { t: "done", log, ...(errors.length > 0 ? { error: errors.join("\n") } : {}), ...(leaks.length > 0 ? { leaks } : {}) };
}

const port = parentPort;
if (port === null) throw new Error("lifetime-thread.js runs as a worker thread (lifetime.ts starts it)");
port.on("message", (m: LifetimeRequest) => {
  if (m.t === "run") void runOne(m.seed, m.hold === true).then((reply) => port.postMessage(reply));
  else if (m.t === "dump") port.postMessage({ t: "dump", text: dumpState() } satisfies LifetimeReply);
});
port.postMessage({ t: "ready" } satisfies LifetimeReply);

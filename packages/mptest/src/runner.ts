/**
 * The in-process runner: scenario × iteration × seed, with a leak check after each iteration and
 * hang detection. The CLI and the vitest suite both drive scenarios through {@link runScenarios}.
 *
 * Threading: runs on the main thread of the process; one iteration at a time (parallelism is
 * one process per job, see parallel.ts), so process-wide checks (handles, unhandled rejections)
 * can be attributed to the running iteration.
 */

import { readFileSync } from "node:fs";
import { createRng, iterationSeed } from "./rng.js";
import { dumpProbesAsync, settle, takeSnapshot, type LeakProbe } from "./leaks.js";
import type { Scenario, ScenarioContext } from "./scenario.js";
import { FairShare } from "./schedule.js";

export { CHARGE_CAP_MS } from "./schedule.js";

export type IterationStatus = "pass" | "fail" | "leak" | "hang";

export interface IterationResult {
  scenario: string;
  iteration: number;
  seed: number;
  status: IterationStatus;
  durationMs: number;
  /**
   * CPU time over the same span as durationMs: this process (every thread, so the scenario's worker
   * threads too) plus the child processes it reaped meanwhile (Linux only, 10 ms ticks).
   */
  cpuMs?: number;
  /** Message and stack of the failure (fail/hang). */
  error?: string;
  /** Counters still above baseline after the iteration (leak, or alongside a failure). */
  leaks?: string[];
  /** Pending questions, answers, threads and handles at the time of a hang. */
  dump?: string;
  /** The scenario's own log lines (kept for failures only). */
  log?: string[];
}

export interface RunOptions {
  scenarios: readonly Scenario[];
  /** Iterations per scenario. Default 1 unless `durationMs` or `untilFail` is given. */
  repeat?: number;
  /** Keep starting rounds until this much time has passed. */
  durationMs?: number;
  /** Stop at the first non-passing iteration (unbounded when neither repeat nor duration). */
  untilFail?: boolean;
  /** Base seed; iteration i of every scenario uses iterationSeed(seed, i). */
  seed: number;
  /** Per-iteration time limit; past it the iteration is a hang. Default 20 s. */
  timeoutMs?: number;
  /** How long counters may take to return to baseline after an iteration. Default 2 s. */
  settleMs?: number;
  probes?: readonly LeakProbe[];
  /** Resource types of process.getActiveResourcesInfo() not to count. */
  ignoreResources?: readonly string[];
  /**
   * Keep every IterationResult in RunResult.results (default true). A --jobs shard passes false:
   * it reports each result to its parent through onResult and keeps none, so a run of minutes does
   * not grow the heap that every full GC of the scenarios (and V8's own) has to mark.
   */
  retainResults?: boolean;
  /** Run only iterations with index % count === index (the --jobs split). */
  shard?: { index: number; count: number };
  onStart?(scenario: string, iteration: number, seed: number): void;
  onResult?(r: IterationResult): void;
  /** Checked between iterations; true stops the run (e.g. SIGINT). */
  shouldStop?(): boolean;
}

export interface RunResult {
  /** Every iteration's result (empty when RunOptions.retainResults is false). */
  results: IterationResult[];
  /** Iterations (and late failures) whose status is not "pass". */
  notPassed: number;
  /** Why the run ended. "hang" also means the process state can no longer be trusted. */
  stopped: "done" | "failure" | "hang" | "interrupted";
  elapsedMs: number;
}

export function errorText(e: unknown): string {
  if (e instanceof Error) {
    const stack = e.stack ?? `${e.name}: ${e.message}`;
    const cause = e.cause === undefined ? "" : `\n  cause: ${errorText(e.cause)}`;
    return stack + cause;
  }
  return String(e);
}

const DEFAULT_TIMEOUT_MS = 20_000;

/** CPU of the reaped children (cutime + cstime of /proc/self/stat), in ms; 0 where there is none. */
function childrenCpuMs(): number {
  if (process.platform !== "linux") return 0;
  try {
    const stat = readFileSync("/proc/self/stat", "latin1");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[13]) + Number(f[14])) * 10; // fields 16 and 17, in USER_HZ (100) ticks
  } catch {
    return 0;
  }
}

/** CPU time of this process (all threads) and its reaped children, in ms. */
function cpuNowMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000 + childrenCpuMs();
}

/** True while runIteration runs a scenario (its own handlers take stray errors then). */
let inIteration = false;
const DEFAULT_SETTLE_MS = 2_000;

/** Runs one iteration of one scenario, then checks for leaks. Never throws. */
export async function runIteration(
  scenario: Scenario,
  iteration: number,
  seed: number,
  opts: Pick<RunOptions, "timeoutMs" | "settleMs" | "probes" | "ignoreResources">,
): Promise<IterationResult> {
  const probes = opts.probes ?? [];
  const ignore = new Set(opts.ignoreResources ?? []);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const log: string[] = [];
  const abort = new AbortController();
  const ctx: ScenarioContext = {
    seed,
    rng: createRng(seed),
    log: (msg) => void log.push(msg),
    signal: abort.signal,
  };
  // Errors that escape the scenario (unhandled rejections, exceptions thrown from callbacks)
  // belong to this iteration: the runner runs one at a time.
  const stray: unknown[] = [];
  const onStray = (e: unknown): void => void stray.push(e);
  process.on("unhandledRejection", onStray);
  process.on("uncaughtException", onStray);

  // process.stdout/stderr are created lazily, as a pipe or TTY handle, the first time anything
  // touches them (a worker's output is forwarded through them, for one). That handle is a
  // process-wide singleton, not a leak of whichever iteration touched them first: create them
  // before the baseline.
  void process.stdout;
  void process.stderr;
  const baseline = takeSnapshot(probes, ignore);
  const t0 = performance.now();
  const cpu0 = cpuNowMs();
  let timer: NodeJS.Timeout | undefined;
  let outcome: { kind: "ok" } | { kind: "error"; error: unknown } | { kind: "timeout" };
  try {
    const timeout = new Promise<{ kind: "timeout" }>((resolve) => {
      timer = setTimeout(() => resolve({ kind: "timeout" }), timeoutMs);
    });
    const run = Promise.resolve()
      .then(() => scenario.run(ctx))
      .then(
        () => ({ kind: "ok" as const }),
        (error: unknown) => ({ kind: "error" as const, error }),
      );
    outcome = await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
  }
  const durationMs = performance.now() - t0;
  const cpuMs = cpuNowMs() - cpu0;
  const result: IterationResult = { scenario: scenario.name, iteration, seed, status: "pass", durationMs, cpuMs };

  if (outcome.kind === "timeout") {
    // Dump before aborting: the point is to see what was pending when it stuck (other threads'
    // state included: asked now, awaited briefly).
    const dump = await dumpProbesAsync(probes);
    abort.abort(new Error(`iteration timed out after ${timeoutMs} ms`));
    process.off("unhandledRejection", onStray);
    process.off("uncaughtException", onStray);
    inIteration = false;
    return { ...result, status: "hang", error: `timed out after ${timeoutMs} ms`, dump, log };
  }

  const leaks = await settle(baseline, probes, opts.settleMs ?? DEFAULT_SETTLE_MS, ignore);
  // Let late rejections of this iteration surface before attributing them.
  await new Promise<void>((r) => setImmediate(r));
  process.off("unhandledRejection", onStray);
  process.off("uncaughtException", onStray);
  inIteration = false;

  const errors: string[] = [];
  if (outcome.kind === "error") errors.push(errorText(outcome.error));
  for (const e of stray) errors.push(`escaped the scenario (unhandled): ${errorText(e)}`);
  if (errors.length > 0) {
    return { ...result, status: "fail", error: errors.join("\n"), log, ...(leaks.length > 0 ? { leaks } : {}) };
  }
  if (leaks.length > 0) return { ...result, status: "leak", leaks, log };
  return result;
}

/**
 * Runs the scenarios until the repeat count, the duration or the first failure.
 *
 * With `repeat`, scenarios go round-robin, N iterations each. With a duration (or an unbounded
 * --until-fail) the {@link FairShare} scheduler picks (schedule.ts): every iteration is charged
 * its wall time (run plus leak settle) capped at CHARGE_CAP_MS, and the next iteration goes to the
 * scenario with the least charge so far. Scenarios slower than the cap all reach the same count;
 * faster ones share time equally and run more iterations than that count, never fewer.
 * Under `shard` {index k, count J}, this process runs iterations k, k+J, k+2J... of each scenario.
 */
export async function runScenarios(opts: RunOptions): Promise<RunResult> {
  const t0 = Date.now();
  const results: IterationResult[] = [];
  const retain = opts.retainResults ?? true;
  let notPassed = 0;
  const keep = (r: IterationResult): void => {
    if (r.status !== "pass") notPassed++;
    if (retain) results.push(r);
    opts.onResult?.(r);
  };
  const shard = opts.shard ?? { index: 0, count: 1 };
  const timed = opts.repeat === undefined && (opts.durationMs !== undefined || opts.untilFail === true);
  const repeat = opts.repeat ?? (timed ? Infinity : 1);
  const deadline = opts.durationMs === undefined ? Infinity : t0 + opts.durationMs;
  const n = opts.scenarios.length;
  const done = new Array<number>(n).fill(0); // iterations run per scenario (by this shard)
  const share = new FairShare(n);
  let stopped: RunResult["stopped"] = "done";
  let rr = 0;
  // Errors that surface between iterations (a rejection noticed late, a callback firing after
  // teardown) would otherwise crash the process: pin them on the iteration that ran last.
  const late: unknown[] = [];
  const onLate = (e: unknown): void => {
    if (!inIteration) late.push(e);
  };
  process.on("unhandledRejection", onLate);
  process.on("uncaughtException", onLate);
  let last: IterationResult | undefined;
  const flushLate = (): IterationResult | undefined => {
    if (late.length === 0 || last === undefined) return undefined;
    const errors = late.splice(0).map((e) => `escaped after the iteration ended: ${errorText(e)}`);
    const r: IterationResult = { ...last, status: "fail", durationMs: 0, error: errors.join("\n") };
    keep(r);
    return r;
  };

  const next = (): number | undefined => {
    if (n === 0) return undefined;
    if (timed) return share.next();
    // Round-robin over the scenarios that still have iterations for this shard.
    for (let k = 0; k < n; k++) {
      const i = (rr + k) % n;
      if (shard.index + shard.count * done[i]! < repeat) {
        rr = i + 1;
        return i;
      }
    }
    return undefined;
  };

  try {
    for (;;) {
      const lateFailure = flushLate();
      if (lateFailure && opts.untilFail) {
        stopped = "failure";
        break;
      }
      if (Date.now() >= deadline) break;
      if (opts.shouldStop?.()) {
        stopped = "interrupted";
        break;
      }
      const i = next();
      if (i === undefined) break;
      const scenario = opts.scenarios[i]!;
      const iteration = shard.index + shard.count * done[i]!;
      done[i]!++;
      const seed = iterationSeed(opts.seed, iteration);
      opts.onStart?.(scenario.name, iteration, seed);
      const started = performance.now();
      const r = await runIteration(scenario, iteration, seed, opts);
      last = r;
      share.record(i, performance.now() - started);
      keep(r);
      if (r.status === "hang") {
        stopped = "hang";
        break;
      }
      if (r.status !== "pass" && opts.untilFail) {
        stopped = "failure";
        break;
      }
    }
    await new Promise<void>((r) => setImmediate(r));
    flushLate();
  } finally {
    process.off("unhandledRejection", onLate);
    process.off("uncaughtException", onLate);
  }
  return { results, notPassed, stopped, elapsedMs: Date.now() - t0 };
}

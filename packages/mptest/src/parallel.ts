/**
 * `--jobs J`: J child processes (`node --expose-gc cli.js --shard k/J ...`), each running the
 * iterations whose index is k modulo J, reporting every start and result over the IPC channel.
 * The parent aggregates, and watches for a child whose event loop is stuck (its own timeout cannot
 * fire then): past the iteration timeout plus a grace period the child is killed and the iteration
 * counted as a hang. A child that dies mid-iteration fails that iteration.
 *
 * Threading: runs on the main thread of the parent mptest process; each shard child runs its
 * iterations on its own main thread.
 */

import { fork, type ChildProcess } from "node:child_process";
import type { IterationResult, RunResult } from "./runner.js";

/** Messages from a shard child to the parent. */
export type ShardMessage =
  | { t: "start"; scenario: string; iteration: number; seed: number }
  | { t: "result"; r: IterationResult }
  | { t: "end"; stopped: RunResult["stopped"] };

export interface JobsOptions {
  cliPath: string;
  jobs: number;
  /** Arguments every child gets (filter, repeat/duration, seed, timeout, until-fail). */
  childArgs: readonly string[];
  timeoutMs: number;
  untilFail: boolean;
  onStart?(scenario: string, iteration: number, seed: number): void;
  onResult?(r: IterationResult): void;
  shouldStop?(): boolean;
}

/** Extra time a child gets past the iteration timeout before the parent kills it: 2 s to 10 s. */
const watchdogGraceMs = (timeoutMs: number): number => Math.min(10_000, Math.max(2_000, timeoutMs));

export async function runJobs(opts: JobsOptions): Promise<RunResult> {
  const t0 = Date.now();
  const results: IterationResult[] = [];
  let stopped: RunResult["stopped"] = "done";
  const children: ChildProcess[] = [];
  const running = new Set<ChildProcess>();

  const stopAll = (why: RunResult["stopped"]): void => {
    if (stopped === "done") stopped = why;
    for (const c of running) c.kill("SIGTERM");
  };
  const record = (r: IterationResult): void => {
    results.push(r);
    opts.onResult?.(r);
    if (r.status === "hang" && stopped === "done") stopped = "hang";
    if (r.status !== "pass" && opts.untilFail) stopAll("failure");
  };

  const done = Array.from({ length: opts.jobs }, (_, k) => {
    const child = fork(opts.cliPath, [...opts.childArgs, "--shard", `${k}/${opts.jobs}`], {
      execArgv: ["--expose-gc"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    children.push(child);
    running.add(child);
    let current: { scenario: string; iteration: number; seed: number; since: number } | undefined;
    let ended = false;
    let killedByWatchdog = false;
    const watchdog = setInterval(() => {
      if (opts.shouldStop?.()) stopAll("interrupted");
      const limit = opts.timeoutMs + watchdogGraceMs(opts.timeoutMs);
      if (current !== undefined && Date.now() - current.since > limit) {
        killedByWatchdog = true;
        record({
          scenario: current.scenario,
          iteration: current.iteration,
          seed: current.seed,
          status: "hang",
          durationMs: Date.now() - current.since,
          error: `job ${k} stopped responding (event loop blocked?) for more than ${limit} ms; killed`,
        });
        current = undefined;
        child.kill("SIGKILL");
      }
    }, 1000);
    child.on("message", (m: ShardMessage) => {
      if (m.t === "start") current = { scenario: m.scenario, iteration: m.iteration, seed: m.seed, since: Date.now() };
      else if (m.t === "result") {
        current = undefined;
        record(m.r);
      } else if (m.t === "end") ended = true;
    });
    return new Promise<void>((resolve) => {
      child.on("exit", (code, signal) => {
        clearInterval(watchdog);
        running.delete(child);
        if (current !== undefined && !killedByWatchdog && stopped === "done") {
          record({
            scenario: current.scenario,
            iteration: current.iteration,
            seed: current.seed,
            status: "fail",
            durationMs: Date.now() - current.since,
            error: `job ${k} exited mid-iteration (code ${code}, signal ${signal})`,
          });
        } else if (!ended && !killedByWatchdog && stopped === "done") {
          record({
            scenario: "(job)",
            iteration: -1,
            seed: 0,
            status: "fail",
            durationMs: 0,
            error: `job ${k} exited without finishing (code ${code}, signal ${signal})`,
          });
        }
        resolve();
      });
    });
  });
  await Promise.all(done);
  return { results, notPassed: results.filter((r) => r.status !== "pass").length, stopped, elapsedMs: Date.now() - t0 };
}

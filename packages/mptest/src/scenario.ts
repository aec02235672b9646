/**
 * What a stress scenario is. A scenario is one self-contained story (set up, exercise, tear down)
 * that the runner repeats with different seeds. It must leave nothing behind: the runner checks
 * RPC tables, loop references, workers and open handles against their baseline after each run.
 *
 * Threading: scenarios run on the mptest process's main thread (their own worker threads and child
 * processes are the scenario's business).
 */

import type { Rng } from "./rng.js";

/** What a scenario receives for one iteration. */
export interface ScenarioContext {
  /** The iteration's seed (uint32). `mptest --filter '^<name>$' --seed <seed> --repeat 1` replays it. */
  readonly seed: number;
  /** Deterministic random source seeded with {@link seed}. */
  readonly rng: Rng;
  /** Iteration-scoped log: kept in memory and printed only when the iteration fails. */
  log(msg: string): void;
  /** Aborted when the iteration times out (the runner then dumps state and fails it). */
  readonly signal: AbortSignal;
}

export interface Scenario {
  /** Unique name; upstream test names are kept verbatim for the ported ones. */
  readonly name: string;
  /** Where it comes from ("upstream test.cpp:143", "ours"), shown by --list. */
  readonly origin?: string;
  run(ctx: ScenarioContext): Promise<void>;
}

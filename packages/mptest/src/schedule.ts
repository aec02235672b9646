/**
 * The timed scheduler: which scenario runs next in a `--duration` (or unbounded `--until-fail`)
 * run. Every iteration is charged its wall time capped at {@link CHARGE_CAP_MS}, and the next
 * iteration goes to the scenario with the least charge so far (ties: the earliest in the list).
 *
 * So every scenario slower than the cap is charged the same per iteration and they all reach the
 * same count, whatever their cost: the run's time goes to them in proportion to their cost, and
 * the count they reach is the most the run's length allows for all of them at once. Scenarios
 * faster than the cap share time equally among themselves: each runs at least as many iterations
 * as the slow ones (more, the faster it is), and all of them together take at most
 * `cap × their number` per round of the slow ones, i.e. a few percent of the run.
 *
 * Pure bookkeeping (no clock): the runner passes the measured times, the tests pass made-up ones.
 *
 * Threading: the runner's thread (main thread of the mptest process or of a --jobs shard child).
 */

/**
 * The most one iteration is charged against its scenario's share of a timed run. 1 ms: above the
 * cost of the in-memory scenarios' leak check, below every scenario that starts a thread, a
 * process or a socket.
 */
export const CHARGE_CAP_MS = 1;

export class FairShare {
  readonly #charged: number[];
  readonly #counts: number[];
  readonly #capMs: number;

  constructor(scenarios: number, capMs = CHARGE_CAP_MS) {
    this.#charged = new Array<number>(scenarios).fill(0);
    this.#counts = new Array<number>(scenarios).fill(0);
    this.#capMs = capMs;
  }

  /** The index of the scenario to run next (undefined when there is none). */
  next(): number | undefined {
    const c = this.#charged;
    if (c.length === 0) return undefined;
    let best = 0;
    for (let i = 1; i < c.length; i++) if (c[i]! < c[best]!) best = i;
    return best;
  }

  /** Records one iteration of scenario `i` that took `wallMs`. */
  record(i: number, wallMs: number): void {
    this.#charged[i]! += Math.min(Math.max(wallMs, 0), this.#capMs);
    this.#counts[i]!++;
  }

  /** Iterations recorded per scenario. */
  get counts(): readonly number[] {
    return [...this.#counts];
  }
}

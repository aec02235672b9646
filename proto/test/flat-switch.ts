/**
 * A client's flat results readers switched on and off, for the tests that check a flat read against
 * the general path (flat-results.test.ts, flat-results-deferred.test.ts): a client subclass passes
 * each generated reader through {@link FlatSwitch.wrap}, which drops it while the switch is off (the
 * call then reads its results the general way: the capnp-ts results struct and the generated
 * reader) and otherwise logs each read; {@link FlatSwitch.both} makes the same call both ways.
 *
 * Threading: the test's thread.
 */
import type { FlatRead } from "@multiprocess-ts/capnp";

export class FlatSwitch<T> {
  /** Whether the next calls pass their flat reader on (else the general path reads the results). */
  on = true;
  /** One entry per flat read: what `note` made of it when it ran. */
  readonly reads: T[] = [];

  constructor(private readonly note: (at: number, words: number) => T) {}

  /** `readFlat`, logged; undefined while the switch is off or when there is none. */
  wrap(readFlat: FlatRead | undefined): FlatRead | undefined {
    if (!this.on || readFlat === undefined) return undefined;
    return (dv, at, words) => {
      this.reads.push(this.note(at, words));
      return readFlat(dv, at, words);
    };
  }

  /** The value of `call()` with the flat reader, then without (the general path); reads logged from empty. */
  async both<R>(call: () => Promise<R>): Promise<[R, R]> {
    this.reads.length = 0;
    this.on = true;
    const flat = await call();
    this.on = false;
    try {
      return [flat, await call()];
    } finally {
      this.on = true;
    }
  }
}

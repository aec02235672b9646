/**
 * Test helpers shared by the @multiprocess-ts/node tests (and test/spawn, examples): a recording
 * TransportSink and a leak check on Node's active handles.
 */
import { expect } from "vitest";
import type { Transport, TransportSink } from "@multiprocess-ts/capnp";
import { deferred } from "@multiprocess-ts/capnp";

/** Resources that must not outlive a test (sockets, servers, child processes, ports, timers). */
const WATCHED = new Set([
  "TCPWrap", "TCPServerWrap", "PipeWrap", "PipeServerWrap", "ProcessWrap", "MessagePort", "Timeout", "TTYWrap",
]);

function watchedCounts(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) {
    if (WATCHED.has(r)) m.set(r, (m.get(r) ?? 0) + 1);
  }
  return m;
}

/** Snapshot the handles open now; pass the result to {@link expectNoLeaks} at the end. */
export function handleBaseline(): Map<string, number> {
  // process.stdout/stderr are created lazily (a PipeWrap under vitest); a worker thread's output
  // creates them on first use. Create them now so they count as baseline, not as a leak.
  void process.stdout;
  void process.stderr;
  return watchedCounts();
}

function excess(baseline: Map<string, number>): string[] {
  const now = watchedCounts();
  const out: string[] = [];
  for (const [k, n] of now) {
    const b = baseline.get(k) ?? 0;
    if (n > b) out.push(`${k} x${n - b}`);
  }
  return out;
}

/**
 * Assert that no socket, server, child process, MessagePort or timer opened since `baseline` is
 * still active. Handles close asynchronously (their close callbacks run on later loop turns, and
 * a TCP close may wait for the peer's FIN), so this polls: first by letting the event loop turn,
 * then every 10 ms, failing only if something is still open after `deadlineMs`. This is a leak
 * check with a deadline, not a way to order events: nothing in the test waits on it.
 */
export async function expectNoLeaks(baseline: Map<string, number>, deadlineMs = 3000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (let i = 0; excess(baseline).length > 0 && Date.now() < until; i++) {
    await new Promise<void>((r) => (i < 50 ? setImmediate(r) : setTimeout(r, 10)));
  }
  expect(excess(baseline), "handles left open").toEqual([]);
}

/** A TransportSink that records what it gets, with promises to await the next message and the end. */
export class RecordingSink implements TransportSink {
  readonly messages: Uint8Array[][] = [];
  readonly ended = deferred<Error | undefined>();
  closedCalls = 0;
  private waiters: { n: number; resolve: () => void }[] = [];

  message(segments: Uint8Array[]): void {
    if (this.closedCalls > 0) throw new Error("message after closed");
    this.messages.push(segments);
    this.waiters = this.waiters.filter((w) => {
      if (this.messages.length >= w.n) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  closed(err?: Error): void {
    this.closedCalls++;
    this.ended.resolve(err);
  }

  /** Resolves once at least `n` messages arrived. */
  waitFor(n: number): Promise<void> {
    if (this.messages.length >= n) return Promise.resolve();
    const d = deferred<void>();
    this.waiters.push({ n, resolve: () => d.resolve() });
    return d.promise;
  }
}

/** A one-segment message whose 8-byte words hold `values` (enough to check identity end to end). */
export function msg(...values: number[]): Uint8Array[] {
  const seg = new Uint8Array(8 * Math.max(1, values.length));
  const dv = new DataView(seg.buffer);
  values.forEach((v, i) => dv.setUint32(i * 8, v, true));
  return [seg];
}

/** The values of a message made by {@link msg}. */
export function values(segments: Uint8Array[]): number[] {
  const out: number[] = [];
  for (const s of segments) {
    const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
    for (let i = 0; i < s.byteLength; i += 8) out.push(dv.getUint32(i, true));
  }
  return out;
}

/** Start `t` with a fresh RecordingSink. */
export function started(t: Transport): RecordingSink {
  const sink = new RecordingSink();
  t.start(sink);
  return sink;
}

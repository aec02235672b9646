/**
 * A leak check on Node's active handles, for tests of real transports (sockets, servers, child
 * processes, MessagePorts, timers): snapshot what is open with {@link handleBaseline} at the start,
 * and {@link assertNoHandleLeaks} at the end.
 *
 * Threading: the thread whose handles are checked (each thread has its own).
 */

/** Resources that must not outlive a test (sockets, servers, child processes, ports, timers). */
const WATCHED = new Set([
  "TCPWrap", "TCPServerWrap", "PipeWrap", "PipeServerWrap", "ProcessWrap", "MessagePort", "Timeout", "TTYWrap",
]);

/** Counts of the watched handle kinds open now. */
export type HandleBaseline = ReadonlyMap<string, number>;

function watchedCounts(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) {
    if (WATCHED.has(r)) m.set(r, (m.get(r) ?? 0) + 1);
  }
  return m;
}

/** Snapshot the handles open now; pass the result to {@link assertNoHandleLeaks} at the end. */
export function handleBaseline(): HandleBaseline {
  // process.stdout/stderr are created lazily (a PipeWrap under a test runner); a worker thread's
  // output creates them on first use. Create them now so they count as baseline, not as a leak.
  void process.stdout;
  void process.stderr;
  return watchedCounts();
}

/** The handle kinds open beyond `baseline`, as "Kind xN" (empty when none). */
export function handleLeaks(baseline: HandleBaseline): string[] {
  const out: string[] = [];
  for (const [k, n] of watchedCounts()) {
    const b = baseline.get(k) ?? 0;
    if (n > b) out.push(`${k} x${n - b}`);
  }
  return out;
}

/**
 * Throws unless no socket, server, child process, MessagePort or timer opened since `baseline` is
 * still active. Handles close asynchronously (their close callbacks run on later loop turns, and
 * a TCP close may wait for the peer's FIN), so this polls: first by letting the event loop turn,
 * then every 10 ms, failing only if something is still open after `deadlineMs`. This is a leak
 * check with a deadline, not a way to order events: nothing in the test waits on it.
 */
export async function assertNoHandleLeaks(baseline: HandleBaseline, deadlineMs = 3000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (let i = 0; handleLeaks(baseline).length > 0 && Date.now() < until; i++) {
    await new Promise<void>((r) => (i < 50 ? setImmediate(r) : setTimeout(r, 10)));
  }
  const left = handleLeaks(baseline);
  if (left.length > 0) throw new Error(`handles left open: ${left.join(", ")}`);
}

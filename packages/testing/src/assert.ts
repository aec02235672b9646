/**
 * Small assertion helpers shared by tests and mptest scenarios (plain Errors: no test framework
 * needed).
 *
 * Threading: loop thread.
 */

import type { RpcConnection } from "@multiprocess-ts/capnp";
import type { Connection, EventLoop } from "@multiprocess-ts/runtime";
import { liveSetups } from "./tracker.js";

/** Throws unless every RPC table of `conn` is empty. */
export function assertRpcIdle(conn: { rpc: RpcConnection } | RpcConnection, what = "connection"): void {
  const rpc = "rpc" in conn ? conn.rpc : conn;
  const s = rpc.stats();
  const bad = Object.entries(s).filter(([, v]) => v !== 0);
  if (bad.length > 0) throw new Error(`${what}: RPC tables not empty: ${bad.map(([k, v]) => `${k}=${v}`).join(", ")}`);
}

/**
 * Throws unless nothing is left: the given setups pass their own leak check and no other fixture
 * is still alive.
 */
export function assertNoLeaks(...setups: readonly { assertNoLeaks(): void }[]): void {
  for (const s of setups) s.assertNoLeaks();
  if (liveSetups.size > 0) throw new Error(`${liveSetups.size} TestSetup(s) not disposed`);
}

/**
 * Awaits `p`, which must reject with an error whose message contains `message` (string) or matches
 * it (RegExp). Returns the error.
 */
export async function expectReject(p: PromiseLike<unknown>, message: string | RegExp): Promise<Error> {
  let value: unknown;
  try {
    value = await p;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const ok = typeof message === "string" ? msg.includes(message) : message.test(msg);
    if (!ok) throw new Error(`expected rejection matching ${String(message)}, got: ${msg}`, { cause: e });
    return e instanceof Error ? e : new Error(msg);
  }
  throw new Error(`expected rejection matching ${String(message)}, but it resolved with ${String(value)}`);
}

/** What {@link idleProblems} / {@link assertIdle} look at; the keys name things in the report. */
export interface IdleCheck {
  connections?: Record<string, Connection>;
  loops?: Record<string, EventLoop>;
  /** Log lines; error-level ones fail the check unless they match `expectedLogs`. */
  logs?: readonly { side?: string; level: string; msg: string }[];
  expectedLogs?: readonly RegExp[];
}

/**
 * What is still held: non-empty RPC tables, loop references or pending loop work, and unexpected
 * error-level log lines (empty when clean). The leak check of createTestSetup, for tests that
 * build their own Connections and loops.
 */
export function idleProblems(c: IdleCheck): string[] {
  const problems: string[] = [];
  for (const [name, conn] of Object.entries(c.connections ?? {})) {
    for (const [k, v] of Object.entries(conn.rpc.stats())) if (v !== 0) problems.push(`${name} rpc ${k} = ${v}`);
  }
  for (const [name, l] of Object.entries(c.loops ?? {})) {
    if (l.numRefs !== 0) problems.push(`${name} loop holds ${l.numRefs} refs`);
    if (l.pendingWork !== 0) problems.push(`${name} loop has ${l.pendingWork} pending work items`);
  }
  const expected = c.expectedLogs ?? [];
  for (const l of c.logs ?? []) {
    if (l.level === "error" && !expected.some((re) => re.test(l.msg))) problems.push(`unexpected ${l.side === undefined ? "" : `${l.side} `}error log: ${l.msg}`);
  }
  return problems;
}

/** Throws a report of {@link idleProblems} unless there are none. */
export function assertIdle(c: IdleCheck): void {
  const problems = idleProblems(c);
  if (problems.length > 0) throw new Error(`leak check failed:\n  ${problems.join("\n  ")}`);
}

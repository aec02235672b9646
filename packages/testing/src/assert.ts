/**
 * Small assertion helpers shared by tests and mptest scenarios (plain Errors: no test framework
 * needed).
 *
 * Threading: loop thread.
 */

import type { RpcConnection } from "@multiprocess-ts/capnp";
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

/**
 * Live fixtures, for mptest's leak probe and hang dump. A module-level set is a global registry,
 * kept on purpose and kept tiny: it is test-only, and it lets a runner see fixtures a test forgot
 * to dispose without threading a context through every call.
 *
 * Threading: loop thread (the thread that creates the setups).
 */

import type { ProxyClientBase } from "@multiprocess-ts/runtime";
import type { TestSetup } from "./setup.js";

/** Any setup, whatever interface it serves. */
export type TrackedSetup = TestSetup<unknown, ProxyClientBase>;

/** Setups created and not yet disposed. */
export const liveSetups = new Set<TrackedSetup>();

/** Counters for the mptest leak probe: live fixtures and the RPC tables of their connections. */
export function fixtureCounters(): Record<string, number> {
  const out: Record<string, number> = { setups: liveSetups.size, questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0, loopRefs: 0 };
  for (const s of liveSetups) {
    for (const c of [s.connections.server, s.connections.client]) {
      const st = c.rpc.stats();
      out.questions! += st.questions;
      out.answers! += st.answers;
      out.imports! += st.imports;
      out.exports! += st.exports;
      out.embargoes! += st.embargoes;
    }
    out.loopRefs! += s.serverLoop.numRefs + s.clientLoop.numRefs;
  }
  return out;
}

/** Pending questions, answers and loop state of every live fixture, for hang reports. */
export function dumpFixtures(): string {
  if (liveSetups.size === 0) return "no live TestSetup";
  const lines: string[] = [];
  let i = 0;
  for (const s of liveSetups) {
    lines.push(`TestSetup #${i++}:`);
    for (const [side, c, l, t] of [
      ["server", s.connections.server, s.serverLoop, s.serverTransport],
      ["client", s.connections.client, s.clientLoop, s.clientTransport],
    ] as const) {
      const st = `${c.state} ${JSON.stringify(c.rpc.stats())}`;
      lines.push(`  ${side}: rpc ${st}; loop refs ${l.numRefs}, pending work ${l.pendingWork}; transport held ${t.held}`);
      const threads = [...c.threads].map((th) => `${th.name} (load ${th.load}${th.released ? ", released" : ""})`);
      lines.push(`    server threads: ${threads.join("; ") || "(none)"}; sync cleanups ${c.syncCleanupCount}`);
      const tail = t.wireLog.slice(-8).map((e) => e.which + (e.variant ? `/${e.variant}` : ""));
      lines.push(`    last sent: ${tail.join(" ") || "(nothing)"}`);
    }
    const calls = (s.impl as { calls?: unknown }).calls;
    const callList = Array.isArray(calls) ? `calls: ${calls.join(", ") || "(none)"}; ` : "";
    lines.push(`  server impl ${callList}disposed ${s.implDisposals}`);
  }
  return lines.join("\n");
}

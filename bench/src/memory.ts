/**
 * P6 of `pnpm bench`: server memory per idle connection (run.ts, main thread of a round's client).
 */
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { EventLoop } from "@multiprocess-ts/runtime";
import { connectStream } from "@multiprocess-ts/node";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectUnix, startServer } from "./children.js";
import { RawClient } from "./raw.js";
import type { MemSample } from "./server.js";

export interface MemResult { coldRss: number; rss: number; rssWithYoung: number; young: number; heap: number; heapTotal: number; external: number; clientRss: number; clientHeap: number }

/**
 * Server-side memory per idle connection: a fresh server child, one warm connection (with a call)
 * as the baseline, then `conns` more connections that each made one call; delta / conns after
 * gc(). `kind` "raw" measures the floor (plain net.Socket connections, one ping each). The figure
 * is the second pass: the first also grows V8's young generation and malloc arenas once.
 *
 * `rss` leaves out what V8's young generation (new space) grew by during the pass: V8 enlarges
 * it when many objects survive scavenges (here: the new connections' state, moved to old space
 * by the time we sample, so the grown new space is empty), and it does not scale with the
 * connections held (measured: ~10 KiB "per connection" over 1,000, and ~0 with the young
 * generation fixed by --min/--max-semi-space-size). `rssWithYoung` is the plain RSS delta.
 */
export async function memoryPerConnection(dir: string, loop: EventLoop, kind: "rpc" | "raw", conns: number): Promise<MemResult> {
  const path = join(dir, `mem-${kind}.sock`);
  const server = await startServer(kind, path, `mem-${kind}`);
  const closers: (() => unknown)[] = [];
  const open = async (): Promise<void> => {
    if (kind === "rpc") {
      const foo = await connectStream(loop, await connectUnix(path), FooInterfaceClient);
      closers.push(() => foo.close());
      await foo.add(1, 2);
    } else {
      const c = await RawClient.connect(path);
      closers.push(() => c.close());
      await c.call(RawClient.request(16, 16));
    }
  };
  const openAll = async (): Promise<void> => {
    for (let i = 0; i < conns; i += 50) await Promise.all(Array.from({ length: Math.min(50, conns - i) }, open));
  };
  try {
    const sample = async (): Promise<{ mem: MemSample; connections: number }> => {
      const r = await server.request({ op: "mem" });
      if (!("mem" in r)) throw new Error("bench: bad mem reply");
      return r;
    };
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    await open(); // warm: code and one-time state are not counted
    const cold = await sample();
    const keep = closers.length;
    await openAll();
    const coldAfter = await sample();
    await Promise.allSettled(closers.splice(keep).map(async (c) => { await c(); }));
    for (let tries = 0; (await sample()).connections !== cold.connections; tries++) {
      if (tries > 200) throw new Error(`bench: ${kind} server did not see the cold-pass connections close`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const base = await sample();
    gc();
    const cBase = process.memoryUsage();
    await openAll();
    const after = await sample();
    if (after.connections !== base.connections + conns) {
      throw new Error(`bench: ${kind} server reports ${after.connections} connections, expected ${base.connections + conns}`);
    }
    gc();
    const cAfter = process.memoryUsage();
    const young = after.mem.youngPhysical - base.mem.youngPhysical;
    return {
      coldRss: (coldAfter.mem.rss - cold.mem.rss) / conns,
      rss: (after.mem.rss - base.mem.rss - young) / conns,
      rssWithYoung: (after.mem.rss - base.mem.rss) / conns,
      young: young / conns,
      heap: (after.mem.heapUsed - base.mem.heapUsed) / conns,
      heapTotal: (after.mem.heapTotal - base.mem.heapTotal) / conns,
      external: (after.mem.external - base.mem.external) / conns,
      clientRss: (cAfter.rss - cBase.rss) / conns,
      clientHeap: (cAfter.heapUsed - cBase.heapUsed) / conns,
    };
  } finally {
    await Promise.allSettled(closers.map(async (c) => { await c(); }));
    await server.stop();
  }
}

/**
 * The bench's own P1-shaped rows for floor.ts, measured in the same run as the C and Node floor
 * variants so that they can be compared: the raw floor exactly as `pnpm bench` runs it (raw.ts:
 * a forked server.js on a named Unix socket, RawClient with a promise per call), birpc (peers.ts)
 * and P1 itself (generated FooInterface `add`, the client's socket read through `onread`), each
 * with the bench's sequential loop and CPU per call per side (children.ts withCpu). Main thread
 * of the diagnostic process.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SocketReader, streamTransport } from "@multiprocess-ts/capnp";
import { connectTransport, EventLoop } from "@multiprocess-ts/runtime";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectUnix, sequentialWithCpu, startServer, type ServerChild } from "./children.js";
import { connectPeer } from "./peers.js";
import { RawClient } from "./raw.js";
import { latency } from "./stats.js";

export interface BenchRow { label: string; p50: number; p99: number; client: number; server: number }

async function measure(label: string, server: ServerChild, n: number, warmup: number, fn: () => Promise<unknown>): Promise<BenchRow> {
  const { us, cpu } = await sequentialWithCpu(server, n, warmup, fn);
  const l = latency(us);
  return { label, p50: l.p50, p99: l.p99, client: cpu.client, server: cpu.server };
}

/** One round of the three rows; `req`/`reply`: the raw floor's frame sizes (P1's bytes on the wire). */
export async function benchRows(n: number, warmup: number, req: number, reply: number): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), "mpts-floor-"));
  const servers: ServerChild[] = [];
  const loop = new EventLoop("floor-client", { log: { level: "warning" } });
  try {
    const rawServer = await startServer("raw", join(dir, "raw.sock"), "floor-raw");
    const birpcServer = await startServer("birpc", join(dir, "birpc.sock"), "floor-birpc");
    const rpcServer = await startServer("rpc", join(dir, "rpc.sock"), "floor-rpc");
    servers.push(rawServer, birpcServer, rpcServer);
    const raw = await RawClient.connect(join(dir, "raw.sock"));
    const rawReq = RawClient.request(req - 4, reply - 4);
    const birpc = await connectPeer("birpc", join(dir, "birpc.sock"));
    const reader = new SocketReader();
    const socket = await connectUnix(join(dir, "rpc.sock"), reader);
    const foo = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), FooInterfaceClient);
    const rows = [
      await measure("bench raw floor (raw.ts, named socket, promise per call)", rawServer, n, warmup, () => raw.call(rawReq)),
      await measure("birpc add (JSON lines, same socket kind)", birpcServer, n, warmup, () => birpc.add(1, 2)),
      await measure("P1: our generated add (client reads via onread)", rpcServer, n, warmup, () => foo.add(1, 2)),
    ];
    raw.close();
    birpc.close();
    socket.destroy();
    return rows;
  } finally {
    for (const s of servers) await s.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

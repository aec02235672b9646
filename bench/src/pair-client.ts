/**
 * One client of the paired comparison (`pnpm bench --peers`, run-paired.ts): a forked child
 * process (its own V8 isolate, JIT and GC, so the two libraries never share them) that connects
 * to one server and runs blocks of calls when its parent asks. Main thread of its own process.
 *
 *   pair-client.js ours|birpc|capnweb PATH [stream-reads]
 *
 * `ours`: the generated FooInterfaceClient over our stream transport, connected as the round's
 * client connects (children.ts connectRpc); the peers: their own clients (peers.ts).
 * IPC: it sends {ready:true}; then answers
 *   {op:"warm", n, seconds, inflight}  n sequential add calls, then `seconds` with calls in flight
 *                                      (when > 0), untimed → {done:true}
 *   {op:"seq", n, from}                n sequential add(from + i, 1), each timed → {us, cpuUs}
 *   {op:"pipe", seconds, inflight}     add(1, 2) with `inflight` calls outstanding for `seconds`
 *                                      → {calls, seconds, cpuUs}
 * where cpuUs is this process's process.cpuUsage() (user + system) over the timed calls only,
 * and exits on {op:"exit"} (or when the parent goes away). An error is sent as {error}.
 */
import { EventLoop } from "@multiprocess-ts/runtime";
import { connectRpc } from "./children.js";
import { connectPeer, type PeerKind } from "./peers.js";
import { pipelinedRate, timeSequential } from "./stats.js";

export type PairClientKind = "ours" | PeerKind;
export type PairRequest =
  | { op: "warm"; n: number; seconds: number; inflight: number }
  | { op: "seq"; n: number; from: number }
  | { op: "pipe"; seconds: number; inflight: number }
  | { op: "exit" };
export type PairReply = { ready: true } | { done: true } | { us: number[]; cpuUs: number }
  | { calls: number; seconds: number; cpuUs: number } | { error: string };

const [kind, path, flag] = process.argv.slice(2);
if (!["ours", "birpc", "capnweb"].includes(kind ?? "") || path === undefined) {
  process.stderr.write("usage: pair-client.js ours|birpc|capnweb PATH [stream-reads]\n");
  process.exit(2);
}
const send = (m: PairReply): void => { process.send!(m); };

interface Adder { add(a: number, b: number): Promise<number>; close(): Promise<void> }

async function connect(): Promise<Adder> {
  if (kind === "ours") {
    const loop = new EventLoop("bench-pair-client", { log: { level: "warning" } });
    const { foo } = await connectRpc(loop, path!, flag === "stream-reads");
    return { add: (a, b) => foo.add(a, b), close: () => foo.close() };
  }
  const peer = await connectPeer(kind as PeerKind, path!);
  return { add: (a, b) => peer.add(a, b), close: async () => { peer.close(); } };
}

const cpuNow = (): number => { const c = process.cpuUsage(); return c.user + c.system; };

async function serve(client: Adder, m: PairRequest): Promise<PairReply> {
  const add = async (i: number): Promise<void> => { if ((await client.add(i, 1)) !== i + 1) throw new Error(`${kind}: wrong sum`); };
  switch (m.op) {
    case "warm":
      for (let i = 0; i < m.n; i++) await add(i);
      if (m.seconds > 0) await pipelinedRate(m.inflight, m.seconds, () => client.add(1, 2), 0);
      return { done: true };
    case "seq": {
      const c0 = cpuNow();
      const us = await timeSequential(m.n, 0, (i) => add(m.from + i));
      const cpuUs = cpuNow() - c0;
      return { us: Array.from(us), cpuUs };
    }
    case "pipe": {
      const c0 = cpuNow();
      const r = await pipelinedRate(m.inflight, m.seconds, () => client.add(1, 2), 0);
      return { calls: r.calls, seconds: r.seconds, cpuUs: cpuNow() - c0 };
    }
    case "exit":
      return { done: true };
  }
}

const client = await connect().catch((e: unknown) => {
  send({ error: `connect: ${e instanceof Error ? e.message : String(e)}` });
  process.exit(1);
});
process.on("message", (m: PairRequest) => {
  if (m.op === "exit") {
    void client.close().catch(() => undefined).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
    return;
  }
  serve(client, m).then(send, (e: unknown) => { send({ error: e instanceof Error ? e.message : String(e) }); });
});
process.on("disconnect", () => process.exit(0));
send({ ready: true });

/**
 * A fresh Node process for the bench's fresh-process windows of the raw floor and birpc
 * (fresh-window.ts, run by run.ts): what a new Node process pays for its first sequential calls
 * with no RPC at all (raw) or with a JSON RPC (birpc), beside our cold-start row. Only what the
 * kind needs is imported (dynamically): never our library, so neither process loads, parses or
 * compiles any of it.
 *
 *   fresh.js serve raw|birpc PATH                 the server (raw.ts's ping-pong, or peers.ts's birpc)
 *   fresh.js call raw|birpc PATH N REQ REPLY      the client: connects, sends {ready}, waits for
 *                                                 "go", times N sequential adds (raw: a REQ-byte
 *                                                 request for a REPLY-byte reply), sends {us, cpu}
 *
 * IPC (forked by fresh-window.ts): both send {ready: true} once listening / connected; the server
 * answers {op: "cpu"} with {cpu: process.cpuUsage(), io: null} as server.js does, and both exit on
 * {op: "exit"} or when the parent goes away. The client's CPU is its own process.cpuUsage() over
 * the timed calls. Runs on the main thread of each child.
 */
import { writeSync } from "node:fs";
import { timeSequential } from "./stats.js";

type Kind = "raw" | "birpc";
const [role, kind, path, nArg, reqArg, replyArg] = process.argv.slice(2);
if ((role !== "serve" && role !== "call") || (kind !== "raw" && kind !== "birpc") || path === undefined) {
  process.stderr.write("usage: fresh.js serve|call raw|birpc PATH [N REQ REPLY]\n");
  process.exit(2);
}
const send = (m: unknown): void => { process.send!(m); };
process.on("disconnect", () => process.exit(0));

async function serve(k: Kind, p: string): Promise<void> {
  const server = k === "raw"
    ? await (await import("./raw.js")).startRawServer(p)
    : await (await import("./peers.js")).startPeerServer("birpc", p, () => {});
  process.on("message", (m: { op?: string }) => {
    if (m.op === "cpu") send({ cpu: process.cpuUsage(), io: null });
    else if (m.op === "exit") {
      server.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    }
  });
  send({ ready: true });
}

async function call(k: Kind, p: string, n: number, req: number, reply: number): Promise<void> {
  let add: (i: number) => Promise<void>;
  let close: () => void;
  if (k === "raw") {
    const { RawClient } = await import("./raw.js");
    const raw = await RawClient.connect(p);
    const request = RawClient.request(req, reply);
    add = async () => { await raw.call(request); };
    close = () => raw.close();
  } else {
    const { connectPeer } = await import("./peers.js");
    const peer = await connectPeer("birpc", p);
    add = async (i) => { if ((await peer.add(i, 1)) !== i + 1) throw new Error("birpc: wrong sum"); };
    close = () => peer.close();
  }
  // Diagnostics: MP_BENCH_FRESH_MARKS=1 writes `#call I` before each call (synchronously), so V8
  // trace lines on the same stdout (e.g. --trace-baseline-batch-compilation) fall between them.
  if (process.env.MP_BENCH_FRESH_MARKS === "1") {
    const inner = add;
    add = (i) => { writeSync(1, `#call ${i + 1}\n`); return inner(i); };
  }
  process.on("message", (m: string | { op?: string }) => {
    if (m === "go") {
      void (async () => {
        const c0 = process.cpuUsage();
        const us = await timeSequential(n, 0, add);
        const c = process.cpuUsage(c0);
        send({ us: Array.from(us), cpu: c.user + c.system });
      })().catch((e: unknown) => send({ error: e instanceof Error ? e.message : String(e) }));
    } else if (typeof m === "object" && m.op === "exit") {
      close();
      process.exit(0);
    }
  });
  send({ ready: true });
}

const run = role === "serve" ? serve(kind, path) : call(kind, path, Number(nArg ?? 1000), Number(reqArg ?? 156), Number(replyArg ?? 76));
run.catch((e: unknown) => {
  process.stderr.write(`bench fresh ${role} ${kind}: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});

/**
 * Bench diagnostic (not part of `pnpm bench`): the client's TURNAROUND in P1, i.e. what runs on
 * the client between a Return's bytes arriving and the next Call's bytes leaving. One bench
 * server child (server.js rpc) over a Unix socket; the client (this process) calls
 * `foo.add(i, 1)` through the generated FooInterfaceClient in the bench's own loop shape
 * (pair-client.ts: an async function per call awaited by stats.ts `timeSequential`), one
 * connection per build, the builds' blocks alternating. Stamps (`performance.now()`, µs):
 *
 *   read   the socket's `onread` callback is entered (the Return's bytes are in the slab)
 *   user   the caller's `await foo.add(...)` continues (the value is there)
 *   call   the caller calls `foo.add(...)` for the next call
 *   write  the socket handle's `writeBuffer` is called (the next Call's bytes go to the kernel)
 *
 * and prints per block the medians of read→user (the Return's path), user→call (the bench
 * loop's own hops), call→write (the send path and the transport's flush turn) and read→write (the
 * whole turnaround). `--floor` adds the leanest Node ping-pong's turnaround for comparison (a
 * socket read through `onread` whose callback writes the next frame through the handle's write,
 * bench/src/floor-peer.ts "onread" + "handle"; its echo end lives in this process). One more
 * block per build counts, with a V8 promise hook (which slows everything, so its times are not
 * printed), the promise reactions run and the promises made in each segment, per call.
 *
 *   node bench/dist/diag-turnaround.js [--roots DIR[,DIR...]] [--n 5000] [--blocks 6] [--floor] [--print]
 *
 * Prints each connection's medians over the blocks (`--print`: every block's) and, with two
 * DIRs, the median of the per-block differences B − A (blocks alternate which build goes first).
 * `--deep` splits read→user at the connection's dispatch of the Return (a wrapper around
 * rpc/dispatch.ts `Dispatcher.message`): the read up to it, the dispatch (validation, the Return,
 * the results read, the caller's promise resolved), and the rest of the read callback, Node's
 * callback exit and the microtask checkpoint up to the caller's continuation; and the dispatch at
 * rpc/questions.ts `QuestionTable.handleReturn`, or `handleFlatResults` for a Return read flat
 * (the Return's table entry, the caller's ClientCall, the results read and the promise
 * resolved); and call→write at the transport's
 * `sendCopy` (left: the Call is in the batch), split at the engine's `QuestionTable.sendFlat`
 * (entered: the generated method, ProxyClientBase and ClientCall are done), and its flush
 * reaction (`uncork` entered). With two
 * DIRs, `--deep` also pairs these segments per block as above (medians, B − A per block).
 *
 * DIR: a built checkout (default: this one); give copies, not the checkout running the tool
 * (the A/B tools' note on harness bias, bench/README "Proxy layer (ninth session)"). The stamps
 * cost ~30-50 ns each; they are the same for every build.
 *
 * Threading: the main thread.
 */
import { mkdtemp } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { promiseHooks } from "node:v8";
import { startServer } from "./children.js";
import { timeSequential } from "./stats.js";

const args = process.argv.slice(2);
const opt = (name: string, d: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : d;
};
const N = Number(opt("--n", "5000"));
const BLOCKS = Number(opt("--blocks", "6"));
const ROOTS = opt("--roots", resolve(new URL("../..", import.meta.url).pathname)).split(",");
const FLOOR = args.includes("--floor");
const PRINT = args.includes("--print");
const DEEP = args.includes("--deep");
/** --deep: the dispatch of the Return (Dispatcher.message) entered / left. */
let tMsg = 0;
let tMsgEnd = 0;
/** --deep: QuestionTable.handleReturn entered / left. */
let tRet = 0;
let tRetEnd = 0;
/** --deep: the Call copied into the transport's batch; the flush's reaction entered. */
let tSent = 0;
/** --deep: the engine's QuestionTable.sendFlat entered (the generated method and ClientCall are done). */
let tQ = 0;
let tFlush = 0;
const deep = { readMsg: [] as number[], msg: [] as number[], msgUser: [] as number[], msgRet: [] as number[], ret: [] as number[], callSent: [] as number[], callQ: [] as number[], sentFlush: [] as number[], flushWrite: [] as number[] };

const now = (): number => performance.now() * 1000;

/** The stamps of the call in progress (one connection runs at a time). */
let tRead = 0;
let tUser = 0;
let tCall = 0;
let tWrite = 0;
/** Per call: the segments (µs). */
const seg = { readUser: [] as number[], userCall: [] as number[], callWrite: [] as number[], readWrite: [] as number[] };
/** Promise reactions run / promises made since the last stamp (the instrumented block only). */
let reactions = 0;
let made = 0;
const hops = { readUser: 0, userCall: 0, callWrite: 0, madeRead: 0, madeCall: 0 };

/** Wraps a socket's handle `writeBuffer` with the write stamp. */
function stampWrites(s: Socket): void {
  const h = (s as unknown as { _handle: { writeBuffer(req: unknown, chunk: Uint8Array): number } })._handle;
  const orig = h.writeBuffer;
  h.writeBuffer = function (req: unknown, chunk: Uint8Array): number {
    tWrite = now();
    if (tRead !== 0) {
      seg.readWrite.push(tWrite - tRead);
      if (DEEP && tSent !== 0) {
        deep.callSent.push(tSent - tCall);
        deep.callQ.push(tQ - tCall);
        deep.sentFlush.push(tFlush - tSent);
        deep.flushWrite.push(tWrite - tFlush);
      }
      seg.callWrite.push(tWrite - tCall);
      hops.callWrite += reactions;
      hops.madeCall += made;
      reactions = 0;
      made = 0;
    }
    return orig.call(this, req, chunk);
  };
}

interface Conn {
  name: string;
  /** `n` sequential round trips. */
  run(n: number): Promise<void>;
}

async function connectBuild(dir: string, path: string): Promise<Conn> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const cp = (await import(url("packages/capnp/dist/index.js"))) as typeof import("@multiprocess-ts/capnp");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  if (DEEP) {
    // Two more stamps around the connection's dispatch of each message (a wrapper: it changes
    // what V8 inlines there, so --deep figures are not compared with the others).
    const dm = (await import(url("packages/capnp/dist/rpc/dispatch.js"))) as { Dispatcher: { prototype: { message(s: Uint8Array[]): void } } };
    const orig = dm.Dispatcher.prototype.message;
    dm.Dispatcher.prototype.message = function (this: unknown, segs: Uint8Array[]): void {
      tMsg = now();
      orig.call(this, segs);
      tMsgEnd = now();
    };
    const qm = (await import(url("packages/capnp/dist/rpc/questions.js"))) as { QuestionTable: { prototype: { handleReturn(e: unknown, m: unknown): void } } };
    const origRet = qm.QuestionTable.prototype.handleReturn;
    qm.QuestionTable.prototype.handleReturn = function (this: unknown, e: unknown, m: unknown): void {
      tRet = now();
      origRet.call(this, e, m);
      tRetEnd = now();
    };
    // The flat Call's entry into the engine's question table (call→sent split there).
    const qs = qm.QuestionTable.prototype as unknown as { sendFlat(c: unknown, i: number, q: number, p: unknown): boolean };
    const origSendFlat = qs.sendFlat;
    qs.sendFlat = function (this: unknown, c: unknown, i: number, q: number, p: unknown): boolean {
      tQ = now();
      return origSendFlat.call(this, c, i, q, p);
    };
    // A flat Return (thirteenth session) takes handleFlatResults instead: stamped the same way.
    const qf = qm.QuestionTable.prototype as { handleFlatResults?(q: unknown, e: unknown, dv: unknown): void };
    const origFlat = qf.handleFlatResults;
    if (origFlat !== undefined) {
      qf.handleFlatResults = function (this: unknown, q: unknown, e: unknown, dv: unknown): void {
        tRet = now();
        origFlat.call(this, q, e, dv);
        tRetEnd = now();
      };
    }
  }
  const loop = new rt.EventLoop("diag-turnaround", { log: { level: "warning" } });
  const reader = new cp.SocketReader();
  const cb = reader.onread.callback;
  // The read stamp, first thing in the socket's onread callback (set before the socket is made).
  (reader.onread as { callback: typeof cb }).callback = function (this: unknown, n: number, buf: Uint8Array): unknown {
    tRead = now();
    reactions = 0;
    made = 0;
    return cb.call(this, n, buf);
  } as typeof cb;
  const socket = await new Promise<Socket>((ok, fail) => {
    const s = connect({ path, onread: reader.onread });
    s.once("connect", () => ok(s));
    s.once("error", fail);
  });
  const transport = cp.streamTransport(socket, undefined, undefined, reader);
  if (DEEP) {
    // The Call handed to the transport (sendCopy left), and the flush's reaction entered (uncork).
    const t = transport as unknown as { sendCopy(s: Uint8Array[]): boolean; uncork(): void };
    const sendCopy = t.sendCopy;
    const uncork = t.uncork;
    t.sendCopy = function (this: unknown, segs: Uint8Array[]): boolean {
      const r = sendCopy.call(this, segs);
      tSent = now();
      return r;
    };
    t.uncork = function (this: unknown): void {
      tFlush = now();
      uncork.call(this);
    };
  }
  const client = await rt.connectTransport(loop, transport, foo.FooInterfaceClient);
  stampWrites(socket);
  const add = async (i: number): Promise<void> => {
    tCall = now();
    if (tRead !== 0) seg.userCall.push(tCall - tUser);
    hops.userCall += reactions;
    reactions = 0;
    made = 0;
    const v = await client.add(i, 1);
    tUser = now();
    if (tRead !== 0) {
      seg.readUser.push(tUser - tRead);
      if (DEEP) {
        deep.readMsg.push(tMsg - tRead);
        deep.msg.push(tMsgEnd - tMsg);
        deep.msgUser.push(tUser - tMsgEnd);
        deep.msgRet.push(tRet - tMsg);
        deep.ret.push(tRetEnd - tRet);
      }
      hops.readUser += reactions;
      hops.madeRead += made;
      reactions = 0;
      made = 0;
    }
    if (v !== i + 1) throw new Error("diag-turnaround: wrong sum");
  };
  return { name: dir, run: async (n) => { await timeSequential(n, 0, add); } };
}

/** The lean floor: onread + the handle's write of the next frame (floor-peer.ts "onread" + "handle"). */
async function connectFloor(dir: string): Promise<Conn> {
  const path = join(dir, "floor.sock");
  const FRAME = 80;
  const srv = createServer((s) => s.on("data", (d) => s.write(d))); // the echo end (not measured)
  await new Promise<void>((ok) => srv.listen(path, ok));
  srv.unref();
  const out = Buffer.alloc(FRAME, 1);
  const buf = Buffer.alloc(64 * 1024);
  let pending = 0;
  let left = 0;
  let done: (() => void) | null = null;
  type Raw = { _write(c: Buffer, e: string, cb: () => void): void };
  const socket: Socket = await new Promise<Socket>((ok, fail) => {
    const s = connect({
      path,
      onread: {
        buffer: buf,
        callback: (n: number): boolean => {
          tRead = now();
          pending += n;
          if (pending < FRAME) return true;
          pending -= FRAME;
          if (--left > 0) {
            // The leanest turnaround: the next frame written from the read callback itself.
            tCall = now();
            (s as unknown as Raw)._write(out, "buffer", () => {});
          } else {
            const d = done;
            done = null;
            d?.();
          }
          return true;
        },
      },
    });
    s.once("connect", () => ok(s));
    s.once("error", fail);
  });
  stampWrites(socket);
  const run = (n: number): Promise<void> =>
    new Promise<void>((ok) => {
      done = ok;
      left = n;
      tRead = 0;
      (socket as unknown as Raw)._write(out, "buffer", () => {});
    });
  return { name: "floor (onread + handle write)", run };
}

const med = (a: number[]): number => {
  const s = Float64Array.from(a).sort();
  return s.length === 0 ? NaN : s[s.length >> 1]!;
};
const f = (x: number): string => x.toFixed(3).padStart(7);

const dir = await mkdtemp(join(tmpdir(), "mpts-diag-turnaround-"));
const server = await startServer("rpc", join(dir, "rpc.sock"), "diag-turnaround");
const conns: Conn[] = [];
for (const r of ROOTS) conns.push(await connectBuild(r, join(dir, "rpc.sock")));
if (FLOOR) conns.push(await connectFloor(dir));

/** --deep: the segments' names, and per connection the medians of each block (paired below). */
const DEEP_NAMES = ["read→dispatch", "dispatch", "dispatch end→user", "up to handleReturn", "handleReturn", "call→sent", "  of which call→sendFlat", "sent→flush", "flush→write"];
const deepRows = new Map<Conn, number[][]>();

async function block(c: Conn, n: number, record = true): Promise<void> {
  await c.run(200);
  // The first call of the block starts with no read before it.
  tRead = 0;
  for (const k of Object.keys(seg) as (keyof typeof seg)[]) seg[k].length = 0;
  for (const k of Object.keys(hops) as (keyof typeof hops)[]) hops[k] = 0;
  for (const k of Object.keys(deep) as (keyof typeof deep)[]) deep[k].length = 0;
  await c.run(n);
  tRead = 0;
  if (DEEP && deep.msg.length > 0) {
    process.stdout.write(`  ${c.name.slice(-40).padEnd(40)} read→dispatch ${f(med(deep.readMsg))}  dispatch ${f(med(deep.msg))}  dispatch end→user ${f(med(deep.msgUser))}; in the dispatch: up to handleReturn ${f(med(deep.msgRet))}, handleReturn ${f(med(deep.ret))}\n`);
    process.stdout.write(`  ${"".padEnd(40)} call→sent ${f(med(deep.callSent))} (to sendFlat ${f(med(deep.callQ))})  sent→flush ${f(med(deep.sentFlush))}  flush→write ${f(med(deep.flushWrite))}\n`);
    if (record) {
      const r = [deep.readMsg, deep.msg, deep.msgUser, deep.msgRet, deep.ret, deep.callSent, deep.callQ, deep.sentFlush, deep.flushWrite].map(med);
      if (!deepRows.has(c)) deepRows.set(c, []);
      deepRows.get(c)!.push(r);
    }
  }
}

process.stdout.write(`diag-turnaround: P1 client, n=${N} per block, medians in µs (performance.now stamps)\n`);
process.stdout.write(`  ${"build".padEnd(40)} ${"read→user".padStart(9)} ${"user→call".padStart(9)} ${"call→write".padStart(10)} ${"read→write".padStart(10)}\n`);
/** Per connection, per block: the medians of the four segments. */
const rows: number[][][] = conns.map(() => []);
for (let b = 0; b < BLOCKS; b++) {
  // Alternate which build goes first.
  const order = conns.map((_, k) => k);
  if (b % 2 === 1) order.reverse();
  for (const k of order) {
    const c = conns[k]!;
    await block(c, N);
    const r = [med(seg.readUser), med(seg.userCall), med(seg.callWrite), med(seg.readWrite)];
    rows[k]!.push(r);
    // The floor has no user continuation of its own: its call→write is the read callback's write.
    if (PRINT) process.stdout.write(`  ${c.name.slice(-40).padEnd(40)} ${f(r[0]!)}   ${f(r[1]!)}   ${f(r[2]!)}    ${f(r[3]!)}\n`);
  }
}
const col = (k: number, j: number): number[] => rows[k]!.map((r) => r[j]!);
process.stdout.write(`median over ${BLOCKS} blocks:\n`);
conns.forEach((c, k) => {
  process.stdout.write(`  ${c.name.slice(-40).padEnd(40)} ${f(med(col(k, 0)))}   ${f(med(col(k, 1)))}   ${f(med(col(k, 2)))}    ${f(med(col(k, 3)))}\n`);
});
if (ROOTS.length === 2) {
  // Paired: per block, the second build's median minus the first's.
  const d = (j: number): number[] => rows[1]!.map((r, b) => r[j]! - rows[0]![b]![j]!);
  const lower = (j: number): number => d(j).filter((x) => x < 0).length;
  process.stdout.write(`  ${"B − A per block, median (B lower in)".padEnd(40)} ${[0, 1, 2, 3].map((j) => `${f(med(d(j)))} (${lower(j)})`).join(" ")}\n`);
}

if (DEEP && ROOTS.length === 2) {
  // The --deep segments paired the same way: each build's median over the blocks, then the median
  // of the per-block differences B − A. Read it against an A/A run (two copies of one build): the
  // build loaded second can differ by a few tens of ns in a segment in every block.
  const a = deepRows.get(conns[0]!) ?? [];
  const b = deepRows.get(conns[1]!) ?? [];
  process.stdout.write(`--deep, median over ${a.length} blocks: A / B, B − A per block (B lower in)\n`);
  DEEP_NAMES.forEach((name, j) => {
    const d = b.map((r, k) => r[j]! - a[k]![j]!);
    const lower = d.filter((x) => x < 0).length;
    process.stdout.write(`  ${name.padEnd(40)} ${f(med(a.map((r) => r[j]!)))} / ${f(med(b.map((r) => r[j]!)))}   ${f(med(d))} (${lower})\n`);
  });
}

// Instrumented block: promise reactions and promises per call in each segment.
const stop = promiseHooks.createHook({
  init: () => {
    made++;
  },
  before: () => {
    reactions++;
  },
});
process.stdout.write(`per call, with a promise hook: reactions run read→user / user→call / call→write; promises made read→user / call→write\n`);
for (const c of conns) {
  await block(c, N, false);
  const per = (x: number): string => (x / N).toFixed(2).padStart(5);
  process.stdout.write(`  ${c.name.slice(-40).padEnd(40)} ${per(hops.readUser)} / ${per(hops.userCall)} / ${per(hops.callWrite)};  ${per(hops.madeRead)} / ${per(hops.madeCall)}\n`);
}
stop();
await server.stop();
process.exit(0);

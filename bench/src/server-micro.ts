/**
 * Bench diagnostic (not part of `pnpm bench`): the JavaScript one P1 `add` costs the SERVER
 * (engine, runtime, generated dispatch and the bench impl), without a transport, a socket or a
 * client, for two builds in one process in alternating blocks (issue 13, tenth session).
 *
 *   node bench/dist/server-micro.js [--n 50000] [--blocks 30] [--warm 100000] [--pipe K] [--alloc] DIR_A DIR_B
 *
 * Each build serves FooInterface (its BenchFoo) over a stand-in transport. A real client of the
 * first build records the Call of `add(7, 1)` once, in a child process (a client run in this
 * process would shape one build's engine code and not the other's); from then on each call of a block copies those
 * bytes into a 4 KiB slab (as the socket reader's small reads land: socket-read.ts) and hands them
 * to the server's sink, then waits one promise reaction, after which the server has sent its
 * Return (the engine's dispatch microtask ran; `sendCopy` takes it and returns true, so the
 * pooled buffer goes back at once, as the stream transport's copy does). `--pipe K`: K calls
 * (question IDs 1..K) delivered one after the other in one "read", then one wait (P2's server
 * side). Prints each build's median CPU µs per call (process.cpuUsage over the block) and the
 * median per-block difference against the first build; asserts nothing but that every call
 * was answered.
 *
 * Threading: the main (loop) thread.
 */
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { abReport, takeOption } from "./diag-loops.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => takeOption(args, name, dflt);
const N = Number(opt("--n", "50000"));
const BLOCKS = Number(opt("--blocks", "30"));
const WARM = Number(opt("--warm", "100000"));
const PIPE = Number(opt("--pipe", "0"));
const ALLOC = args.includes("--alloc") ? (args.splice(args.indexOf("--alloc"), 1), true) : false;
if (args.length !== 2 && args[0] !== "--record") throw new Error("usage: server-micro.js [--n N] [--blocks B] [--pipe K] DIR DIR");

type Sink = { message(segs: Uint8Array[]): void; closed(err?: Error): void };

/** A transport that records what the engine sends and hands nothing on. */
class Stub {
  sink: Sink | null = null;
  sent = 0;
  last: Uint8Array | null = null;
  start(sink: Sink): void {
    this.sink = sink;
  }
  send(segs: Uint8Array[]): void {
    this.sent++;
    this.last = segs[0]!;
  }
  sendCopy(segs: Uint8Array[]): boolean {
    this.send(segs);
    return true;
  }
  sendLazy(segs: Uint8Array[]): void {
    this.send(segs);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  destroy(): void {}
}

const R = Promise.resolve();
let slab = new Uint8Array(4096);
let slabUsed = 0;
/** `bytes` copied into the current 4 KiB slab (a new one when it is full), word-aligned. */
function carve(bytes: Uint8Array): Uint8Array {
  const n = bytes.byteLength;
  if (slabUsed + n > slab.byteLength) {
    slab = new Uint8Array(4096);
    slabUsed = 0;
  }
  const v = new Uint8Array(slab.buffer, slabUsed, n);
  v.set(bytes);
  slabUsed += (n + 7) & ~7;
  return v;
}

interface Build { stub: Stub; call: Uint8Array }

async function load(dir: string): Promise<{ rt: typeof import("@multiprocess-ts/runtime"); foo: typeof import("@multiprocess-ts/proto/test/foo.capnp.js"); impl: typeof import("./foo-impl.js") }> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  return {
    rt: (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime"),
    foo: (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js"),
    impl: (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js"),
  };
}

/** Records the Call of add(7, 1) that a real client of `dir` sends, through a pair of stubs. */
async function recordCall(dir: string): Promise<{ bootstrap: Uint8Array; call: Uint8Array }> {
  const { rt, foo, impl } = await load(dir);
  const loop = new rt.EventLoop("server-micro-rec", { log: { level: "warning" } });
  const ct = new Stub();
  const st = new Stub();
  const got: Uint8Array[] = [];
  // Client → server, copied, a turn later; server → client the same.
  ct.send = (segs) => {
    const c = new Uint8Array(segs[0]!);
    got.push(c);
    setImmediate(() => st.sink!.message([c]));
  };
  st.send = (segs) => {
    const c = new Uint8Array(segs[0]!);
    setImmediate(() => ct.sink!.message([c]));
  };
  rt.serveTransport(loop, st, new impl.BenchFoo(), foo.FooInterfaceServer);
  const client = await rt.connectTransport(loop, ct, foo.FooInterfaceClient);
  const bootstrap = got[0]!;
  // The first calls may target the bootstrap's promised answer; record one made once it resolved.
  for (let i = 0; i < 3; i++) await client.add(1, 2);
  got.length = 0;
  if ((await client.add(7, 1)) !== 8) throw new Error("server-micro: wrong sum while recording");
  const call = got.find((m) => m[8] === 2); // Message.which = call (fastpath.ts layout)
  if (call === undefined) throw new Error("server-micro: no Call recorded");
  // The hot shape: a Call to an imported capability (MessageTarget.which at fastpath.ts CALL.targetWhich).
  if (new DataView(call.buffer, call.byteOffset).getUint16(76, true) !== 0) throw new Error("server-micro: the recorded Call does not target an import");
  return { bootstrap, call };
}

if (args[0] === "--record") {
  // The child's half: its engine ran as a client, which must not shape the measured builds' code.
  const r = await recordCall(args[1]!);
  process.stdout.write(JSON.stringify({ bootstrap: Buffer.from(r.bootstrap).toString("base64"), call: Buffer.from(r.call).toString("base64") }));
  process.exit(0);
}
const dirs = args.map((d) => resolve(d));
const recorded = JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--record", dirs[0]!], { encoding: "utf8" })) as { bootstrap: string; call: string };
const rec = { bootstrap: new Uint8Array(Buffer.from(recorded.bootstrap, "base64")), call: new Uint8Array(Buffer.from(recorded.call, "base64")) };
const builds: Build[] = [];
for (const dir of dirs) {
  const { rt, foo, impl } = await load(dir);
  const loop = new rt.EventLoop(`server-micro ${dir}`, { log: { level: "warning" } });
  const stub = new Stub();
  rt.serveTransport(loop, stub, new impl.BenchFoo(), foo.FooInterfaceServer);
  stub.sink!.message([carve(rec.bootstrap)]);
  await new Promise((r) => setImmediate(r));
  if (stub.sent !== 1) throw new Error(`server-micro: ${dir} did not answer the bootstrap`);
  builds.push({ stub, call: rec.call });
}

/** The question ID of a recorded Call lies at byte 24 (fastpath.ts CALL.qid). */
function withQid(call: Uint8Array, qid: number): Uint8Array {
  const c = new Uint8Array(call);
  new DataView(c.buffer).setUint32(24, qid, true);
  return c;
}
// IDs from 1: the bootstrap's answer (ID 0) stays, its Finish is never delivered.
const calls = Array.from({ length: Math.max(1, PIPE) }, (_, i) => withQid(rec.call, i + 1));

async function block(b: Build, n: number): Promise<number> {
  const sink = b.stub.sink!;
  const per = calls.length;
  const rounds = Math.max(1, Math.round(n / per));
  const before = b.stub.sent;
  const c0 = process.cpuUsage();
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < per; i++) sink.message([carve(calls[i]!)]);
    await R;
  }
  const c = process.cpuUsage(c0);
  if (b.stub.sent - before !== rounds * per) throw new Error(`server-micro: ${b.stub.sent - before} Returns for ${rounds * per} calls`);
  return (c.user + c.system) / (rounds * per);
}

for (const b of builds) await block(b, WARM);
if (ALLOC) {
  for (let i = 0; i < builds.length; i++) process.stdout.write(await allocation(builds[i]!, dirs[i]!));
  process.exit(0);
}
const got: number[][] = builds.map(() => []);
for (let k = 0; k < BLOCKS; k++) {
  const order = k % 2 === 0 ? builds.map((_, i) => i) : builds.map((_, i) => builds.length - 1 - i);
  for (const i of order) got[i]!.push(await block(builds[i]!, N));
}
/**
 * `--alloc`: bytes allocated per call (V8's sampling heap profiler, every 32 bytes, collected
 * objects included) over 20,000 calls of build `b`, by allocating function (capnp-ts's charged to
 * its caller); the harness's own slab views and segment arrays are in the `block` / `carve` rows.
 */
async function allocation(b: Build, dir: string): Promise<string> {
  const { Session } = await import("node:inspector");
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<{ profile?: { head: AllocNode } }> =>
    new Promise((res, rej) => session.post(method, params, (e, r) => (e ? rej(e) : res(r as { profile?: { head: AllocNode } }))));
  const n = 20000;
  await post("HeapProfiler.startSampling", { samplingInterval: 32, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  await block(b, n);
  const { profile } = await post("HeapProfiler.stopSampling");
  session.disconnect();
  const bySite = new Map<string, number>();
  const walk = (node: AllocNode, owner: string): void => {
    const f = node.callFrame;
    const key = /node_modules\/(capnp-ts|debug)\//.test(f.url) && owner !== ""
      ? owner
      : `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/(packages|node_modules|bench)\//, "$1/")}:${f.lineNumber + 1}`;
    if (node.selfSize > 0) bySite.set(key, (bySite.get(key) ?? 0) + node.selfSize);
    for (const c of node.children) walk(c, key);
  };
  walk(profile!.head, "");
  let total = 0;
  for (const v of bySite.values()) total += v;
  const rows = [...bySite].sort((x, y) => y[1] - x[1]).slice(0, 20);
  return `${dir}: bytes allocated per call (sampled), total ${(total / n).toFixed(0)}\n` + rows.map(([k, v]) => `  ${(v / n).toFixed(0).padStart(6)}  ${k}\n`).join("");
}
interface AllocNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: AllocNode[] }

process.stdout.write(abReport(`server-micro: server CPU µs per call${PIPE > 0 ? ` (${PIPE} per read)` : ""}`, dirs, got));

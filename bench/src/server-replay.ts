/**
 * Server-side CPU per call, without a client or a socket (issue 13, the server call path).
 *
 *   node bench/dist/server-replay.js [add|pipe|ctx|cb] [--n N] [--rounds R] [--alloc]
 *
 * Records what a real client sends for a few calls (the generated FooInterfaceClient over an
 * in-process transport pair, after warm-up), then detaches the client and replays those bytes into
 * the server's transport sink over and over: each recorded client message is delivered once the
 * server has sent as many messages as it had when the client sent it (a Return for the call, the
 * server's own callback Call for `cb`), one batch per setImmediate turn as a socket read would
 * be. What is measured is the server alone: the engine's decode and dispatch, the runtime's
 * server, the generated dispatch, the Return, the Finish; no framing, no syscalls, no client.
 * Prints CPU per call (process.cpuUsage) per round and the bytes allocated per call (new-space
 * growth with scavenges kept out of the window; run with --min-semi-space-size=64). `--alloc`
 * prints the bytes allocated per call by allocating function. For a CPU profile run it under
 * `node --cpu-prof` with a large `--n` and read it with profile-summary.js `--skip` (set-up first).
 *
 *   add   sequential FooInterface.add (P1)
 *   pipe  add, 64 calls in flight (P2)
 *   ctx   sequential callIntFnAsync, which has a Proxy.Context (P3's server side, on the loop)
 *   cb    sequential callbackSaved: the server calls the client's callback during the call (P4)
 *
 * A diagnostic tool: nothing here is asserted. Threading: the main thread (both ends' loops).
 */
import { getHeapSpaceStatistics } from "node:v8";
import type { Transport, TransportSink } from "@multiprocess-ts/capnp";
import { EventLoop, connectTransport, serveTransport } from "@multiprocess-ts/runtime";
import { FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { BenchFoo } from "./foo-impl.js";

/** A recorded client message and how many server messages of its window came before it. */
interface Step { after: number; bytes: Uint8Array[] }

/** One end of an in-process link: copies each message (as a socket would) and delivers it a turn later. */
class End implements Transport {
  sink: TransportSink | null = null;
  peer!: End;
  /** While set, outgoing messages go here instead of to the peer. */
  tap: ((segs: Uint8Array[]) => void) | null = null;
  private inbox: Uint8Array[][] = [];
  private scheduled = false;
  start(sink: TransportSink): void {
    this.sink = sink;
    this.flush();
  }
  send(segs: Uint8Array[]): void {
    const copy = segs.map((s) => new Uint8Array(s));
    if (this.tap !== null) this.tap(copy);
    else this.peer.deliver(copy);
  }
  sendCopy(segs: Uint8Array[]): boolean {
    this.send(segs);
    return true;
  }
  deliver(segs: Uint8Array[]): void {
    this.inbox.push(segs);
    this.flush();
  }
  private flush(): void {
    if (this.scheduled || this.sink === null || this.inbox.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const box = this.inbox;
      this.inbox = [];
      for (const m of box) this.sink!.message(m);
    });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  destroy(): void {}
}

const args = process.argv.slice(2);
const scenario = args.find((a) => !a.startsWith("--") && !/^\d+$/.test(a)) ?? "add";
const opt = (name: string, d: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const N = opt("--n", 20000);
const ROUNDS = opt("--rounds", 5);
const INFLIGHT = 64;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

const clientLoop = new EventLoop("replay-client", { log: { level: (process.env.RLOG ?? "warning") as "warning", logFn: (l, m) => process.stderr.write(`${l} ${m}\n`) } });
const serverLoop = new EventLoop("replay-server", { log: { level: (process.env.RLOG ?? "warning") as "warning", logFn: (l, m) => process.stderr.write(`${l} ${m}\n`) } });
const c = new End();
const s = new End();
c.peer = s;
s.peer = c;
serveTransport(serverLoop, s, new BenchFoo(), FooInterfaceServer);
const foo = await connectTransport(clientLoop, c, FooInterfaceClient);
await foo.initThreadMap();
await foo.saveCallback({ call: (arg: number) => arg * 2 });

/** One unit of work as the client sees it (`calls` calls). */
const unit: { calls: number; run: () => Promise<void> } = {
  add: { calls: 1, run: async () => void (await foo.add(7, 1)) },
  ctx: { calls: 1, run: async () => void (await foo.callIntFnAsync(7)) },
  cb: { calls: 1, run: async () => void (await foo.callbackSaved(7)) },
  pipe: {
    calls: INFLIGHT,
    run: async () => {
      const ps: Promise<number>[] = [];
      for (let i = 0; i < INFLIGHT; i++) ps.push(foo.add(1, 2));
      await Promise.all(ps);
    },
  },
}[scenario] ?? (() => { throw new Error(`unknown scenario ${scenario}`); })();

for (let i = 0; i < 200; i++) {
  await unit.run();
  await turn();
}

// Record one unit: the client's messages, each with the count of server messages before it.
const steps: Step[] = [];
let serverSent = 0;
c.tap = (segs) => {
  steps.push({ after: serverSent, bytes: segs });
  s.deliver(segs);
};
s.tap = (segs) => {
  serverSent++;
  c.deliver(segs);
};
await unit.run();
for (let i = 0; i < 3; i++) await turn();
const perUnit = serverSent;
c.tap = () => {}; // the client is detached from here on
c.sink = null;

// Replay: deliver each step once the server has sent `after` messages in this unit.
let sent = 0;
let next = 0;
let wake: (() => void) | null = null;
s.tap = () => {
  sent++;
  if (!settle()) pump();
};
/** Ends the unit once every step is delivered and the server has sent all its messages. */
function settle(): boolean {
  if (wake === null || sent < perUnit || next < steps.length) return false;
  const w = wake;
  wake = null;
  w();
  return true;
}
let pumpScheduled = false;
function pump(): void {
  if (pumpScheduled) return;
  pumpScheduled = true;
  setImmediate(() => {
    pumpScheduled = false;
    const sink = s.sink!;
    while (next < steps.length && steps[next]!.after <= sent) {
      sink.message(steps[next]!.bytes.map((b) => new Uint8Array(b)));
      next++;
    }
    settle();
  });
}
function replayUnit(): Promise<void> {
  sent = 0;
  next = 0;
  return new Promise((resolve) => {
    wake = resolve;
    pump();
  });
}

const units = Math.max(1, Math.round(N / unit.calls));
for (let i = 0; i < Math.min(units, 2000); i++) await replayUnit(); // warm the replay itself

const newSpace = (): number => getHeapSpaceStatistics().find((x) => x.space_name === "new_space")!.space_used_size;
// For a --cpu-prof profile: what to --skip (set-up and warm-up) in profile-summary.js.
process.stderr.write(`timed rounds start ${Math.round(performance.now())} ms after start\n`);
const results: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < units; i++) await replayUnit();
  const t = process.cpuUsage(t0);
  results.push((t.user + t.system) / (units * unit.calls));
}
// Allocation: new-space growth over a window short enough to see no scavenge (checked).
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
const window = Math.max(1, Math.round(500 / unit.calls));
const before = newSpace();
let last = before;
let scavenged = false;
for (let i = 0; i < window; i++) {
  await replayUnit();
  const now = newSpace();
  if (now < last) scavenged = true;
  last = now;
}
const bytesPerCall = scavenged ? NaN : (last - before) / (window * unit.calls);

if (args.includes("--alloc")) await allocationSites(Math.max(1, Math.round(5000 / unit.calls)));

/**
 * `--alloc`: where the bytes allocated per call come from, by allocating function (V8's sampling
 * heap profiler, every 64 bytes, collected objects included), over `n` units.
 */
async function allocationSites(n: number): Promise<void> {
  const { Session } = await import("node:inspector");
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<any> =>
    new Promise((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
  await post("HeapProfiler.startSampling", { samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let i = 0; i < n; i++) await replayUnit();
  const { profile } = await post("HeapProfiler.stopSampling");
  const bySite = new Map<string, number>();
  // capnp-ts's and debug's allocations are charged to their nearest caller outside them.
  const walk = (node: any, owner: string): void => {
    const f = node.callFrame;
    const url = String(f.url);
    const key = /node_modules\/(capnp-ts|debug)\//.test(url) && owner !== ""
      ? `${owner} (via capnp-ts)`
      : `${f.functionName || "(anonymous)"} ${url.replace(/^.*\/(packages|node_modules|bench)\//, "$1/")}:${f.lineNumber + 1}`;
    const self = (node.selfSize as number) ?? 0;
    if (self > 0) bySite.set(key, (bySite.get(key) ?? 0) + self);
    for (const c of node.children ?? []) walk(c, key.endsWith("(via capnp-ts)") ? owner : key);
  };
  walk(profile.head, "");
  const calls = n * unit.calls;
  const rows = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 25);
  let total = 0;
  for (const [, v] of bySite) total += v;
  process.stdout.write(`allocation by site, bytes per call (sampled; total ${(total / calls).toFixed(0)}):\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${(v / calls).toFixed(0).padStart(6)}  ${k}\n`);
  session.disconnect();
}

const sorted = [...results].sort((a, b) => a - b);
const f = (x: number): string => x.toFixed(2);
process.stdout.write(
  `${scenario}: server CPU per call µs median ${f(sorted[sorted.length >> 1]!)} min ${f(sorted[0]!)} ` +
    `(rounds ${results.map(f).join(" ")}); ${steps.length} client / ${perUnit} server messages per unit of ${unit.calls}; ` +
    `new-space bytes per call ${Number.isNaN(bytesPerCall) ? "? (a scavenge ran: use --min-semi-space-size=64 --expose-gc)" : bytesPerCall.toFixed(0)}\n`,
);
process.exit(0);

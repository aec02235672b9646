/**
 * `pnpm bench --hostile [--ci] [--transport unix|tcp] [--only NAME,...] [--fuzz-frames N]`
 *
 * The hostile-peer benchmark (issue 11): the attacks of test/hostile at full size against a
 * FooInterface server (`listenConnections`, and `listenWebSocketConnections` for the ws attacks)
 * in a forked child, while a well-behaved client in this process keeps calling `add`. Per attack it prints the server's peak RSS (sampled, and the
 * process's lifetime maximum), its longest event-loop stall (perf_hooks monitorEventLoopDelay),
 * the good client's p99 latency and the MiB the server received; the target is no stall over
 * 100 ms per MiB received (1 MiB at least: a loop tick of GC is not an attack). `--ci` runs the
 * suite's small sizes; `--fuzz-frames N` runs N seeded fuzz frames (the generators of
 * packages/capnp/test/fuzz.test.ts, imported from @multiprocess-ts/test-hostile) through the
 * decoder and validator instead.
 *
 * Processes: this one (attacker + good client, loop thread) and the server child
 * (`node bench/dist/hostile.js server <transport>`, loop thread).
 */

import { fork, type ChildProcess } from "node:child_process";
import * as os from "node:os";
import { fileURLToPath, pathToFileURL } from "node:url";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { FrameDecoder, validateRpcMessage, LimitError, ProtocolError } from "@multiprocess-ts/capnp";
import type { ListenTarget } from "@multiprocess-ts/node";
import {
  connectGoodWs,
  frame,
  fuzzFrames,
  GoodClient,
  HostileServer,
  HostileWsServer,
  MESSAGE_ATTACKS,
  passDataCall,
  RawPeer,
  RawWsPeer,
  refusedCallWithCaps,
  wsFrameHeader,
  type MessageAttack,
  type Transport,
} from "@multiprocess-ts/test-hostile";

const MiB = 1024 * 1024;
/** Listener settings of the server child: short timeouts so the socket attacks end quickly. */
// (frameTimeoutMs stays well above the time a 60 MiB frame takes to arrive on a loaded machine.)
const SERVER_OPTS = { maxConnections: 8, frameTimeoutMs: 10_000, firstMessageTimeoutMs: 3000, flow: { pausedTimeoutMs: 3000 } };
/** The WebSocket listener of the server child (same process): the same limits, plus the upgrade bound. */
const WS_OPTS = { ...SERVER_OPTS, upgradeTimeoutMs: 3000 };

interface Report {
  maxStallMs: number;
  /** Server CPU time (user + system) during the attack: separates real work from waiting for a core on a loaded machine. */
  cpuMs: number;
  peakRssMiB: number;
  maxRssMiB: number;
  attackCalls: number;
  elements: number;
  limits: number;
  budgetPeakMiB: number;
}

type ToServer = { op: "reset" } | { op: "report" } | { op: "stop" };
type FromServer = { op: "ready"; target: ListenTarget; wsPort: number; wsUrl: string } | ({ op: "report" } & Report) | { op: "reset" };

// ---------------------------------------------------------------------------------------------
// Server child

async function serverChild(transport: Transport): Promise<void> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const server = await HostileServer.start(transport, SERVER_OPTS);
  const ws = await HostileWsServer.start(WS_OPTS);
  let peak = process.memoryUsage.rss();
  let cpu0 = process.cpuUsage();
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  sampler.unref();
  const reply = (m: FromServer): void => void process.send!(m);
  process.on("message", (m: ToServer) => {
    if (m.op === "reset") {
      h.reset();
      cpu0 = process.cpuUsage();
      peak = process.memoryUsage.rss();
      server.limits.length = 0;
      server.impl.attackCalls = 0;
      server.impl.elements = 0;
      server.listener.frameBudget.peak = server.listener.frameBudget.used;
      ws.limits.length = 0;
      ws.listener.frameBudget.peak = ws.listener.frameBudget.used;
      reply({ op: "reset" });
    } else if (m.op === "report") {
      peak = Math.max(peak, process.memoryUsage.rss());
      reply({
        op: "report",
        maxStallMs: h.max / 1e6,
        cpuMs: ((c) => (c.user + c.system) / 1000)(process.cpuUsage(cpu0)),
        peakRssMiB: peak / MiB,
        maxRssMiB: (process.resourceUsage().maxRSS * 1024) / MiB,
        attackCalls: server.impl.attackCalls,
        elements: server.impl.elements,
        limits: server.limits.length + ws.limits.length,
        budgetPeakMiB: Math.max(server.listener.frameBudget.peak, ws.listener.frameBudget.peak) / MiB,
      });
    } else {
      clearInterval(sampler);
      h.disable();
      void Promise.all([server.close(), ws.close()]).then(() => process.exit(0));
    }
  });
  reply({ op: "ready", target: server.target, wsPort: ws.listener.port, wsUrl: ws.listener.url });
}

class ServerProcess {
  private constructor(
    private readonly proc: ChildProcess,
    readonly target: ListenTarget,
    readonly wsPort: number,
    readonly wsUrl: string,
  ) {}

  static async start(transport: Transport): Promise<ServerProcess> {
    const proc = fork(fileURLToPath(import.meta.url), ["server", transport], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const ready = await new Promise<FromServer>((resolve, reject) => {
      proc.once("message", (m: FromServer) => resolve(m));
      proc.once("exit", () => reject(new Error("hostile bench server exited before it was ready")));
    });
    if (ready.op !== "ready") throw new Error("hostile bench server: unexpected first message");
    return new ServerProcess(proc, ready.target, ready.wsPort, ready.wsUrl);
  }

  request(op: "reset" | "report"): Promise<FromServer> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`hostile bench server died (exit ${String(code)})`));
      this.proc.once("exit", onExit);
      this.proc.once("message", (m: FromServer) => {
        this.proc.off("exit", onExit);
        resolve(m);
      });
      this.proc.send({ op } satisfies ToServer);
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.proc.once("exit", () => resolve()));
    this.proc.send({ op: "stop" } satisfies ToServer);
    await exited;
  }
}

// ---------------------------------------------------------------------------------------------
// Attacks (attacker side)

interface Outcome {
  bytes: number;
  outcome: string;
}

/**
 * Builds the attack's frames first (outside the measured window: the good client shares this
 * process), then returns the attack: send each frame and wait for its answer.
 */
function messageAttack(target: ListenTarget, a: MessageAttack, scale: number): () => Promise<Outcome> {
  const first = frame(a.build(1, 0, scale));
  const repeat = first.byteLength >= MiB ? 1 : 20;
  const frames = [first];
  for (let q = 2; q <= repeat; q++) frames.push(frame(a.build(q, 0, scale)));
  return async () => {
    const p = await RawPeer.connect(target);
    let outcome = "";
    let bytes = 0;
    for (let i = 0; i < repeat; i++) {
      const q = p.qid();
      bytes += frames[i]!.byteLength;
      void p.write(frames[i]!);
      const ans = await Promise.race([p.answer(q), p.closed.then(() => null)]);
      if (ans === null) {
        outcome = `connection closed${p.abortReason !== undefined ? ` (Abort: ${p.abortReason.slice(0, 40)}…)` : ""}`;
        break;
      }
      outcome = ans.kind === "exception" ? `call refused: ${ans.reason.replace(/^call params: /, "").slice(0, 48)}…` : "served";
    }
    p.destroy();
    await p.closed;
    return { bytes, outcome: `${outcome} x${repeat}` };
  };
}

function header(words: number): Uint8Array {
  const h = new Uint8Array(8);
  new DataView(h.buffer).setUint32(4, words, true);
  return h;
}

/** 7 clients trickle one byte per 100 ms into a frame (with the good client: every slot), then a new client connects. */
async function trickle(target: ListenTarget): Promise<Outcome> {
  const peers = await Promise.all(Array.from({ length: SERVER_OPTS.maxConnections - 1 }, () => RawPeer.connect(target, false)));
  const timers = peers.map((p) => {
    p.socket.write(header(1000));
    return setInterval(() => {
      if (!p.socket.destroyed) p.socket.write(new Uint8Array(1));
    }, 100);
  });
  const t0 = performance.now();
  const late = await GoodClient.connect(target);
  await late.once();
  const servedAfter = performance.now() - t0;
  await late.close();
  for (const t of timers) clearInterval(t);
  await Promise.all(peers.map((p) => p.closed));
  return { bytes: peers.length * 8 + peers.length * Math.ceil(servedAfter / 100), outcome: `all cut (frame / first-message timeout); a new client was served after ${servedAfter.toFixed(0)} ms` };
}

/** 16 clients each send 8 MiB of a frame claiming 60 MiB and stall. */
async function stalledFrames(target: ListenTarget): Promise<Outcome> {
  const n = 16;
  const chunk = new Uint8Array(8 * MiB);
  const peers = await Promise.all(Array.from({ length: n }, () => RawPeer.connect(target, false)));
  for (const p of peers) {
    p.socket.write(header((60 * MiB) / 8));
    p.socket.write(chunk);
  }
  await Promise.all(peers.map((p) => p.closed));
  return { bytes: n * (8 * MiB + 8), outcome: `${n} stalled connections closed (frame budget / frameTimeoutMs)` };
}

/** 16 clients connect and send nothing. */
async function idle(target: ListenTarget): Promise<Outcome> {
  const peers = await Promise.all(Array.from({ length: 16 }, () => RawPeer.connect(target, false)));
  await Promise.all(peers.map((p) => p.closed));
  return { bytes: 0, outcome: "all closed by firstMessageTimeoutMs" };
}

/** 20 calls refused over the decode budget, each naming 100 capabilities the attacker exports. */
async function refusedCaps(target: ListenTarget): Promise<Outcome> {
  const p = await RawPeer.connect(target);
  let bytes = 0;
  let refused = 0;
  for (let i = 0; i < 20; i++) {
    const ids = Array.from({ length: 100 }, (_, j) => i * 100 + j);
    const ans = await p.call((q) => {
      const m = refusedCallWithCaps(q, 0, ids);
      bytes += frame(m).byteLength;
      return m;
    });
    if (ans.kind === "exception") refused++;
  }
  await p.call((q) => passDataCall(q, 0, 8)); // ordered after the Releases
  const released = [...p.releases.values()].reduce((a, b) => a + b, 0);
  p.destroy();
  await p.closed;
  return { bytes, outcome: `${refused} of 20 refused; ${released} of 2000 exported capabilities released at once` };
}

/** A peer sends 512 passData calls of 64 KiB (32 MiB of replies) and never reads. */
async function neverReads(target: ListenTarget): Promise<Outcome> {
  const p = await RawPeer.connect(target);
  p.socket.pause();
  const n = 512;
  const call = (q: number): Uint8Array => frame(passDataCall(q, 0, 64 * 1024));
  const t0 = performance.now();
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const f = call(p.qid());
    bytes += f.byteLength;
    p.socket.write(f);
  }
  await p.closed;
  return { bytes, outcome: `paused, then cut by pausedTimeoutMs after ${(performance.now() - t0).toFixed(0)} ms` };
}

/** WebSocket: 8 upgraded clients (every slot) trickle one byte per 100 ms into a message, then a new client connects. */
async function wsTrickle(server: ServerProcess): Promise<Outcome> {
  const peers = await Promise.all(Array.from({ length: WS_OPTS.maxConnections }, () => RawWsPeer.connect(server.wsPort)));
  await Promise.all(peers.map((p) => p.upgrade()));
  const timers = peers.map((p) => {
    p.socket.write(wsFrameHeader(2, true, 1000));
    return setInterval(() => {
      if (!p.socket.destroyed) p.socket.write(new Uint8Array(1));
    }, 100);
  });
  const t0 = performance.now();
  const late = await connectGoodWs(server.wsUrl);
  await late.client.add(1, 2);
  const servedAfter = performance.now() - t0;
  await late.client.close();
  await late.loop.done;
  for (const t of timers) clearInterval(t);
  await Promise.all(peers.map((p) => p.closed));
  return { bytes: peers.length * 14 + peers.length * Math.ceil(servedAfter / 100), outcome: `all cut (frame / first-message timeout); a new ws client was served after ${servedAfter.toFixed(0)} ms` };
}

/** WebSocket: 16 upgraded clients each send 8 MiB of a message claiming 60 MiB and stall. */
async function wsStalled(server: ServerProcess): Promise<Outcome> {
  const n = 16;
  const chunk = new Uint8Array(8 * MiB);
  const peers = await Promise.all(Array.from({ length: n }, () => RawWsPeer.connect(server.wsPort)));
  await Promise.all(peers.map((p) => p.upgrade()));
  for (const p of peers) {
    p.socket.write(wsFrameHeader(2, true, 60 * MiB));
    p.socket.write(chunk);
  }
  await Promise.all(peers.map((p) => p.closed));
  return { bytes: n * (8 * MiB + 14), outcome: `${n} stalled ws connections closed (frame budget / frameTimeoutMs)` };
}

/** WebSocket: 8 clients upgrade and send nothing, 8 never finish their upgrade request. */
async function wsIdle(server: ServerProcess): Promise<Outcome> {
  const idle = await Promise.all(Array.from({ length: 8 }, () => RawWsPeer.connect(server.wsPort)));
  await Promise.all(idle.map((p) => p.upgrade()));
  const slow = await Promise.all(Array.from({ length: 8 }, () => RawWsPeer.connect(server.wsPort)));
  for (const p of slow) p.socket.write(RawWsPeer.request(10));
  await Promise.all([...idle, ...slow].map((p) => p.closed));
  return { bytes: 8 * RawWsPeer.request().length * 2, outcome: "all closed (firstMessageTimeoutMs / upgradeTimeoutMs)" };
}

// ---------------------------------------------------------------------------------------------
// Runner

interface Row {
  name: string;
  mib: number;
  report: Report;
  p99: number;
  calls: number;
  outcome: string;
}

async function runOne(server: ServerProcess, good: GoodClient, name: string, attack: () => Promise<Outcome>): Promise<Row> {
  await server.request("reset");
  good.latencies.length = 0;
  good.startLoop();
  const o = await attack();
  await good.stopLoop();
  await good.once();
  const r = (await server.request("report")) as { op: "report" } & Report;
  const cut = r.limits > 0 ? `; listener closed ${r.limits} socket(s), frame budget peak ${r.budgetPeakMiB.toFixed(0)} MiB` : "";
  return { name, mib: o.bytes / MiB, report: r, p99: good.p99(), calls: good.latencies.length, outcome: o.outcome + cut };
}

function printRows(rows: Row[], transport: Transport, ci: boolean): void {
  const head = ["attack", "MiB recv", "peak RSS", "max RSS", "max stall ms", "server CPU ms", "ms/MiB", "target", "good p99 ms", "good calls", "outcome"];
  const lines = rows.map((r) => {
    const perMiB = r.report.maxStallMs / Math.max(r.mib, 1);
    return [r.name, r.mib.toFixed(2), `${r.report.peakRssMiB.toFixed(0)} MiB`, `${r.report.maxRssMiB.toFixed(0)} MiB`, r.report.maxStallMs.toFixed(1),
      r.report.cpuMs.toFixed(0), perMiB.toFixed(1), perMiB <= 100 ? "met" : "NOT MET", r.p99.toFixed(2), String(r.calls), r.outcome];
  });
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]): string => l.map((c, i) => (i === 0 || i >= 7 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ").trimEnd();
  const out = [
    `multiprocess-ts hostile-peer bench — ${new Date().toISOString()} — node ${process.version}, ${transport} socket, ${ci ? "CI sizes" : "full sizes"}`,
    `server: listenConnections + listenWebSocketConnections in a child (maxConnections ${SERVER_OPTS.maxConnections}, frame/first-message timeouts ${SERVER_OPTS.frameTimeoutMs}/${SERVER_OPTS.firstMessageTimeoutMs} ms, upgradeTimeoutMs ${WS_OPTS.upgradeTimeoutMs}, pausedTimeoutMs ${SERVER_OPTS.flow.pausedTimeoutMs}, default limits and FrameBudgets);`,
    `max stall: longest event-loop delay in the server (monitorEventLoopDelay); target: max stall <= 100 ms per MiB received (at least 1 MiB);`,
    `server CPU ms: the server's CPU time during the attack (a stall far above it is waiting for a core: machine load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")})`,
    "",
    fmt(head),
    fmt(w.map((n) => "-".repeat(n))),
    ...lines.map(fmt),
  ];
  process.stdout.write(out.join("\n") + "\n");
}

function opt(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i < 0 ? undefined : argv[i + 1];
}

/** `--fuzz-frames N`: N seeded fuzz frames through FrameDecoder + validateRpcMessage; prints counts. */
function runFuzz(frames: number, seed: number): void {
  const t0 = performance.now();
  let ok = 0;
  let protocol = 0;
  let limit = 0;
  for (const bytes of fuzzFrames(seed, frames)) {
    try {
      for (const segs of new FrameDecoder({ maxMessageBytes: 1 << 20, maxSegments: 64 }).push(bytes)) validateRpcMessage(segs, { traversalLimitWords: 1 << 16, nestingLimit: 16 });
      ok++;
    } catch (e) {
      if (e instanceof LimitError) limit++;
      else if (e instanceof ProtocolError) protocol++;
      else throw new Error(`fuzz seed ${seed}: untyped error ${String(e)}`, { cause: e });
    }
  }
  const s = (performance.now() - t0) / 1000;
  process.stdout.write(`fuzz: ${frames} frames (seed ${seed}) in ${s.toFixed(1)} s: ${ok} accepted, ${protocol} ProtocolError, ${limit} LimitError, 0 untyped\n`);
}

export async function hostileMain(argv: readonly string[]): Promise<void> {
  const fuzz = opt(argv, "--fuzz-frames");
  if (fuzz !== undefined) {
    runFuzz(Number(fuzz), Number(opt(argv, "--seed") ?? 0x5eed2026) >>> 0 || 1);
    return;
  }
  const ci = argv.includes("--ci");
  const transport = (opt(argv, "--transport") ?? "unix") as Transport;
  const only = opt(argv, "--only")?.split(",");
  const server = await ServerProcess.start(transport);
  const good = await GoodClient.connect(server.target);
  const rows: Row[] = [];
  const want = (name: string): boolean => only === undefined || only.some((o) => name.toLowerCase().includes(o.toLowerCase()));
  try {
    for (const a of MESSAGE_ATTACKS) {
      if (!want(a.name)) continue;
      const scale = ci ? a.ciScale : a.fullScale;
      rows.push(await runOne(server, good, `${a.name} (${scale.toLocaleString("en-US")})`, messageAttack(server.target, a, scale)));
      process.stderr.write(`bench: ${rows.at(-1)!.name} done\n`);
    }
    const socketAttacks: [string, () => Promise<Outcome>][] = [
      ["trickling clients", () => trickle(server.target)],
      ["stalled 60 MiB frames", () => stalledFrames(server.target)],
      ["idle connections", () => idle(server.target)],
      ["refused calls with 100 caps each", () => refusedCaps(server.target)],
      ["never-reading peer (paused)", () => neverReads(server.target)],
      ["ws trickling clients", () => wsTrickle(server)],
      ["ws stalled 60 MiB messages", () => wsStalled(server)],
      ["ws idle + slow upgrades", () => wsIdle(server)],
    ];
    for (const [name, f] of socketAttacks) {
      if (!want(name)) continue;
      rows.push(await runOne(server, good, name, f));
      process.stderr.write(`bench: ${name} done\n`);
    }
  } finally {
    await good.close();
    await server.stop();
  }
  printRows(rows, transport, ci);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  if (process.argv[2] === "server") {
    void serverChild((process.argv[3] ?? "unix") as Transport);
  } else {
    hostileMain(process.argv.slice(2)).then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
        process.exit(1);
      },
    );
  }
}

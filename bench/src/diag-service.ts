/**
 * Bench diagnostic (not part of `pnpm bench`): the SERVER's service time per P1 call, from the
 * socket read's entry into JavaScript to the Return's bytes handed to the kernel, for two builds
 * of this repository and the lean Node floor, A/B/F in the SAME two processes (issue 13, twelfth
 * session: "Server half of a call").
 *
 *   node bench/dist/diag-service.js --a DIR --b DIR [--n 2000] [--blocks 20] [--warm 3] [--clients] [--split]
 *   taskset -c 1 node bench/dist/diag-service.js ...      # pinned: both processes on one CPU
 *
 * This process is the server: it serves one socket per build with that build's
 * `listenConnections` (its runtime, engine, generated FooInterfaceServer and bench impl, loaded by
 * path, as diag-server-ab.js does) and a third one, F, the leanest Node ping-pong: the socket read
 * through an `onread` reader (this build's SocketReader, `readSocketInPlace`) and each reply
 * written by the handle's own `writeBuffer` with one reused request (as packages/capnp
 * socket-write.ts writes an idle socket), a frame of the size of P1's Return for each frame of
 * the size of its Call. A forked client makes blocks of `n` sequential calls on one socket at a
 * time (`add` through this build's FooInterfaceClient, or each build's own with `--clients`; a
 * raw frame client for F); blocks rotate over A, B, F.
 *
 * Stamps (`performance.now()`, the same on every path, ~30-50 ns each): each accepted socket's
 * handle gets its own `onread` (the function libuv's read calls: Node's `onStreamRead`) wrapped
 * to stamp its entry and its return, and its own `writeBuffer` wrapped to stamp its entry. Per
 * reply write: **service** = write − the read's entry (what a call spends on the server's
 * critical path before the kernel has the reply); **read part** = the read's return − its entry
 * (Node's onStreamRead, the reader, the transport's framing and the engine's decode: everything
 * before the microtasks; for F the write happens inside it); **gap** = the read's return → the
 * first microtask (a promise reaction queued by the wrapper before the read runs: Node's native
 * callback scope closing, any nextTicks); the rest of the service time is the microtasks up to
 * the write (the engine's dispatch reaction, the server, the Return, the transport's read-turn
 * flush). The server's CPU per call
 * (`process.cpuUsage`) is printed next to them. Per block the median of each; printed: each
 * mode's median over blocks and the median of per-block differences B − A (service, read part,
 * after the read = service − read part, CPU) and A − F.
 * `--split` (thirteenth session, "the read part, split"): also wraps each build's
 * `Dispatcher.prototype.message` (packages/capnp rpc/dispatch.js of that build) with a stamp at its
 * entry and its return, and splits A's and B's read part into **to the engine** (Node's
 * onStreamRead, the reader, the frame decoder, the lifecycle: read entry → the first `message`
 * entry; split again at the socket's `onread` callback's entry, wrapped too: Node's part before
 * it, also for F), **engine** (`message`: envelope, in-place message, handleCall, the dispatch queued) and
 * **unwind** (the last `message` return → the read's return: the decoder's, transport's and
 * reader's loop ends, the reader's next region, the tracker's tap, Node's onStreamRead's rest).
 * The wrapper adds two stamps and changes what V8 inlines into the lifecycle's call: indicative,
 * the same for A and B.
 * Nothing is asserted. Compare copies of builds (bench/README "Harness bias"), both orders.
 *
 * Threading: the main (loop) thread of each process.
 */
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { SocketReader, readSocketInPlace } from "@multiprocess-ts/capnp";
import { EventLoop } from "@multiprocess-ts/runtime";
import { connectAddClients } from "./add-clients.js";
import { RawClient } from "./raw.js";

type Req = { op: "add"; path: number; n: number } | { op: "raw"; n: number } | { op: "exit" };

/** P1's `add` on the wire (noFinishNeeded: no Finish rides with the Call): frame payloads. */
const RAW_REQ = 116;
const RAW_REPLY = 76;

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

async function client(args: string[]): Promise<void> {
  const dirs = JSON.parse(args.shift()!) as string[] | null;
  const rawPath = args.pop()!;
  const loop = new EventLoop("diag-service-client", { log: { level: "warning" } });
  const foos = await connectAddClients(dirs, args, loop, "diag-service-client");
  const raw = await RawClient.connect(rawPath);
  const rawReq = RawClient.request(RAW_REQ, RAW_REPLY);
  process.on("message", (m: Req) => {
    void (async () => {
      if (m.op === "exit") {
        for (const f of foos) await f.close();
        raw.close();
        process.exit(0);
      }
      if (m.op === "raw") for (let i = 0; i < m.n; i++) await raw.call(rawReq);
      else {
        const foo = foos[m.path]!;
        for (let i = 0; i < m.n; i++) await foo.add(i, 1);
      }
      process.send!("done");
    })();
  });
  process.send!("ready");
}

async function loadBuild(dir: string, st: Stamps | null): Promise<(path: string) => Promise<unknown>> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  if (st !== null) {
    const dm = (await import(url("packages/capnp/dist/rpc/dispatch.js"))) as { Dispatcher: { prototype: { message(...a: unknown[]): unknown } } };
    st.wrapMessage(dm.Dispatcher.prototype);
  }
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const nd = (await import(url("packages/node/dist/index.js"))) as typeof import("@multiprocess-ts/node");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const impl = (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js");
  const loop = new rt.EventLoop(`diag-service ${dir}`, { log: { level: "warning" } });
  return (path) => nd.listenConnections(path, loop, new impl.BenchFoo(), foo.FooInterfaceServer);
}

interface WriteReq { getAsyncId(): number }
interface Handle {
  onread: (...a: unknown[]) => unknown;
  writeBuffer(req: WriteReq, b: Uint8Array): number;
}

/** F: onread reads, one reply frame per request frame, written by the handle with a reused request. */
async function leanFloor(path: string): Promise<Server> {
  // Node's WriteWrap class as the transport finds it (not exported by the package: by path).
  const sw = (await import(new URL("../../packages/capnp/dist/socket-write.js", import.meta.url).href)) as { findWriteReq(): unknown };
  const ReqClass = sw.findWriteReq() as (new () => WriteReq) | null;
  if (ReqClass === null) throw new Error("diag-service: Node's WriteWrap class not found");
  const reply = Buffer.alloc(4 + RAW_REPLY);
  reply.writeUInt32LE(RAW_REPLY, 0);
  const server = createServer({ pauseOnConnect: true }, (socket: Socket) => {
    const reader = new SocketReader();
    if (!readSocketInPlace(socket, reader)) throw new Error("diag-service: the floor socket cannot be read in place");
    let req = new ReqClass();
    let have = 0;
    let need = -1;
    const target = {
      readRegion: () => null,
      bytesRead(region: Uint8Array, n: number): boolean {
        // Ping-pong of small frames: a frame starts at the start of a read.
        if (need < 0) need = 4 + (region[0]! | (region[1]! << 8) | (region[2]! << 16) | (region[3]! << 24));
        have += n;
        if (have < need) return true;
        have = 0;
        need = -1;
        const h = (socket as unknown as { _handle: Handle })._handle;
        const err = h.writeBuffer(req, reply);
        if (req.getAsyncId() !== -1) req = new ReqClass(); // libuv kept it: not ours any more
        if (err !== 0) socket.destroy(new Error(`write failed: ${err}`));
        return true;
      },
    };
    reader.attach(target, socket);
    socket.on("error", () => socket.destroy());
    socket.resume();
  });
  return await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(path, () => ok(server));
  });
}

const RESOLVED = Promise.resolve();

/** The stamps of one mode's socket: per reply write, service and read-part times (µs). */
class Stamps {
  readIn = -1;
  readOut = -1;
  /** The first microtask after the read (queued before Node's onStreamRead runs: it runs first). */
  micro = -1;
  service: number[] = [];
  readPart: number[] = [];
  /** `--split`: the first `message` entry and the last return in the read (see the header). */
  msgIn = -1;
  msgOut = -1;
  cbIn = -1;
  nodeIn: number[] = [];
  toEngine: number[] = [];
  engine: number[] = [];
  unwind: number[] = [];
  /** `--split`: the socket's `onread` callback (Node's `kBufferCb` field) stamps its entry. */
  wrapCallback(socket: object): void {
    const k = Object.getOwnPropertySymbols(socket).find((x) => x.description === "kBufferCb");
    const f = socket as Record<symbol, unknown>;
    const cb = k === undefined ? undefined : f[k];
    if (typeof cb !== "function") throw new Error("diag-service --split: the socket's onread callback not found");
    const self = this;
    f[k!] = function (this: unknown, n: number, buf: Uint8Array): unknown {
      self.cbIn = performance.now();
      return (cb as (n: number, b: Uint8Array) => unknown).call(this, n, buf);
    };
  }
  wrapMessage(proto: { message(...a: unknown[]): unknown }): void {
    const message = proto.message;
    const self = this;
    proto.message = function (this: unknown, ...a: unknown[]): unknown {
      const t = performance.now();
      if (self.msgIn < self.readIn) self.msgIn = t;
      const r = message.apply(this, a);
      self.msgOut = performance.now();
      return r;
    };
  }
  /** The read's return → the first microtask (the native callback scope closing, nextTicks). */
  gap: number[] = [];
  wrap(h: Handle): void {
    const onread = h.onread;
    const wb = h.writeBuffer;
    const self = this;
    const stampMicro = (): void => {
      self.micro = performance.now();
    };
    h.onread = function (this: unknown, ...a: unknown[]): unknown {
      self.readIn = performance.now();
      self.micro = -1;
      void RESOLVED.then(stampMicro);
      const r = onread.apply(this, a);
      self.readOut = performance.now();
      return r;
    };
    h.writeBuffer = function (this: Handle, req: WriteReq, b: Uint8Array): number {
      const t = performance.now();
      if (self.readIn >= 0) {
        self.service.push((t - self.readIn) * 1000);
        // The read's return, when the write came after it (else inside it: F's, or a write in the read turn).
        const after = self.readOut >= self.readIn; // else the write is inside the read (F)
        self.readPart.push(((after ? self.readOut : t) - self.readIn) * 1000);
        if (after && self.micro >= self.readOut) self.gap.push((self.micro - self.readOut) * 1000);
        if (self.cbIn >= self.readIn) self.nodeIn.push((self.cbIn - self.readIn) * 1000);
        if (after && self.cbIn >= self.readIn && self.msgIn >= self.cbIn && self.msgOut >= self.msgIn && self.readOut >= self.msgOut) {
          self.toEngine.push((self.msgIn - self.cbIn) * 1000);
          self.engine.push((self.msgOut - self.msgIn) * 1000);
          self.unwind.push((self.readOut - self.msgOut) * 1000);
        }
        self.readIn = -1;
      }
      return wb.call(this, req, b);
    };
  }
}

async function server(): Promise<void> {
  const dirs = [opt("a", "."), opt("b", ".")];
  const n = Number(opt("n", "2000"));
  const blocks = Number(opt("blocks", "20"));
  const HARNESS_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
  for (const d of dirs) {
    if (resolve(d) === HARNESS_ROOT) process.stderr.write(`note: ${d} is this harness's own checkout, which the A/B favours; compare two other copies, in both orders\n`);
  }
  const split = process.argv.includes("--split");
  // The accepted sockets' stamps, per mode (A, B, F).
  const stamps = [new Stamps(), new Stamps(), new Stamps()];
  const listens = [];
  for (const [i, d] of dirs.entries()) listens.push(await loadBuild(d, split ? stamps[i]! : null));
  const tmp = mkdtempSync(join(tmpdir(), "mpts-service-"));
  const paths = [...dirs.map((_, i) => join(tmp, `s${i}.sock`)), join(tmp, "floor.sock")];
  const listeners = (await Promise.all(listens.map((l, i) => l(paths[i]!)))) as { close(o: { destroy: boolean }): Promise<void> }[];
  const floor = await leanFloor(paths[2]!);
  const clientDirs = process.argv.includes("--clients") ? dirs.map((d) => resolve(d)) : null;
  const child = fork(fileURLToPath(import.meta.url), ["client", JSON.stringify(clientDirs), ...paths], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const reply = (): Promise<unknown> => new Promise((ok) => child.once("message", ok));
  await reply();
  // The accepted sockets: each mode's is the one whose server listens on its path.
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  for (const s of handles) {
    const srv = (s as { _server?: Server | null })._server;
    const h = (s as { _handle?: Handle | null })._handle;
    if (srv === undefined || srv === null || h === undefined || h === null) continue;
    const i = paths.indexOf(srv.address() as string);
    if (i >= 0) stamps[i]!.wrap(h);
    if (i >= 0 && split) stamps[i]!.wrapCallback(s as object);
  }
  const cpu: number[][] = [[], [], []];
  const block = async (mode: number, calls: number): Promise<void> => {
    const st = stamps[mode]!;
    st.service = [];
    st.readPart = [];
    st.gap = [];
    st.toEngine = [];
    st.nodeIn = [];
    st.engine = [];
    st.unwind = [];
    const c0 = process.cpuUsage();
    child.send((mode === 2 ? { op: "raw", n: calls } : { op: "add", path: mode, n: calls }) satisfies Req);
    await reply();
    const c = process.cpuUsage(c0);
    cpu[mode]!.push((c.user + c.system) / calls);
  };
  const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
  const warm = Number(opt("warm", "3"));
  for (let w = 0; w < warm; w++) for (const m of [0, 1, 2]) await block(m, Math.max(n, 3000));
  for (const c of cpu) c.length = 0;
  const service: number[][] = [[], [], []];
  const readPart: number[][] = [[], [], []];
  const gap: number[][] = [[], [], []];
  const count: number[] = [0, 0, 0];
  const parts: number[][][] = [[[], [], []], [[], [], []]]; // --split: per mode A/B: to the engine, engine, unwind
  const nodeIn: number[][] = [[], [], []]; // --split: read entry → the onread callback's entry
  for (let b = 0; b < blocks; b++) {
    const rot = [0, 1, 2].map((j) => (b + j) % 3);
    for (const m of b % 2 === 0 ? rot : rot.reverse()) {
      await block(m, n);
      const st = stamps[m]!;
      if (st.service.length === 0) throw new Error(`diag-service: no stamped writes for mode ${"ABF"[m]} (its socket not found?)`);
      service[m]!.push(med(st.service));
      readPart[m]!.push(med(st.readPart));
      gap[m]!.push(st.gap.length === 0 ? 0 : med(st.gap));
      if (split) nodeIn[m]!.push(st.nodeIn.length === 0 ? 0 : med(st.nodeIn));
      if (split && m < 2) {
        if (st.engine.length === 0) throw new Error(`diag-service --split: no message stamps for mode ${"AB"[m]}`);
        parts[m]![0]!.push(med(st.toEngine));
        parts[m]![1]!.push(med(st.engine));
        parts[m]![2]!.push(med(st.unwind));
      }
      count[m] = st.service.length;
    }
  }
  child.send({ op: "exit" } satisfies Req);
  await new Promise((ok) => child.once("exit", ok));
  await Promise.all(listeners.map((l) => l.close({ destroy: true })));
  await new Promise((ok) => floor.close(ok));
  rmSync(tmp, { recursive: true, force: true });
  const names = [...dirs, "lean floor (onread + handle write)"];
  process.stdout.write(`server service time per call, µs (${blocks} blocks of ${n} sequential calls, A/B/F rotating; per block the median)\n`);
  for (const m of [0, 1, 2]) {
    process.stdout.write(`${"ABF"[m]} ${names[m]!.padEnd(36)} service ${med(service[m]!).toFixed(2).padStart(6)}  read part ${med(readPart[m]!).toFixed(2).padStart(6)}  gap ${med(gap[m]!).toFixed(2).padStart(5)}  CPU/call ${med(cpu[m]!).toFixed(2).padStart(6)}  (${count[m]} writes stamped in the last block)\n`);
  }
  const paired = (what: string, x: number[][], i: number, j: number): void => {
    const d = x[i]!.map((v, k) => v - x[j]![k]!);
    const below = d.filter((v) => v < 0).length;
    process.stdout.write(`${what}: median ${med(d).toFixed(2)} µs, range ${Math.min(...d).toFixed(2)}–${Math.max(...d).toFixed(2)}; lower in ${below} of ${d.length} blocks\n`);
  };
  paired("service B − A", service, 1, 0);
  paired("read part B − A", readPart, 1, 0);
  // What follows the read (the gap and the microtasks up to the write): the Return's side.
  const afterRead = service.map((xs, m) => xs.map((v, k) => v - readPart[m]![k]!));
  paired("after the read B − A", afterRead, 1, 0);
  paired("CPU/call B − A", cpu, 1, 0);
  if (split) {
    for (const m of [0, 1]) {
      const [a, e, u] = parts[m]!.map((xs) => med(xs).toFixed(2));
      process.stdout.write(`${"AB"[m]} read part split: Node to our callback ${med(nodeIn[m]!).toFixed(2)}  callback to the engine ${a}  engine ${e}  unwind ${u}\n`);
    }
    process.stdout.write(`F Node to its callback ${med(nodeIn[2]!).toFixed(2)}\n`);
    const names3 = ["callback to the engine", "engine", "unwind"];
    for (const k of [0, 1, 2]) paired(`${names3[k]} B − A`, [parts[0]![k]!, parts[1]![k]!], 1, 0);
  }
  paired("service A − F", service, 0, 2);
  paired("service B − F", service, 1, 2);
}

if (process.argv[2] === "client") await client(process.argv.slice(3));
else await server();

/**
 * One side of a Node floor variant for floor.ts ("What the floor is made of"): a process that
 * ping-pongs u32-length-prefixed frames over fd 3 (one end of a Unix socketpair handed over by
 * floor.ts through spawn's stdio), read and written in one of several ways. Main thread of its
 * own process.
 *
 *   floor-peer.js client|server READ WRITE REQ_BYTES REPLY_BYTES N WARMUP
 *
 * READ: "data" (net.Socket 'data' events, the bench's raw floor) or "onread" (the socket's public
 * `onread` option: reads land in one reused buffer, no Readable stream). WRITE: "write"
 * (socket.write of one fresh frame, as raw.ts), "tick" (the write deferred to process.nextTick,
 * as our transport flushes its batch), "cork" (header and payload as two writes under
 * cork/uncork: one writev), "sync" (fs.writeSync on the fd we own; EAGAIN or a short write: the
 * rest goes through socket.write), "tick-sync" (that, deferred to process.nextTick), "micro-sync"
 * (that, deferred to a microtask: no nextTick at all in the round trip), "handle" (the socket's
 * own `_write`, its handle write, as our transport writes an idle socket: no Writable bookkeeping
 * and no after-write nextTick), "tick-handle" / "micro-handle" (that, deferred to
 * process.nextTick / a promise reaction). Prints one JSON line: the client its round-trip latencies'
 * p50/p99 and its CPU per round trip, the server its CPU per round trip (process.cpuUsage over the
 * N timed round trips).
 */
import { writeSync } from "node:fs";
import { Socket } from "node:net";

const [role, readMode, writeMode, reqS, repS, nS, warmS] = process.argv.slice(2);
const REQ = Number(reqS), REP = Number(repS), N = Number(nS), WARM = Number(warmS);
const FD = 3;
if (!["client", "server"].includes(role!) || !["data", "onread"].includes(readMode!)
  || !["write", "tick", "cork", "sync", "tick-sync", "micro-sync", "handle", "tick-handle", "micro-handle"].includes(writeMode!) || !(REQ >= 4 && REP >= 4 && N > 0 && WARM >= 0)) {
  process.stderr.write("usage: floor-peer.js client|server data|onread write|tick|cork|sync|tick-sync|micro-sync|handle|tick-handle|micro-handle REQ REPLY N WARMUP\n");
  process.exit(2);
}
const inBytes = role === "client" ? REP : REQ;
const outBytes = role === "client" ? REQ : REP;

let pending = 0; // bytes of the frame being read
const onBytes = (n: number): void => {
  pending += n;
  if (pending < inBytes) return;
  if (pending > inBytes) throw new Error("floor-peer: more than one frame in flight");
  pending = 0;
  onFrame();
};

const readBuf = Buffer.allocUnsafe(64 * 1024);
const opts: ConstructorParameters<typeof Socket>[0] & { onread?: unknown } = { fd: FD, readable: true, writable: true };
if (readMode === "onread") opts.onread = { buffer: readBuf, callback: (n: number) => { onBytes(n); } };
const socket = new Socket(opts);
socket.on("error", (e) => { process.stderr.write(`floor-peer ${role}: ${e.message}\n`); process.exit(1); });
if (readMode === "data") socket.on("data", (c: Buffer) => { onBytes(c.length); });

function frame(): Buffer {
  const f = Buffer.allocUnsafe(outBytes);
  f.writeUInt32LE(outBytes - 4, 0);
  f.fill(0, 4);
  return f;
}

function syncWrite(f: Buffer): void {
  if (socket.writableLength === 0) {
    let done = 0;
    try {
      done = writeSync(FD, f);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
    }
    if (done === f.length) return;
    socket.write(done === 0 ? f : f.subarray(done));
    return;
  }
  socket.write(f);
}

const NOOP = (): void => {};
const RESOLVED = Promise.resolve();
/** One frame through the socket's handle write, when its Writable is idle (else socket.write). */
function handleWrite(f: Buffer): void {
  if (socket.writableLength === 0) (socket as unknown as { _write(c: Buffer, e: string, cb: () => void): void })._write(f, "buffer", NOOP);
  else socket.write(f);
}

const send = (): void => {
  const f = frame();
  switch (writeMode) {
    case "write": socket.write(f); break;
    case "tick": process.nextTick(() => socket.write(f)); break;
    case "tick-sync": process.nextTick(syncWrite, f); break;
    case "micro-sync": queueMicrotask(() => syncWrite(f)); break;
    case "handle": handleWrite(f); break;
    case "tick-handle": process.nextTick(handleWrite, f); break;
    case "micro-handle": void RESOLVED.then(() => handleWrite(f)); break;
    case "cork": socket.cork(); socket.write(f.subarray(0, 4)); socket.write(f.subarray(4)); socket.uncork(); break;
    default: syncWrite(f);
  }
};

let count = 0;
let cpu0 = process.cpuUsage();
const lat: number[] = [];
let t0 = 0;

function finish(): void {
  const cpu = process.cpuUsage(cpu0);
  const perCall = (cpu.user + cpu.system) / N;
  if (role === "client") {
    lat.sort((a, b) => a - b);
    const p = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!;
    process.stdout.write(JSON.stringify({ p50_us: p(0.5), p99_us: p(0.99), cpu_us: perCall }) + "\n");
    socket.end();
  } else {
    process.stdout.write(JSON.stringify({ cpu_us: perCall }) + "\n");
  }
}

function onFrame(): void {
  if (role === "server") {
    if (++count === WARM) cpu0 = process.cpuUsage();
    send();
    if (count === WARM + N) finish();
    return;
  }
  const now = performance.now();
  if (count >= WARM) lat.push((now - t0) * 1000);
  if (++count === WARM) cpu0 = process.cpuUsage();
  if (count === WARM + N) {
    finish();
    return;
  }
  t0 = performance.now();
  send();
}

if (role === "client") {
  if (WARM === 0) cpu0 = process.cpuUsage();
  t0 = performance.now();
  send();
}
socket.on("end", () => socket.end());

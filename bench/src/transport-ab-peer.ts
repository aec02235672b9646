/**
 * One side of transport-ab.ts: ping-pong over several Unix socketpairs at once (fds 3, 4, ...: one
 * per mode, handed over through spawn's stdio), each written in its own way, so that the modes
 * are measured in the same two processes, in alternating blocks, under the same load. Main
 * thread of its own process.
 *
 *   transport-ab-peer.js client|server MODES N BLOCKS WARMUP
 *
 * MODES: comma-separated, one per fd: "transport" (our streamTransport on a plain net.Socket,
 * read from 'data' events, written by its batch flush), "reader" (our streamTransport on a
 * socket read through a SocketReader's `onread` option, as P1's client and server are), "raw"
 * (socket.write of u32-prefixed frames and 'data' events, as the bench's raw floor), "bare" (the
 * true floor of a Node ping-pong: the `onread` option into one reused buffer, each reply written
 * at once in the read callback through the socket's handle write `_write`, as our transport
 * writes an idle socket), "bare-micro" (that, with the write deferred to a promise reaction, as
 * our batch flush is), "bare-gen" (bare-micro with a buffer generator making a new view per
 * read, as a SocketReader's), "base-transport" / "base-reader" (the first two with the capnp package
 * of the checkout in TRANSPORT_AB_BASE, for a paired A/B of two builds). Requests are
 * 160 B and replies 80 B on the wire, as P1's add. A request tagged MARK is answered with the
 * server's process.cpuUsage() (user+system µs) in place of the usual reply, so the client can
 * take each side's CPU per call of each block. The client prints one JSON line per mode.
 */
import { Socket } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as capnp from "@multiprocess-ts/capnp";
import type { Transport } from "@multiprocess-ts/capnp";

const [role, modesS, nS, blocksS, warmS] = process.argv.slice(2);
const MODES = (modesS ?? "").split(",");
const N = Number(nS), BLOCKS = Number(blocksS), WARM = Number(warmS);
if (!["client", "server"].includes(role!) || MODES.some((m) => !["transport", "reader", "base-transport", "base-reader", "raw", "bare", "bare-micro", "bare-gen"].includes(m))
  || !(N > 0 && BLOCKS > 0 && WARM >= 0)) {
  process.stderr.write("usage: transport-ab-peer.js client|server transport,reader,base-transport,base-reader,raw,bare,bare-micro,bare-gen N BLOCKS WARMUP\n");
  process.exit(2);
}
const MARK = 0xfffffff0;
const REQ_WORDS = 19; // 8 B frame header + 152 B = 160 B
const REP_WORDS = 9; // 8 B + 72 B = 80 B

/** The same few byte operations in every mode: the message's tag (u32) and value (f64). */
const F64 = new Float64Array(1);
const F64B = new Uint8Array(F64.buffer);
function tagAt(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
function valueAt(b: Uint8Array, o: number): number {
  for (let i = 0; i < 8; i++) F64B[i] = b[o + i]!;
  return F64[0]!;
}
function putMessage(b: Uint8Array, o: number, tag: number, value: number): void {
  b[o] = tag & 0xff;
  b[o + 1] = (tag >>> 8) & 0xff;
  b[o + 2] = (tag >>> 16) & 0xff;
  b[o + 3] = (tag >>> 24) & 0xff;
  F64[0] = value;
  for (let i = 0; i < 8; i++) b[o + 8 + i] = F64B[i]!;
}

/** A channel: send a request/reply (its tag and a number), get called back per message. */
interface Chan { send(tag: number, value: number): void; onMessage: (tag: number, value: number) => void; close(): void }

/** The other checkout's capnp package (`TRANSPORT_AB_BASE`, set by transport-ab.js --base). */
const BASE_DIR = process.env["TRANSPORT_AB_BASE"];
const base: typeof capnp | null = MODES.some((m) => m.startsWith("base-"))
  ? (await import(pathToFileURL(join(BASE_DIR ?? "", "packages/capnp/dist/index.js")).href)) as typeof capnp : null;

function transportChan(fd: number, words: number, inPlace: boolean, lib: typeof capnp): Chan {
  const reader = inPlace ? new lib.SocketReader() : undefined;
  const socket = new Socket({ fd, readable: true, writable: true, ...(reader === undefined ? {} : { onread: reader.onread }) });
  const t: Transport = lib.streamTransport(socket, undefined, undefined, reader);
  // One segment for every message: the transport copies a small one into its batch (as the
  // engine's pooled buffers are reused), so the harness allocates nothing per message.
  const seg = new Uint8Array(words * 8);
  const chan: Chan = {
    send(tag, value) {
      putMessage(seg, 0, tag, value);
      t.send([seg]);
    },
    onMessage: () => {},
    close() { void t.close(); },
  };
  t.start({
    message(segs) {
      const s = segs[0]!;
      chan.onMessage(tagAt(s, 0), valueAt(s, 8));
    },
    closed() {},
  });
  return chan;
}

function rawChan(fd: number, bytes: number): Chan {
  const socket = new Socket({ fd, readable: true, writable: true });
  socket.on("error", () => socket.destroy());
  let pending: Buffer | null = null;
  const chan: Chan = {
    send(tag, value) {
      const f = Buffer.allocUnsafe(bytes);
      f.fill(0);
      f.writeUInt32LE(bytes - 4, 0);
      f.writeUInt32LE(tag, 4);
      f.writeDoubleLE(value, 8);
      socket.write(f);
    },
    onMessage: () => {},
    close() { socket.end(); },
  };
  socket.on("data", (c: Buffer) => {
    pending = pending === null ? c : Buffer.concat([pending, c]);
    while (pending !== null && pending.length >= 4 && pending.length >= 4 + pending.readUInt32LE(0)) {
      const len: number = 4 + pending.readUInt32LE(0);
      const f: Buffer = pending;
      pending = f.length === len ? null : f.subarray(len);
      chan.onMessage(f.readUInt32LE(4), f.readDoubleLE(8));
    }
  });
  return chan;
}

type HandleWrite = { _write(chunk: Uint8Array, encoding: string, cb: (err?: Error | null) => void): void };
const RESOLVED = Promise.resolve();

/**
 * The bare floor: the `onread` option into one reused 64 KiB buffer (each frame handled in the
 * callback, so reuse is safe), capnp framing of one segment (8 B table) parsed by hand, a reply
 * written through the socket's handle write when its Writable is idle (else socket.write), from
 * one reused buffer when the last write completed at once. `micro`: the write waits for a
 * promise reaction, as the transport's flush does.
 */
function bareChan(fd: number, words: number, micro: boolean, gen = false): Chan {
  const inBuf = Buffer.allocUnsafe(64 * 1024);
  const inAb = inBuf.buffer;
  const inOff = inBuf.byteOffset;
  let carry: Buffer | null = null; // a frame cut by a read (rare in a ping-pong)
  const bytes = words * 8 + 8;
  let out = Buffer.alloc(bytes);
  let outFree = true;
  const written = (): void => { outFree = true; };
  const write = (): void => {
    const s = socket as unknown as HandleWrite;
    if (socket.writableLength === 0) {
      outFree = false;
      s._write(out, "buffer", written);
    } else socket.write(out);
  };
  const frames = (b: Buffer, n: number): number => {
    let off = 0;
    while (n - off >= 8) {
      const total = 8 + b.readUInt32LE(off + 4) * 8;
      if (n - off < total) break;
      chan.onMessage(tagAt(b, off + 8), valueAt(b, off + 16));
      off += total;
    }
    return off;
  };
  const socket = new Socket({
    fd, readable: true, writable: true,
    onread: {
      // gen: a new view of the same bytes per read, as a SocketReader hands out (Node then calls
      // the generator after every read and the handle takes the new view).
      buffer: gen ? () => new Uint8Array(inAb, inOff, 64 * 1024) : inBuf,
      callback: (n: number) => {
        if (carry === null) {
          const used = frames(inBuf, n);
          if (used < n) carry = Buffer.from(inBuf.subarray(used, n));
        } else {
          const all = Buffer.concat([carry, inBuf.subarray(0, n)]);
          const used = frames(all, all.length);
          carry = used < all.length ? all.subarray(used) : null;
        }
        return true;
      },
    },
  } as ConstructorParameters<typeof Socket>[0]);
  socket.on("error", () => socket.destroy());
  const chan: Chan = {
    send(tag, value) {
      if (!outFree) out = Buffer.alloc(bytes); // the last write still holds it
      out.writeUInt32LE(0, 0);
      out.writeUInt32LE(words, 4);
      putMessage(out, 8, tag, value);
      if (micro) void RESOLVED.then(write);
      else write();
    },
    onMessage: () => {},
    close() { socket.end(); },
  };
  return chan;
}

const cpuNow = (): number => { const c = process.cpuUsage(); return c.user + c.system; };
function open(i: number, words: number): Chan {
  switch (MODES[i]) {
    case "raw": return rawChan(3 + i, words * 8 + 8);
    case "bare": return bareChan(3 + i, words, false);
    case "bare-micro": return bareChan(3 + i, words, true);
    case "bare-gen": return bareChan(3 + i, words, true, true);
    case "base-transport": return transportChan(3 + i, words, false, base!);
    case "base-reader": return transportChan(3 + i, words, true, base!);
    default: return transportChan(3 + i, words, MODES[i] === "reader", capnp);
  }
}

if (role === "server") {
  MODES.forEach((_, i) => {
    const ch = open(i, REP_WORDS);
    ch.onMessage = (tag) => { ch.send(tag, tag === MARK ? cpuNow() : 0); };
  });
} else {
  const chans = MODES.map((_, i) => open(i, REQ_WORDS));
  const call = (ch: Chan, tag: number): Promise<number> => new Promise((resolve) => {
    ch.onMessage = (_t, v) => resolve(v);
    ch.send(tag, 0);
  });
  const res = MODES.map(() => ({ client: [] as number[], server: [] as number[], lat: [] as number[] }));
  for (const ch of chans) for (let i = 0; i < WARM; i++) await call(ch, i);
  for (let b = 0; b < BLOCKS; b++) {
    for (let j = 0; j < chans.length; j++) {
      const k = (b + j) % chans.length; // rotate which mode goes first
      const ch = chans[k]!;
      const s0 = await call(ch, MARK);
      const c0 = cpuNow();
      for (let i = 0; i < N; i++) {
        const t0 = performance.now();
        await call(ch, i);
        res[k]!.lat.push((performance.now() - t0) * 1000);
      }
      const c1 = cpuNow();
      const s1 = await call(ch, MARK);
      res[k]!.client.push((c1 - c0) / N);
      res[k]!.server.push((s1 - s0) / N);
    }
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  MODES.forEach((m, k) => {
    const r = res[k]!;
    process.stdout.write(JSON.stringify({ mode: m, p50_us: med(r.lat), cpu_client_us: med(r.client), cpu_server_us: med(r.server),
      client_blocks: r.client, server_blocks: r.server }) + "\n");
  });
  for (const ch of chans) ch.close();
}

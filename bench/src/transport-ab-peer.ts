/**
 * One side of transport-ab.ts: ping-pong over several Unix socketpairs at once (fds 3, 4, ...: one
 * per mode, handed over through spawn's stdio), each written in its own way, so that the modes
 * are measured in the same two processes, in alternating blocks, under the same load. Main
 * thread of its own process.
 *
 *   transport-ab-peer.js client|server MODES N BLOCKS WARMUP
 *
 * MODES: comma-separated, one per fd: "transport" (our streamTransport on a plain net.Socket,
 * read from 'data' events, written by its per-tick batch flush) or "raw" (socket.write of
 * u32-prefixed frames and 'data' events, as the bench's raw floor). Requests are
 * 160 B and replies 80 B on the wire, as P1's add. A request tagged MARK is answered with the
 * server's process.cpuUsage() (user+system µs) in place of the usual reply, so the client can
 * take each side's CPU per call of each block. The client prints one JSON line per mode.
 */
import { Socket } from "node:net";
import { streamTransport, type Transport } from "@multiprocess-ts/capnp";

const [role, modesS, nS, blocksS, warmS] = process.argv.slice(2);
const MODES = (modesS ?? "").split(",");
const N = Number(nS), BLOCKS = Number(blocksS), WARM = Number(warmS);
if (!["client", "server"].includes(role!) || MODES.some((m) => !["transport", "raw"].includes(m))
  || !(N > 0 && BLOCKS > 0 && WARM >= 0)) {
  process.stderr.write("usage: transport-ab-peer.js client|server transport,raw N BLOCKS WARMUP\n");
  process.exit(2);
}
const MARK = 0xfffffff0;
const REQ_WORDS = 19; // 8 B frame header + 152 B = 160 B
const REP_WORDS = 9; // 8 B + 72 B = 80 B

/** A channel: send a request/reply (its tag and a number), get called back per message. */
interface Chan { send(tag: number, value: number): void; onMessage: (tag: number, value: number) => void; close(): void }

function transportChan(fd: number, words: number): Chan {
  const t: Transport = streamTransport(new Socket({ fd, readable: true, writable: true }));
  const chan: Chan = {
    send(tag, value) {
      const seg = new Uint8Array(words * 8);
      const dv = new DataView(seg.buffer);
      dv.setUint32(0, tag, true);
      dv.setFloat64(8, value, true);
      t.send([seg]);
    },
    onMessage: () => {},
    close() { void t.close(); },
  };
  t.start({
    message(segs) {
      const s = segs[0]!;
      const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
      chan.onMessage(dv.getUint32(0, true), dv.getFloat64(8, true));
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

const cpuNow = (): number => { const c = process.cpuUsage(); return c.user + c.system; };
const open = (i: number, words: number): Chan => MODES[i] === "raw" ? rawChan(3 + i, words * 8 + 8)
  : transportChan(3 + i, words);

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

/**
 * Bench diagnostic (not part of `pnpm bench`; issue 13, eleventh session): the CPU of ONE small
 * socket write, by the way it is made, in paired blocks in one process. Main thread of its own
 * process; the peer (a forked copy of this script) only drains the socket.
 *
 *   node bench/dist/write-micro.js [--blocks 60] [--bytes 80]
 *
 * This process accepts one Unix socket connection from the forked peer, which reads everything
 * through `onread` and discards it. Each block makes 20 × 50 writes of `--bytes` bytes per way
 * (the socket is drained between the rounds of 50, so the kernel takes every write at once),
 * the ways in alternating order per block; prints per way the median over the blocks of its CPU
 * per write (`process.cpuUsage`, user + system) and the median of the per-block difference
 * against `_write`. The ways:
 *
 * - `_write`: the socket's own handle write (Node's `writeGeneric`: a new `WriteWrap` request
 *   object per write, then `handle.writeBuffer`), what the stream transport used before;
 * - `direct`: `handle.writeBuffer` with one request object reused while no write is pending,
 *   the stream transport's write since the eleventh session (packages/capnp socket-write.ts);
 * - `new-req`: `handle.writeBuffer` with a new request object per write (what `_write` costs
 *   without its JavaScript: the request object is the difference);
 * - `writeSync`: `fs.writeSync` on the socket's fd (the sixth session's direct write).
 *
 * The request class comes from `process.binding('stream_wrap')` here (deprecated, DEP0111; fine
 * for a diagnostic, never used by the library, which finds it through Node's own `_write`).
 * Nothing is asserted; a write that would not complete at once is counted and printed.
 */
import { fork } from "node:child_process";
import { writeSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

interface Req { getAsyncId(): number }
interface Handle { fd: number; writeBuffer(req: Req, chunk: Uint8Array): number }
type StreamWrap = { WriteWrap: new () => Req };

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

if (process.argv[2] === "peer") {
  const buf = Buffer.allocUnsafe(1 << 20);
  const s = connect({ path: process.argv[3]!, onread: { buffer: buf, callback: () => true } });
  s.on("close", () => process.exit(0));
  s.on("error", () => process.exit(0));
} else {
  await main();
}

async function main(): Promise<void> {
  const blocks = Number(opt("blocks", "60"));
  const bytes = Number(opt("bytes", "80"));
  const dir = mkdtempSync(join(tmpdir(), "write-micro-"));
  const path = join(dir, "s.sock");
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once("connection", r));
  const peer = fork(fileURLToPath(import.meta.url), ["peer", path]);
  const s = await accepted;
  const h = (s as unknown as { _handle: Handle })._handle;
  const { WriteWrap } = (process as unknown as { binding(n: string): StreamWrap }).binding("stream_wrap");
  const chunk = Buffer.alloc(bytes, 1);
  const NOOP = (): void => {};
  let req = new WriteWrap();
  let late = 0; // writes that did not complete at once
  const ways: Record<string, () => void> = {
    _write: () => (s as unknown as { _write(c: Uint8Array, e: string, cb: () => void): void })._write(chunk, "buffer", NOOP),
    direct: () => {
      const e = h.writeBuffer(req, chunk);
      if (e !== 0 || req.getAsyncId() !== -1) {
        late++;
        req = new WriteWrap(); // never reuse a request a pending write holds
      }
    },
    "new-req": () => {
      const r = new WriteWrap();
      if (h.writeBuffer(r, chunk) !== 0 || r.getAsyncId() !== -1) late++;
    },
    writeSync: () => {
      try {
        if (writeSync(h.fd, chunk) !== chunk.byteLength) late++;
      } catch {
        late++;
      }
    },
  };
  const names = Object.keys(ways);
  const per: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const PER = 50, ROUNDS = 20, WARM = 3;
  for (let b = 0; b < blocks + WARM; b++) {
    for (const n of b % 2 === 0 ? names : [...names].reverse()) {
      const f = ways[n]!;
      let cpu = 0;
      for (let r = 0; r < ROUNDS; r++) {
        await new Promise((res) => setTimeout(res, late > 0 ? 20 : 1)); // the peer drains
        late = 0;
        const c0 = process.cpuUsage();
        for (let i = 0; i < PER; i++) f();
        const c1 = process.cpuUsage(c0);
        cpu += c1.user + c1.system;
      }
      if (b >= WARM) per[n]!.push(cpu / (PER * ROUNDS));
    }
  }
  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  console.log(`write-micro: ${bytes} B writes to a Unix socket, ${blocks} blocks × ${ROUNDS * PER} per way; CPU µs per write`);
  console.log("way         median   Δ vs _write (median of per-block differences)");
  for (const n of names) {
    const d = per[n]!.map((v, i) => v - per["_write"]![i]!);
    console.log(`${n.padEnd(10)} ${med(per[n]!).toFixed(3).padStart(7)}   ${med(d).toFixed(3).padStart(7)}`);
  }
  s.destroy();
  server.close();
  await new Promise((r) => peer.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
}

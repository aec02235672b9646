/**
 * Bench diagnostic (not part of `pnpm bench`): the JavaScript cost of one small round trip through
 * the stream transport read through a `SocketReader`, without the kernel or Node's socket
 * internals, for several builds in one process in alternating blocks (issue 13, ninth session).
 * A stand-in kernel copies a 160 B frame (P1's Call) into the region the reader handed out and
 * calls its `onread` callback; the sink answers with an 80 B message at once; the read turn's
 * flush writes it through the socket's `_write`, here a no-op completing synchronously (a
 * handle-less net.Socket). "bare" is the floor of the same loop: one reused buffer, the frame
 * parsed by hand, the reply handed to `_write` at once. Prints each mode's median CPU ns per round
 * trip and the median per-block difference against the first mode; asserts nothing.
 *
 *   node bench/dist/transport-micro.js [--n 50000] [--blocks 30] [--warm 100000] DIR|bare ...
 *
 * DIR: a built checkout (its packages/capnp). Main thread.
 */
import { Socket } from "node:net";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type * as Capnp from "@multiprocess-ts/capnp";
import { takeOption } from "./diag-loops.js";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => takeOption(args, name, dflt);
const N = Number(opt("--n", "50000"));
const BLOCKS = Number(opt("--blocks", "30"));
const WARM = Number(opt("--warm", "100000"));
if (args.length === 0) throw new Error("usage: transport-micro.js [--n N] [--blocks B] DIR|bare ...");

type HandleWrite = { _write(chunk: Uint8Array, encoding: string, cb: () => void): void };
/** A handle-less socket whose handle write completes at once. */
function sinkSocket(): Socket {
  const s = new Socket();
  (s as unknown as HandleWrite)._write = (_c, _e, cb) => cb();
  return s;
}

const R = Promise.resolve();
const FRAME = new Uint8Array(160);
FRAME[4] = 19; // one segment of 19 words
const NOOP = (): void => {};

function bare(): (n: number) => Promise<void> {
  const s = sinkSocket() as unknown as HandleWrite;
  const buf = new Uint8Array(64 * 1024);
  const out = new Uint8Array(80);
  return async (n) => {
    for (let i = 0; i < n; i++) {
      buf.set(FRAME);
      const total = 8 + (buf[4]! | (buf[5]! << 8)) * 8;
      if (total === 160) {
        out[8] = buf[8]!;
        s._write(out, "buffer", NOOP);
      }
      await R;
    }
  };
}

async function transport(dir: string): Promise<(n: number) => Promise<void>> {
  const capnp = (await import(pathToFileURL(join(resolve(dir), "packages/capnp/dist/index.js")).href)) as typeof Capnp;
  const reader = new capnp.SocketReader();
  const t = capnp.streamTransport(sinkSocket(), undefined, undefined, reader);
  const reply = new Uint8Array(72);
  t.start({ message: () => t.send([reply]), closed: NOOP });
  const gen = reader.onread.buffer as () => Uint8Array;
  const cb = reader.onread.callback;
  let region = gen();
  return async (n) => {
    for (let i = 0; i < n; i++) {
      region.set(FRAME);
      cb(160, region);
      region = gen();
      await R;
    }
  };
}

const modes: { name: string; run: (n: number) => Promise<void> }[] = [];
for (const a of args) modes.push({ name: a, run: a === "bare" ? bare() : await transport(a) });
for (const m of modes) await m.run(WARM); // warm-up
const got: number[][] = modes.map(() => []);
for (let b = 0; b < BLOCKS; b++) {
  for (let j = 0; j < modes.length; j++) {
    const k = (b + j) % modes.length;
    const c0 = process.cpuUsage();
    await modes[k]!.run(N);
    const c = process.cpuUsage(c0);
    got[k]!.push(((c.user + c.system) * 1000) / N);
  }
}
const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
console.log(`transport micro — ${BLOCKS} blocks × ${N} round trips per mode, alternating; CPU ns per round trip`);
modes.forEach((m, k) => {
  const d = got[k]!.map((x, i) => x - got[0]![i]!);
  console.log(`${m.name.padEnd(24)} median ${med(got[k]!).toFixed(0).padStart(6)}  Δ vs first ${med(d).toFixed(0).padStart(6)}  lower in ${d.filter((x) => x < 0).length}/${BLOCKS}`);
});

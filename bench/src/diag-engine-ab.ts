/**
 * Bench diagnostic (not part of `pnpm bench`): both ends of P1's `add` (and P2's, `--pipe 64`) in
 * ONE process over an in-process copying link ({@link CopyEnd}), for TWO builds of this
 * repository side by side,
 * in alternating blocks (issue 13, ninth session). What a block costs is our own code on both
 * sides (generated client and server, runtime, engine), without sockets,
 * Node streams, the kernel or cross-process wake-ups; the two builds run in the same process
 * under the same load, so a paired difference per block resolves changes that the one-process
 * figures of single runs (`one-process.js`, whose rounds move by 30 % at load 3) do not.
 *
 *   node bench/dist/diag-engine-ab.js --a DIR --b DIR [--n 5000] [--blocks 30] [--pipe 0] [--warm 4] [--p4]
 *
 * `--p4`: P4's `callbackSaved(i)` instead of `add` (the server calls the client's saved callback
 * during the call: two Context calls, a server Thread task on each side; tenth session).
 *
 * The link behaves as the stream transport does towards the engine, not as `memoryTransportPair`
 * (which hands over the sender's buffers, so the engine's pooled buffers are never given back,
 * and which describes every message it carries): `sendCopy` copies, `sendLazy` waits for the
 * next message, and what a turn sent reaches the peer on its next macrotask as one read would,
 * all of it in one fresh buffer (the engine reads the messages in place there).
 *
 * DIR is a built checkout (e.g. the baseline worktree and this one). Each build's runtime,
 * generated FooInterface and bench impl are loaded by absolute path (two module graphs, each with
 * its own capnp-ts). Blocks alternate A B B A ...; each block's `process.cpuUsage()` over its `n`
 * calls is one sample. Prints each build's median and range and the median of the per-block
 * paired difference B − A, with how many blocks B was lower in. Nothing is asserted.
 *
 * Threading: the main (loop) thread.
 */

import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { abReport, addBlock, cpuNow } from "./diag-loops.js";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

let slab = new Uint8Array(1024);
let slabUsed = 0;

/** One end of the copying link (structurally a Transport of either build). */
class CopyEnd {
  peer!: CopyEnd;
  private sink: { message(segs: Uint8Array[]): void; closed(err?: Error): void } | null = null;
  /** This turn's messages, copied back to back (each padded to a word). */
  private staging = new Uint8Array(64 * 1024);
  private used = 0;
  private lens: number[] = [];
  private scheduled = false;
  private inbox: Uint8Array[] = [];
  start(sink: { message(segs: Uint8Array[]): void; closed(err?: Error): void }): void {
    this.sink = sink;
    this.drain();
  }
  send(segs: Uint8Array[]): void {
    this.queue(segs);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }
  sendCopy(segs: Uint8Array[]): boolean {
    this.send(segs);
    return true;
  }
  sendLazy(segs: Uint8Array[]): void {
    this.queue(segs);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  destroy(): void {}
  private queue(segs: Uint8Array[]): void {
    const s = segs[0]!;
    const n = s.byteLength;
    if (segs.length !== 1 || this.used + n > this.staging.byteLength) throw new Error("diag-engine-ab: one small segment per message only");
    this.staging.set(s, this.used);
    this.lens.push(n);
    this.used += (n + 7) & ~7;
  }
  /** All of this turn's messages, in one new buffer (one "read"), to the peer. */
  private flush(): void {
    this.scheduled = false;
    // Carved from a 1 KiB slab, as the socket reader's small reads are (socket-read.ts).
    if (slabUsed + this.used > slab.byteLength) {
      slab = new Uint8Array(Math.max(1024, this.used));
      slabUsed = 0;
    }
    const buf = slab.subarray(slabUsed, slabUsed + this.used);
    buf.set(this.staging.subarray(0, this.used));
    slabUsed += this.used;
    let at = 0;
    const lens = this.lens;
    for (let i = 0; i < lens.length; i++) {
      const n = lens[i]!;
      this.peer.inbox.push(buf.subarray(at, at + n));
      at += (n + 7) & ~7;
    }
    this.lens = [];
    this.used = 0;
    this.peer.drain();
  }
  private drain(): void {
    const sink = this.sink;
    if (sink === null) return;
    const msgs = this.inbox;
    this.inbox = [];
    for (const m of msgs) sink.message([m]);
  }
}

interface Foo {
  add(a: number, b: number): Promise<number>;
  callbackSaved(i: number): Promise<number>;
}

/** One build's client, connected over its own memory transport pair to its own server. */
async function loadBuild(dir: string): Promise<Foo> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const impl = (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js");
  const loop = new rt.EventLoop(`diag-engine-ab ${dir}`, { log: { level: "warning" } });
  const ct = new CopyEnd();
  const st = new CopyEnd();
  ct.peer = st;
  st.peer = ct;
  rt.serveTransport(loop, st, new impl.BenchFoo(), foo.FooInterfaceServer);
  const client = await rt.connectTransport(loop, ct, foo.FooInterfaceClient);
  if (p4) {
    await client.initThreadMap();
    await client.saveCallback({ call: (arg: number) => arg * 2 });
  }
  return client;
}

async function p4Block(foo: Foo, n: number): Promise<number> {
  const c0 = cpuNow();
  for (let i = 0; i < n; i++) if ((await foo.callbackSaved(i)) !== i * 2) throw new Error("diag-engine-ab: wrong callback result");
  return (cpuNow() - c0) / n;
}

const block = (foo: Foo, n: number, pipe: number): Promise<number> => (p4 ? p4Block(foo, n) : addBlock(foo, n, pipe, "diag-engine-ab"));

const p4 = process.argv.includes("--p4");
const dirs = [opt("a", "."), opt("b", ".")];
const n = Number(opt("n", "5000"));
const blocks = Number(opt("blocks", "30"));
const pipe = Number(opt("pipe", "0"));
const warm = Number(opt("warm", "4"));
const foos: Foo[] = [];
for (const d of dirs) foos.push(await loadBuild(d));
for (let w = 0; w < warm; w++) for (const f of foos) await block(f, Math.max(n, 5000), pipe);
const got: number[][] = [[], []];
for (let b = 0; b < blocks; b++) {
  const order = b % 2 === 0 ? [0, 1] : [1, 0];
  for (const i of order) got[i]!.push(await block(foos[i]!, n, pipe));
}
const what = p4 ? "callbackSaved (P4)" : pipe > 1 ? `add, ${pipe} in flight` : "sequential add";
process.stdout.write(abReport(`both sides in one process, CPU µs per call (${blocks} blocks of ${n} ${what}, alternating)`, dirs, got));
process.exit(0);

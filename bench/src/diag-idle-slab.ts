/**
 * Bench diagnostic (not part of `pnpm bench`): memory per connection read through a SocketReader
 * (net.Socket's `onread` path, as the bench server's accepted sockets are) after a burst, and once
 * idle (issue 13, ninth session). One process: `--conns K` Unix socket pairs; our end is switched
 * to a reader (`readSocketInPlace`) and fed to `streamTransport`; each peer writes a burst of 64
 * P1-sized frames (160 B) in one write, which a read fills its region with, so the reader takes
 * its large (64 KiB) slab. Prints, per connection, the RSS and ArrayBuffer bytes (after gc())
 * over the baseline of the same connections before the burst (each made one small read): right
 * after the burst, and after `--idle-ms` (default 2.5 × the sweep period) idle.
 *
 *   node --expose-gc bench/dist/diag-idle-slab.js [--conns 200] [--lib DIR] [--idle-ms MS]
 *
 * `--lib DIR`: the capnp package of another built checkout (before / after comparisons). Main
 * thread; prints, asserts nothing.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { once } from "node:events";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type * as Capnp from "@multiprocess-ts/capnp";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};
const CONNS = Number(opt("conns", "200"));
const LIB = opt("lib", "");
const capnp = (LIB === ""
  ? await import("@multiprocess-ts/capnp")
  : await import(pathToFileURL(join(resolve(LIB), "packages/capnp/dist/index.js")).href)) as typeof Capnp;
const IDLE_MS = Number(opt("idle-ms", String(2.5 * (capnp.IDLE_SLAB_MS ?? 2000))));
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("diag-idle-slab: run with node --expose-gc");

/** One frame of P1's size (8 B table + 152 B), a one-segment message. */
function frame(i: number): Uint8Array {
  const f = new Uint8Array(160);
  f[4] = 19;
  f[8] = i & 0xff;
  return f;
}

const dir = mkdtempSync(join(tmpdir(), "mpts-idle-slab-"));
const path = join(dir, "s.sock");
const server = net.createServer({ pauseOnConnect: true });
server.listen(path);
await once(server, "listening");
const ends: { ours: net.Socket; peer: net.Socket; t: Capnp.Transport; got: number; wait: (n: number) => Promise<void> }[] = [];
for (let i = 0; i < CONNS; i++) {
  const accepted = once(server, "connection");
  const peer = net.connect({ path });
  await once(peer, "connect");
  const [ours] = (await accepted) as [net.Socket];
  const reader = new capnp.SocketReader();
  if (!capnp.readSocketInPlace(ours, reader)) throw new Error("diag-idle-slab: this Node cannot read accepted sockets in place");
  const t = capnp.streamTransport(ours, undefined, undefined, reader);
  let want = 0;
  let wake: (() => void) | null = null;
  const e = { ours, peer, t, got: 0, wait: (n: number) => new Promise<void>((r) => { want = n; if (e.got >= n) r(); else wake = r; }) };
  t.start({ message: () => { if (++e.got >= want && wake !== null) { const w = wake; wake = null; w(); } }, closed: () => {} });
  ends.push(e);
}
server.close();

const mem = (): { rss: number; ab: number } => {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, ab: m.arrayBuffers };
};
const burst = new Uint8Array(64 * 160);
for (let i = 0; i < 64; i++) burst.set(frame(i), i * 160);
for (const e of ends) e.peer.write(frame(0)); // one small read each: a never-busy connection
await Promise.all(ends.map((e) => e.wait(1)));
const base = mem();
for (const e of ends) e.peer.write(burst);
await Promise.all(ends.map((e) => e.wait(65)));
const busy = mem();
await new Promise((r) => setTimeout(r, IDLE_MS));
const idle = mem();
const per = (a: number, b: number): string => `${((a - b) / CONNS / 1024).toFixed(1)} KiB`;
console.log(`idle slabs — ${CONNS} connections, capnp from ${LIB === "" ? "this checkout" : LIB}, idle ${IDLE_MS} ms; per connection over the never-busy baseline:`);
console.log(`  after the burst: RSS ${per(busy.rss, base.rss)}, ArrayBuffers ${per(busy.ab, base.ab)}`);
console.log(`  once idle:       RSS ${per(idle.rss, base.rss)}, ArrayBuffers ${per(idle.ab, base.ab)}`);
for (const e of ends) {
  e.peer.destroy();
  e.ours.destroy();
}
rmSync(dir, { recursive: true, force: true });

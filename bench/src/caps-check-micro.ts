/**
 * Bench diagnostic (not part of `pnpm bench`): what the dispatcher spends validating and decoding
 * the envelope of P4's incoming Call (a `Proxy.Context` call: a cap table of two descriptors, the
 * params' Context struct of two capability pointers), by the two paths one build has for it
 * (issue 13, thirteenth session; bench/README.md "P4 (thirteenth session)"):
 *
 * - `full`: what rpc/dispatch.ts did before rpc/hot-caps.ts: hot-shape.ts `hotEnvelope` (which
 *   declines it), validate.ts `validateRpcMessageNear` (walk.ts + envelope-check.ts), fastpath.ts
 *   `decodeControl` (declines), the in-place reader's message, `decodeEnvelope`;
 * - `caps`: what it does now: `hotEnvelope` (declines), rpc/hot-caps.ts `hotCapsCall`, the
 *   in-place reader's message and the content Pointer.
 *
 *   node bench/dist/caps-check-micro.js [--n 20000] [--blocks 30] [DIR]
 *
 * DIR: a built checkout with rpc/hot-caps.ts (default: this one). The Call's bytes are
 * flat-call.ts `encodeFlatCapsCall`'s for the Context layout (what questions.ts `sendFlatCaps`
 * sends for P4's `callbackSaved`), placed at byte 8 of a 4 KiB slab as a socket read lands. Both
 * paths run in this one process in alternating blocks (the order flips every block): each
 * block takes this process's CPU time (`process.cpuUsage`: a loaded machine's descheduling is not counted) over `n` runs of one path; prints each path's median ns per message and the median
 * per-block difference. Asserts that both paths read the same envelope; nothing else.
 *
 * Threading: the main thread.
 */
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as capnp from "capnp-ts";
import { takeOption } from "./diag-loops.js";

const args = process.argv.slice(2);
const N = Number(takeOption(args, "--n", "20000"));
const BLOCKS = Number(takeOption(args, "--blocks", "30"));
const dir = resolve(args[0] ?? fileURLToPath(new URL("../..", import.meta.url)));
const mod = async <T>(p: string): Promise<T> => (await import(pathToFileURL(join(dir, "packages/capnp/dist", p)).href)) as T;

type Env = { which: number; id: number; methodId: number; importedCap: number; capTableAt: number; contentAt: number; content: { byteOffset: number } | null; reset(seg: unknown, depth: number): void; bind(seg: unknown, depth: number): void; clear(): void };
type Seg = { byteOffset: number };
type Msg = { _capnp: { segments: Seg[]; traversalLimit: number } };
interface Fastpath {
  Envelope: new () => Env;
  messageInPlace(s: Uint8Array): Msg;
  decodeControl(s: Uint8Array, env: Env): boolean;
  decodeEnvelope(seg: Seg, depth: number, env: Env): boolean;
  pointerAt(ctor: unknown, seg: Seg, at: number, depth: number): { byteOffset: number };
}
const fp = await mod<Fastpath>("fastpath.js");
const { validateRpcMessageNear } = await mod<{ validateRpcMessageNear(s: Uint8Array[], lim: unknown): boolean }>("validate.js");
const { hotEnvelope } = await mod<{ hotEnvelope(s: Uint8Array, lim: unknown, env: Env): boolean }>("rpc/hot-shape.js");
const { hotCapsCall } = await mod<{ hotCapsCall(s: Uint8Array, lim: unknown, env: Env): boolean }>("rpc/hot-caps.js");
const { DEFAULT_LIMITS } = await mod<{ DEFAULT_LIMITS: { nestingLimit: number } }>("limits.js");
const fc = await mod<{
  encodeFlatCapsCall(out: Uint8Array, dv: DataView, qid: number, iid: bigint, mid: number, dw: number, pw: number, cs: number, csp: number, slots: number[], n: number, imp: number): number;
  flatCapsCallBytes(dw: number, pw: number, csp: number, n: number): number;
}>("flat-call.js");

// P4's Call: params of one data word and the Context pointer; the Context's callbackThread
// (pointer 1: ours, senderHosted) and thread (pointer 0: the peer's, receiverHosted).
const len = fc.flatCapsCallBytes(1, 1, 2, 2);
const slab = new Uint8Array(4096);
const s = slab.subarray(8, 8 + len);
const d0 = fc.encodeFlatCapsCall(s, new DataView(slab.buffer, 8), 9, 0x90de09db457f4d3bn, 3, 1, 1, 0, 2, [1, 0], 2, 4);
const dv = new DataView(slab.buffer, 8);
dv.setUint32(104, 7, true);
dv.setUint16(d0, 1, true);
dv.setUint32(d0 + 4, 5, true);
dv.setUint16(d0 + 16, 3, true);
const lim = DEFAULT_LIMITS;
const depth = lim.nestingLimit;
const env = new fp.Envelope();

function full(): Env {
  if (hotEnvelope(s, lim, env)) throw new Error("caps-check-micro: hotEnvelope took a Call with a cap table");
  const near = validateRpcMessageNear([s], lim);
  if (!near || fp.decodeControl(s, env)) throw new Error("caps-check-micro: unexpected shape");
  const m = fp.messageInPlace(s);
  m._capnp.traversalLimit = Infinity;
  const seg = m._capnp.segments[0]!;
  env.reset(seg, depth);
  if (!fp.decodeEnvelope(seg, depth, env)) throw new Error("caps-check-micro: decodeEnvelope declined");
  return env;
}

function caps(): Env {
  if (hotEnvelope(s, lim, env) || !hotCapsCall(s, lim, env)) throw new Error("caps-check-micro: hotCapsCall declined");
  const m = fp.messageInPlace(s);
  m._capnp.traversalLimit = Infinity;
  const seg = m._capnp.segments[0]!;
  env.bind(seg, depth);
  env.content = fp.pointerAt(capnp.Pointer, seg, seg.byteOffset + env.contentAt, depth - 3);
  env.capTableAt += seg.byteOffset;
  return env;
}

const seen = (e: Env): string => JSON.stringify([e.which, e.id, e.methodId, e.importedCap, e.capTableAt, e.content?.byteOffset]);
const a = seen(full());
env.clear();
const b = seen(caps());
env.clear();
if (a !== b) throw new Error(`caps-check-micro: the paths read different envelopes: ${a} / ${b}`);

function block(f: () => Env): number {
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    f();
    env.clear();
  }
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / N;
}

for (let w = 0; w < 5; w++) {
  block(full);
  block(caps);
}
const fs: number[] = [];
const cs: number[] = [];
const diffs: number[] = [];
for (let k = 0; k < BLOCKS; k++) {
  let f: number;
  let c: number;
  if (k % 2 === 0) {
    f = block(full);
    c = block(caps);
  } else {
    c = block(caps);
    f = block(full);
  }
  fs.push(f);
  cs.push(c);
  diffs.push(c - f);
}
const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
console.log(`P4's incoming Call (${len} bytes), ${BLOCKS} blocks of ${N}, ns of CPU per message, ${dir}`);
console.log(`full (validate + decode)  ${med(fs).toFixed(0)}`);
console.log(`caps (hotCapsCall)        ${med(cs).toFixed(0)}`);
console.log(`caps − full per block, median: ${med(diffs).toFixed(0)} (caps lower in ${diffs.filter((x) => x < 0).length}/${BLOCKS})`);

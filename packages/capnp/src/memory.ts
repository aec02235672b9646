/**
 * An in-memory, deterministic transport pair for tests (in the spirit of capnweb's TestTransport
 * and KJ's TestNetwork): asynchronous, ordered delivery, with a fence to hold messages, a way to
 * break the link like a transport error would, and a log of the rpc.capnp message kinds sent.
 * State, the sink and the once-only end report live in {@link TransportLifecycle}; this file owns
 * the in-memory delivery (inbox, fence, EOF) and the wire log.
 *
 * Threading: both ends live on the thread that created the pair.
 */

import { DisconnectedError } from "./errors.js";
import type { Transport, TransportSink } from "./transport.js";
import { TransportLifecycle, type LifecycleHost } from "./transport-lifecycle.js";

/** One entry of {@link MemoryTransport.wireLog}. */
export interface WireLogEntry {
  dir: "out";
  /** rpc.capnp `Message` union member in camelCase ("call", "return", "finish", ...), or "?" when undecodable. */
  which: string;
  /** For `return`: the `Return` union member ("results", "exception", "canceled", ...). */
  variant?: string;
}

/** One end of {@link memoryTransportPair}. */
export interface MemoryTransport extends Transport {
  /** Hold messages (and a pending close) sent from this side from now on, until {@link release}. */
  fence(): void;
  /**
   * Deliver held messages in order: the first `n`, or, without `n`, all of them and lift the
   * fence (later sends flow again). `release(n)` keeps the fence up.
   */
  release(n?: number): void;
  /** Number of messages sent from this side that the fence holds. */
  readonly held: number;
  /** Fail the link on both sides as a transport error would: both sinks see `closed(err)`. */
  break(err?: Error): void;
  /** rpc.capnp message kinds sent from this side, in send order. */
  readonly wireLog: WireLogEntry[];
}

const MESSAGE_WHICH: readonly string[] = [
  "unimplemented", "abort", "call", "return", "finish", "resolve", "release", "obsoleteSave",
  "bootstrap", "obsoleteDelete", "provide", "accept", "join", "disembargo",
];
const RETURN_WHICH: readonly string[] = [
  "results", "exception", "canceled", "resultsSentElsewhere", "takeFromOtherQuestion", "acceptFromThirdParty",
];

interface StructRef { seg: number; data: number; dataWords: number; ptrWords: number }

/** Follow a struct pointer (with far/double-far) at word `w` of segment `seg`; null if absent or bad. */
function followStruct(segs: readonly Uint8Array[], seg: number, w: number): StructRef | null {
  const dv = (i: number): DataView | null => {
    const s = segs[i];
    return s === undefined ? null : new DataView(s.buffer, s.byteOffset, s.byteLength);
  };
  let v = dv(seg);
  if (v === null || (w + 1) * 8 > v.byteLength) return null;
  let lo = v.getUint32(w * 8, true);
  let hi = v.getUint32(w * 8 + 4, true);
  if (lo === 0 && hi === 0) return null;
  if ((lo & 3) === 2) {
    const double = (lo & 4) !== 0;
    const pad = lo >>> 3;
    seg = hi;
    v = dv(seg);
    if (v === null || (pad + (double ? 2 : 1)) * 8 > v.byteLength) return null;
    lo = v.getUint32(pad * 8, true);
    hi = v.getUint32(pad * 8 + 4, true);
    if (!double) {
      w = pad;
    } else {
      if ((lo & 7) !== 2) return null;
      const start = lo >>> 3;
      const tagLo = v.getUint32(pad * 8 + 8, true);
      const tagHi = v.getUint32(pad * 8 + 12, true);
      if ((tagLo & 3) !== 0) return null;
      const target = hi;
      return bounded(segs, { seg: target, data: start, dataWords: tagHi & 0xffff, ptrWords: tagHi >>> 16 });
    }
  }
  if ((lo & 3) !== 0) return null;
  const off = (lo | 0) >> 2;
  return bounded(segs, { seg, data: w + 1 + off, dataWords: hi & 0xffff, ptrWords: hi >>> 16 });
}

function bounded(segs: readonly Uint8Array[], r: StructRef): StructRef | null {
  const s = segs[r.seg];
  if (s === undefined || r.data < 0 || (r.data + r.dataWords + r.ptrWords) * 8 > s.byteLength) return null;
  return r;
}

function u16(segs: readonly Uint8Array[], r: StructRef, byte: number): number {
  if (byte + 2 > r.dataWords * 8) return 0;
  const s = segs[r.seg]!;
  const o = r.data * 8 + byte;
  return s[o]! | (s[o + 1]! << 8);
}

/** Names the rpc.capnp `Message` union member of a message from its raw bytes (no capnp-ts decode). */
export function describeRpcMessage(segs: readonly Uint8Array[]): WireLogEntry {
  const root = followStruct(segs, 0, 0);
  if (root === null) return { dir: "out", which: "?" };
  const which = MESSAGE_WHICH[u16(segs, root, 0)] ?? "?";
  if (which !== "return") return { dir: "out", which };
  const ret = root.ptrWords > 0 ? followStruct(segs, root.seg, root.data + root.dataWords) : null;
  if (ret === null) return { dir: "out", which };
  return { dir: "out", which, variant: RETURN_WHICH[u16(segs, ret, 6)] ?? "?" };
}

type Event = { kind: "message"; segments: Uint8Array[] } | { kind: "eof" };

// Deliveries run as microtasks (fast, deterministic). Two engines that keep answering each
// other would then never let the event loop turn, and no test timeout could fire; so after a
// long burst of microtask deliveries, the next ones wait for a macrotask turn (setImmediate).
const BURST = 10_000;
let burst = 0;
let burstReset = false;

function scheduleDrain(fn: () => void): void {
  if (burst < BURST) {
    burst++;
    if (!burstReset) {
      burstReset = true;
      setImmediate(() => {
        burst = 0;
        burstReset = false;
      });
    }
    queueMicrotask(fn);
  } else {
    setImmediate(fn);
  }
}

class MemoryEnd implements MemoryTransport, LifecycleHost {
  peer!: MemoryEnd;
  readonly wireLog: WireLogEntry[] = [];
  private readonly life: TransportLifecycle = new TransportLifecycle(this);
  /** Delivered to this end but not yet passed to the sink (waiting for start() or the microtask). */
  private readonly inbox: Event[] = [];
  private inboxScheduled = false;
  /** Sent from this end and held by the fence. */
  private readonly heldQueue: Event[] = [];
  private fenced = false;
  private readonly closeWaiters: (() => void)[] = [];
  private eofSent = false;

  get name(): string {
    return "MemoryTransport";
  }

  get held(): number {
    let n = 0;
    for (const e of this.heldQueue) if (e.kind === "message") n++;
    return n;
  }

  start(sink: TransportSink): void {
    this.life.start(sink); // guard: throws when called twice; reports an end that came first
    this.schedule();
  }

  send(segments: Uint8Array[]): void {
    if (!this.life.canSend) return;
    this.wireLog.push(describeRpcMessage(segments));
    this.route({ kind: "message", segments });
  }

  /**
   * Queue an EOF behind everything sent so far (held messages included). Resolves once the EOF
   * has been handed to the peer (not held by the fence), or the link ended; both sinks then see
   * `closed()` when the peer reads the EOF.
   */
  close(): Promise<void> {
    if (this.life.isEnded || this.eofSent) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    if (this.life.beginClose()) this.route({ kind: "eof" }); // flushed behind queued and held messages
    return p;
  }

  destroy(err?: Error): void {
    if (this.life.isEnded) return;
    this.life.beginClose();
    this.heldQueue.length = 0;
    const peerErr = err === undefined ? undefined : new DisconnectedError("peer transport destroyed", { cause: err });
    this.peer.end(peerErr);
    this.end(err);
  }

  break(err?: Error): void {
    if (this.life.isEnded && this.peer.life.isEnded) return;
    const e = err ?? new DisconnectedError("memory transport broken");
    this.heldQueue.length = 0;
    this.peer.heldQueue.length = 0;
    this.end(e);
    this.peer.end(e);
  }

  fence(): void {
    this.fenced = true;
  }

  release(n?: number): void {
    if (n === undefined) this.fenced = false;
    let left = n ?? Infinity;
    while (this.heldQueue.length > 0 && left > 0) {
      const e = this.heldQueue.shift()!;
      if (e.kind === "message") left--;
      this.send1(e);
    }
    // An EOF directly behind the released messages goes too: it is not a message.
    if (this.heldQueue[0]?.kind === "eof" && (n === undefined || left === 0) && !this.hasHeldMessages()) {
      this.send1(this.heldQueue.shift()!);
    }
  }

  private hasHeldMessages(): boolean {
    return this.heldQueue.some((e) => e.kind === "message");
  }

  private route(e: Event): void {
    if (this.fenced || this.heldQueue.length > 0) this.heldQueue.push(e);
    else this.send1(e);
  }

  /** Hand one event to the peer. close() resolves once its EOF has left (like a socket's 'finish'). */
  private send1(e: Event): void {
    this.peer.deliver(e);
    if (e.kind === "eof") {
      this.eofSent = true;
      for (const w of this.closeWaiters.splice(0)) w();
    }
  }

  /** Incoming event from the peer. */
  private deliver(e: Event): void {
    if (this.life.isEnded) return;
    this.inbox.push(e);
    this.schedule();
  }

  private schedule(): void {
    if (this.inboxScheduled || !this.life.started || this.inbox.length === 0) return;
    this.inboxScheduled = true;
    scheduleDrain(() => this.drain());
  }

  private drain(): void {
    this.inboxScheduled = false;
    while (this.inbox.length > 0 && !this.life.isEnded) {
      const e = this.inbox.shift()!;
      if (e.kind === "eof") {
        // The peer closed cleanly: both ends are done.
        this.peer.end(undefined);
        this.end(undefined);
        break;
      }
      this.life.deliver(e.segments);
    }
  }

  /** A throwing sink is a bug in the engine; fail the link rather than crash the process. */
  sinkThrew(err: Error): void {
    this.break(err);
  }

  /** Take this end down with `err`; the lifecycle reports it to the sink asynchronously. */
  private end(err: Error | undefined): void {
    if (!this.life.end(err)) return;
    this.inbox.length = 0;
    this.heldQueue.length = 0;
    for (const w of this.closeWaiters.splice(0)) w();
  }
}

/**
 * A connected pair of in-memory transports. Messages sent on one end reach the other end's sink
 * asynchronously (a microtask later), in order, unless a fence holds them. Segments are passed
 * by reference (ownership moves with the message, as {@link Transport.send} says).
 */
export function memoryTransportPair(): [MemoryTransport, MemoryTransport] {
  const a = new MemoryEnd();
  const b = new MemoryEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

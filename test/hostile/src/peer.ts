/**
 * A raw attacking peer on a real socket (Unix or TCP): writes hand-built frames, decodes what
 * the server answers (Return / Abort) with capnp-ts's rpc.capnp reader, and reports when the
 * server closed the socket. Threading: the loop thread of the test or benchmark.
 */

import * as net from "node:net";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { FrameDecoder, readMessage } from "@multiprocess-ts/capnp";
import type { ListenTarget } from "@multiprocess-ts/node";
import { bootstrapMessage, finishMessage, frame } from "./wire.js";

/** What the server answered to one question. */
export interface Answer {
  /** "results", "exception" or another Return kind. */
  kind: string;
  /** Exception reason when `kind === "exception"`. */
  reason: string;
  /** First Int32 of the results content (add's result). */
  int0: number;
}

/** Socket options for `net.connect` of a listen target. */
export function connectOptions(target: ListenTarget): net.NetConnectOpts {
  if (typeof target === "string") return { path: target };
  if (typeof target === "number") return { port: target, host: "127.0.0.1" };
  if ("path" in target) return { path: target.path };
  return { port: target.port, host: target.host ?? "127.0.0.1" };
}

export class RawPeer {
  /** Resolves when the server closed (or reset) the socket. */
  readonly closed: Promise<void>;
  /** The Abort reason the server sent, if any. */
  abortReason: string | undefined;
  /** Release messages the server sent: export ID → reference count released. */
  readonly releases = new Map<number, number>();
  private readonly decoder = new FrameDecoder({ maxMessageBytes: 1 << 30 });
  private readonly waiting = new Map<number, (a: Answer) => void>();
  private readonly answers = new Map<number, Answer>();
  private nextQid = 1;

  private constructor(readonly socket: net.Socket) {
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      for (const segs of this.decoder.push(chunk)) this.onMessage(segs);
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  /** Connect; when `bootstrap`, also send Bootstrap as question 0 (calls then pipeline on it). */
  static async connect(target: ListenTarget, bootstrap = true): Promise<RawPeer> {
    const socket = net.connect(connectOptions(target));
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const p = new RawPeer(socket);
    if (bootstrap) p.send(bootstrapMessage(0));
    return p;
  }

  /** A fresh question ID (0 is the bootstrap). */
  qid(): number {
    return this.nextQid++;
  }

  send(segments: Uint8Array[]): void {
    this.socket.write(frame(segments));
  }

  /** Write raw bytes (partial frames, trickles). */
  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }

  /** The server's answer to question `qid` (then Finish is sent for it). */
  answer(qid: number): Promise<Answer> {
    const got = this.answers.get(qid);
    if (got !== undefined) return Promise.resolve(got);
    return new Promise((resolve) => this.waiting.set(qid, resolve));
  }

  /** Send `call(qid)` and wait for its answer. */
  async call(build: (qid: number) => Uint8Array[]): Promise<Answer> {
    const q = this.qid();
    this.send(build(q));
    return this.answer(q);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onMessage(segs: Uint8Array[]): void {
    const m = readMessage(segs, { maxMessageBytes: 1 << 30 }).getRoot(rpc.Message);
    if (m.which() === rpc.Message.ABORT) {
      this.abortReason = m.getAbort().getReason();
      return;
    }
    if (m.which() === rpc.Message.RELEASE) {
      const r = m.getRelease();
      this.releases.set(r.getId(), (this.releases.get(r.getId()) ?? 0) + r.getReferenceCount());
      return;
    }
    if (m.which() !== rpc.Message.RETURN) return;
    const r = m.getReturn();
    const id = r.getAnswerId();
    let a: Answer;
    if (r.which() === rpc.Return.EXCEPTION) a = { kind: "exception", reason: r.getException().getReason(), int0: 0 };
    else if (r.which() === rpc.Return.RESULTS) {
      const content = r.getResults().getContent();
      a = { kind: "results", reason: "", int0: int0Of(content) };
    } else a = { kind: String(r.which()), reason: "", int0: 0 };
    if (id !== 0 && !this.socket.destroyed) this.send(finishMessage(id));
    const w = this.waiting.get(id);
    if (w !== undefined) {
      this.waiting.delete(id);
      w(a);
    } else this.answers.set(id, a);
  }
}

/** First Int32 of the struct `p` points at (same segment, no far pointer), else 0. */
function int0Of(p: { segment: { buffer: ArrayBuffer }; byteOffset: number }): number {
  const dv = new DataView(p.segment.buffer);
  const lo = dv.getInt32(p.byteOffset, true);
  const hi = dv.getUint32(p.byteOffset + 4, true);
  if ((lo & 3) !== 0 || (hi & 0xffff) === 0) return 0;
  return dv.getInt32(p.byteOffset + 8 + (lo >> 2) * 8, true);
}

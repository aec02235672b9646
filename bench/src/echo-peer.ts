/**
 * The echo peer of the client-half diagnostics (client-only.ts, diag-client-echo-ab.ts): a Transport
 * that answers Bootstrap with one capability and each FooInterface `add` Call with its Return,
 * from byte templates, on the next macrotask as a socket read would, so only the client's own
 * path is measured. The templates are plain bytes (the same for any build of the client).
 *
 * Threading: the main (loop) thread of a bench diagnostic process.
 */
import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { setInterfacePointer } from "capnp-ts/src/serialization/pointers/pointer.js";
import { fastpath, type Transport, type TransportSink } from "@multiprocess-ts/capnp";
import { FooInterface_add$Results } from "@multiprocess-ts/proto/test/foo.capnp.js";

/** Unframed segment 0 of a capnp-ts message. */
function segmentBytes(m: capnp.Message): Uint8Array {
  const s = m.getSegment(0);
  return new Uint8Array(s.buffer, 0, s.byteLength).slice();
}

/** Return of a Bootstrap: results.content = capability 0, capTable = [senderHosted 0]. */
function bootstrapReturn(qid: number): Uint8Array {
  const m = new capnp.Message();
  const ret = m.initRoot(rpc.Message).initReturn();
  ret.setAnswerId(qid);
  const results = ret.initResults();
  setInterfacePointer(0, results.getContent());
  results.initCapTable(1).get(0).setSenderHosted(0);
  return segmentBytes(m);
}

/** `add`'s Return template (answerId and result patched per call). */
const ADD_RETURN = (() => {
  const { msg, results } = fastpath.newReturnMessage(FooInterface_add$Results, 0);
  results!.result = 0x5a5a5a5a;
  const s = msg._capnp.segments[0]!;
  const b = new Uint8Array(s.buffer, 0, s.byteLength).slice();
  const dv = new DataView(b.buffer);
  let at = -1;
  for (let i = 0; i + 4 <= b.length; i += 4) if (dv.getUint32(i, true) === 0x5a5a5a5a) at = i;
  if (at < 0) throw new Error("client-only: no result slot in the Return template");
  return { bytes: b, resultAt: at };
})();

const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

/** The echo peer: a Transport whose other end is this function, not a socket. */
export class EchoPeer implements Transport {
  #sink: TransportSink | null = null;
  #out: Uint8Array[] = [];
  #scheduled = false;
  #flush = (): void => {
    this.#scheduled = false;
    const out = this.#out;
    this.#out = [];
    for (const b of out) this.#sink?.message([b]);
  };

  start(sink: TransportSink): void {
    this.#sink = sink;
  }

  send(segments: Uint8Array[]): void {
    const s = segments[0]!;
    const which = s[8]! | (s[9]! << 8);
    if (which === rpc.Message.BOOTSTRAP) this.#reply(bootstrapReturn(u32(s, 24)));
    else if (which === rpc.Message.CALL) {
      // Kept cheap (no DataView, one copy of the template): this is not the code measured.
      const at = fastpath.CALL.contentPtr + 16;
      const r = new Uint8Array(ADD_RETURN.bytes);
      put32(r, fastpath.RET.answerId, u32(s, fastpath.CALL.qid));
      put32(r, ADD_RETURN.resultAt, (u32(s, at) + u32(s, at + 4)) | 0);
      this.#reply(r);
    }
    // Finish, Release: nothing to answer.
  }

  sendLazy(segments: Uint8Array[]): void {
    this.send(segments);
  }

  sendCopy(segments: Uint8Array[]): boolean {
    this.send(segments);
    return true;
  }

  #reply(b: Uint8Array): void {
    this.#out.push(b);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
  }

  close(): Promise<void> {
    this.destroy();
    return Promise.resolve();
  }

  destroy(): void {
    const sink = this.#sink;
    this.#sink = null;
    if (sink !== null) setImmediate(() => sink.closed());
  }
}



/**
 * The message dispatcher of one connection: the {@link TransportSink} its transport delivers to.
 * It validates each incoming message (the hot shapes of a scalar call in one pass that also reads
 * their envelope: hot-shape.ts `hotEnvelope`; a Call with a small cap table likewise: hot-caps.ts),
 * reads it in place when it can (messageOfOne: no copy out of the socket chunk; docs/rpc.md
 * "Incoming messages read in place"), decodes its envelope
 * (fastpath.ts; its own {@link Envelope}, reused message after message) and routes it by kind to
 * the table that owns the rules: Call/Bootstrap/Finish → answers, Return → questions, Release →
 * exports, Resolve/Disembargo → imports, Abort/Unimplemented/errors → the connection's end.
 *
 * Threading: the connection's loop thread (transports call their sink only there).
 */

import * as capnp from "capnp-ts";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { isAdoptedBuffer } from "../adopt.js";
import { ProtocolError } from "../errors.js";
import type { TransportSink } from "../transport.js";
import { CallLimitError, validateRpcMessageNear } from "../validate.js";
import {
  Envelope,
  MSG_CALL,
  MSG_FINISH,
  MSG_RELEASE,
  MSG_RETURN,
  decodeControl,
  decodeEnvelope,
  decodeEnvelopeSlow,
  messageInPlace,
  messageOver,
  pointerAt,
  viewOf,
} from "../fastpath.js";
import { errorFromException } from "./core.js";
import { hotEnvelope } from "./hot-shape.js";
import { flatCall } from "./flat-params.js";
import { hotCapsCall } from "./hot-caps.js";
import type { Hook } from "./hook.js";
import { copyToSlab } from "../buffers.js";
import type { ConnCore } from "./core.js";
import type { Question } from "./questions.js";

export class Dispatcher implements TransportSink {
  /**
   * The decoded envelope of the message being handled. Transports never deliver a message from
   * inside another message's handling, so one per connection is enough; handlers read what they
   * need from it before anything can run user code.
   */
  private readonly env = new Envelope();

  constructor(private readonly core: ConnCore) {}

  /**
   * TransportSink: one incoming message. Which path it takes is chosen as data (a constant
   * handler), and both are called from one call site: see {@link hotMessage}.
   */
  message(segments: Uint8Array[]): void {
    const core = this.core;
    if (core.ended) return;
    try {
      const s0 = segments[0]!;
      const lim = core.limits;
      const env = this.env;
      const handle = segments.length !== 1 ? otherMessage : hotEnvelope(s0, lim, env) ? hotMessage : hotCapsCall(s0, lim, env) ? capsMessage : otherMessage;
      handle(this, segments, s0);
    } catch (e) {
      this.env.clear();
      if (e instanceof CallLimitError && this.refuseCall(e, segments)) return;
      const err = e instanceof ProtocolError
        ? e
        : new ProtocolError(`malformed or invalid message: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      core.log?.("error", `${core.name}: protocol error: ${err.message}`);
      core.abort(err);
    }
  }

  /**
   * @internal A message of a hot shape whose envelope {@link hotEnvelope} has read into `env`,
   * routed by kind; a Call's or Return's route makes its reader's message ({@link hotReader}).
   */
  hot(s0: Uint8Array): void {
    const env = this.env;
    // The four kinds hotEnvelope reads, each to its table by a constant handler (one call site).
    let h: HotRoute;
    switch (env.which) {
      case MSG_CALL:
        h = routeCall;
        break;
      case MSG_RETURN:
        h = routeReturn;
        break;
      case MSG_FINISH:
        h = routeFinish;
        break;
      default:
        h = routeRelease;
        break;
    }
    h(this.core, env, s0);
    env.clear();
  }

  /**
   * @internal A Call with a small cap table whose envelope {@link hotCapsCall} (hot-caps.ts) read
   * into `env`: its reader's message, content pointer and cap table offset, then the answer table.
   */
  caps(s0: Uint8Array): void {
    const core = this.core;
    const env = this.env;
    const m = hotReader(core, env, s0)!; // hotCapsCall enforced our limits; a Call's content pointer is there
    env.capTableAt += m._capnp.segments[0]!.byteOffset;
    core.answers.handleCall(env, m);
    env.clear();
  }

  /** @internal Any other message: the full walk, then the decode. */
  other(segments: Uint8Array[], s0: Uint8Array): void {
    const limits = this.core.limits;
    const near = validateRpcMessageNear(segments, limits);
    const env = this.env;
    if (decodeControl(s0, env)) {
      // Finish/Release: read from the view as is (no copy, no capnp-ts message).
      this.route(env, null);
      return;
    }
    const m = near && segments.length === 1 ? messageOfOne(s0) : messageOver(ownBuffers(segments));
    m._capnp.traversalLimit = Infinity; // validateMessage enforced ours
    const seg = m._capnp.segments[0]!;
    env.reset(seg, limits.nestingLimit);
    if (!decodeEnvelope(seg, limits.nestingLimit, env)) {
      const root = new rpc.Message(seg, seg.byteOffset, limits.nestingLimit);
      env.reset(seg, limits.nestingLimit, root);
      decodeEnvelopeSlow(root, env);
    }
    this.route(env, m);
    env.clear();
  }

  /**
   * Over a limit inside one Call's params (validate.ts): that call fails with `err`, the link
   * lives. The capabilities of its cap table are imported and released at once, so the peer
   * gets its Release messages now rather than keeping those exports until the connection ends.
   * False when it cannot be answered alone (its ID is in use, too many are outstanding, or a
   * cap table entry is bad).
   */
  private refuseCall(err: CallLimitError, segments: Uint8Array[]): boolean {
    const core = this.core;
    if (core.answers.get(err.questionId) !== undefined) return false;
    let caps: (Hook | null)[];
    try {
      caps = this.refusedCaps(segments);
    } catch {
      return false;
    }
    try {
      core.answers.refuseCall(err.questionId, err);
    } catch {
      return false;
    } finally {
      for (const h of caps) h?.release();
    }
    core.log?.("warning", `${core.name}: call q${err.questionId} refused: ${err.message}`);
    return true;
  }

  /**
   * The cap table of a refused Call, imported. Its envelope (target and cap table, everything
   * but the params content) passed validation on its own (validate.ts), so capnp-ts reads it
   * without a traversal limit; the params content is never read.
   */
  private refusedCaps(segments: Uint8Array[]): (Hook | null)[] {
    const m = messageOver(ownBuffers(segments));
    m._capnp.traversalLimit = Infinity;
    const root = new rpc.Message(m._capnp.segments[0]!, 0, this.core.limits.nestingLimit);
    const params = root.getCall().getParams();
    return params.hasCapTable() ? this.core.imports.readCapTable(params) : [];
  }

  /** TransportSink: the transport ended. */
  closed(err: Error | undefined): void {
    const core = this.core;
    if (core.ended) return;
    if (err instanceof ProtocolError) {
      // The transport refused the peer's bytes (framing, limits). If its write side still
      // works, tell the peer why, as C++ does; otherwise this send is dropped.
      core.log?.("error", `${core.name}: transport protocol error: ${err.message}`);
      core.abort(err);
      return;
    }
    core.shutdown(err);
  }

  /** `m` is null only for Finish/Release decoded by decodeControl. */
  private route(env: Envelope, m: capnp.Message | null): void {
    const core = this.core;
    const which = env.which;
    switch (which) {
      case MSG_CALL:
        core.answers.handleCall(env, m!);
        return;
      case MSG_RETURN:
        core.questions.handleReturn(env, m!);
        return;
      case MSG_FINISH:
        core.answers.handleFinish(env.id, env.releaseResultCaps);
        return;
      case MSG_RELEASE:
        if (core.traceOn) core.trace(`<- release ${env.id} x${env.referenceCount}`);
        core.exports.release(env.id, env.referenceCount);
        return;
    }
    const root = env.root();
    switch (which) {
      case rpc.Message.RESOLVE:
        core.imports.handleResolve(root.getResolve());
        return;
      case rpc.Message.BOOTSTRAP:
        core.answers.handleBootstrap(root.getBootstrap().getQuestionId());
        return;
      case rpc.Message.DISEMBARGO:
        core.imports.handleDisembargo(root.getDisembargo(), root);
        return;
      case rpc.Message.ABORT: {
        const err = errorFromException(root.getAbort());
        core.log?.("warning", `${core.name}: peer aborted: ${err.message}`);
        core.end(err);
        return;
      }
      case rpc.Message.UNIMPLEMENTED:
        this.handleUnimplemented(root.getUnimplemented());
        return;
      default:
        core.sendUnimplemented(root);
        return;
    }
  }

  /** The peer did not implement a message we sent: undo what that message did on our side. */
  private handleUnimplemented(inner: rpc.Message): void {
    const core = this.core;
    const w = inner.which();
    core.log?.("warning", `${core.name}: peer did not implement message ${w}`);
    if (w === rpc.Message.CALL) core.questions.handleUnimplemented(inner.getCall().getQuestionId(), "Call");
    else if (w === rpc.Message.BOOTSTRAP) core.questions.handleUnimplemented(inner.getBootstrap().getQuestionId(), "Bootstrap");
    else if (w === rpc.Message.RESOLVE) {
      const r = inner.getResolve();
      if (r.which() === rpc.Resolve.CAP) {
        const c = r.getCap();
        const cw = c.which();
        if (cw === rpc.CapDescriptor.SENDER_HOSTED) core.exports.releaseIfPresent(c.getSenderHosted());
        else if (cw === rpc.CapDescriptor.SENDER_PROMISE) core.exports.releaseIfPresent(c.getSenderPromise());
      }
    }
    // Anything else we sent is optional; nothing to undo.
  }
}

/**
 * The paths of an incoming message (hot, a Call with a small cap table, any other), as constants
 * chosen by data and called from one call site in {@link Dispatcher.message}. A connection's first messages (the Bootstrap, its Return
 * with a cap table, its Finish) take the other path; a warm process ran them only on its first
 * connection, before V8 gave the functions their type feedback, so a branch of the hot function
 * holding their code would be compiled without feedback and a new connection taking it would
 * deoptimise the whole hot path. A call whose target is one of a few module constants needs no
 * feedback (TurboFan dispatches on the constant targets), and the call site itself is fed by
 * every message (docs/rpc.md "A new connection keeps the optimised code").
 */
const hotMessage = (d: Dispatcher, _segments: Uint8Array[], s0: Uint8Array): void => d.hot(s0);
const otherMessage = (d: Dispatcher, segments: Uint8Array[], s0: Uint8Array): void => d.other(segments, s0);
const capsMessage = (d: Dispatcher, _segments: Uint8Array[], s0: Uint8Array): void => d.caps(s0);

/**
 * The reader's message of a hot-shaped Call or Return (in place when it can: no copy), its content
 * pointer set in `env`; null when the payload's content is null.
 */
function hotReader(core: ConnCore, env: Envelope, s0: Uint8Array): capnp.Message | null {
  if (env.contentAt < 0) return null;
  const depth = core.limits.nestingLimit;
  const m = messageOfOne(s0);
  m._capnp.traversalLimit = Infinity; // hotEnvelope enforced ours
  const seg = m._capnp.segments[0]!;
  env.bind(seg, depth);
  env.content = pointerAt(capnp.Pointer, seg, seg.byteOffset + env.contentAt, depth - 3);
  return m;
}

/**
 * The route of a hot-shaped message of one kind, `s0` its one segment. Call and Return each have
 * their own, which makes the reader's message ({@link hotReader}); Finish and Release need none.
 */
type HotRoute = (core: ConnCore, env: Envelope, s0: Uint8Array) => void;
const routeCall: HotRoute = (core, env, s0) => {
  // Params a local server reads flat need no reader's message (flat-params.ts).
  if (!flatCall(core, env, s0)) core.answers.handleCall(env, hotReader(core, env, s0)!);
};
/**
 * A Return whose results its caller reads flat (questions.ts flatQuestion: a generated client's
 * flat results reader) is read from the bytes where they lie (hotEnvelope's `dataAt` /
 * `dataWords`), with no message; any other takes the reader's message. The two are constants
 * chosen by data and called from one call site (see {@link hotMessage}).
 */
const routeReturn: HotRoute = (core, env, s0) => {
  const q = core.questions.flatQuestion(env);
  const h = q !== undefined ? returnFlat : returnInPlace;
  h(core, env, s0, q);
};
type ReturnRoute = (core: ConnCore, env: Envelope, s0: Uint8Array, q: Question | undefined) => void;
const returnFlat: ReturnRoute = (core, env, s0, q) => core.questions.handleFlatResults(q!, env, viewOf(s0.buffer));
const returnInPlace: ReturnRoute = (core, env, s0) => core.questions.handleReturn(env, hotReader(core, env, s0)!);
const routeFinish: HotRoute = (core, env) => core.answers.handleFinish(env.id, env.releaseResultCaps);
const routeRelease: HotRoute = (core, env) => {
  if (core.traceOn) core.trace(`<- release ${env.id} x${env.referenceCount}`);
  core.exports.release(env.id, env.referenceCount);
};

/**
 * Buffers up to this size are read in place whatever else they hold; larger ones only when the
 * message is at least a quarter of them. A reader may keep a view of an incoming message (a
 * generated reader's Data view, a call's params until its Finish) and so its whole buffer: this
 * bounds what such a view keeps alive beyond the message's own bytes (at most 4 KiB, or 4x).
 * 4 KiB: the slab a socket reader gives a connection of small reads (socket-read.ts ACTIVE_SLAB).
 */
const IN_PLACE_ANY = 4 * 1024;

/**
 * Whether a one-segment message without far pointers is read where it lies (fastpath.ts
 * messageInPlace) rather than copied into a buffer of its own: its view must be word-aligned in
 * a plain ArrayBuffer (not shared memory), small enough against that buffer (IN_PLACE_ANY).
 */
function readInPlace(s: Uint8Array): boolean {
  const b = s.buffer;
  if (!(b instanceof ArrayBuffer) || (s.byteOffset & 7) !== 0) return false;
  const size = b.byteLength;
  return size <= IN_PLACE_ANY || s.byteLength * 4 >= size;
}

/**
 * A reader's message for a validated one-segment message without far pointers: in place, else
 * copied into a shared slab (small messages, buffers.ts copyToSlab), else into its own buffer.
 */
function messageOfOne(s: Uint8Array): capnp.Message {
  if (readInPlace(s)) return messageInPlace(s);
  const c = copyToSlab(s);
  return c !== null ? messageInPlace(c) : messageOver(ownBuffers([s]));
}

/**
 * Whole ArrayBuffers for capnp-ts (its segments must be one each). A segment that is one (the
 * stream decoder's own buffer for a message that spanned chunks, a memory transport's sent
 * segment) is ours by the Transport contract and is used as is: nobody writes into it again. A
 * view into a larger buffer (a chunk holding several messages, a pooled Node Buffer) is copied:
 * the rest of that buffer is not ours. So is a buffer a sender in this thread adopted as a segment
 * (adopt.ts; a memory transport's peer): its owner may write it again.
 */
function ownBuffers(segments: Uint8Array[]): ArrayBuffer[] {
  const bufs: ArrayBuffer[] = new Array(segments.length);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const b = s.buffer;
    if (b instanceof ArrayBuffer) {
      bufs[i] = s.byteOffset === 0 && s.byteLength === b.byteLength && !isAdoptedBuffer(b) ? b : b.slice(s.byteOffset, s.byteOffset + s.byteLength);
    } else bufs[i] = new Uint8Array(s).buffer as ArrayBuffer; // a SharedArrayBuffer view: copy
  }
  return bufs;
}

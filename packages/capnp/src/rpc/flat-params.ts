/**
 * Flat params on the server (docs/rpc.md "Flat params on the server"): a Call of the hot shape
 * (hot-shape.ts: one segment, no cap table, params content null or a struct without pointers,
 * its data section located by `Envelope.dataAt` / `dataWords`) to one of our exports that is a
 * local server whose method has a flat params reader (`Server.flatParams`: mpgen's reader of a
 * params struct of plain numbers) is delivered without a reader's message: the reader runs on
 * the message's bytes now, before anything can await (the view may be the socket reader's slab,
 * reused once this returns), and the call is queued on its server as what it read
 * (`LocalHook.callRead`: no CallData, message or cap table; `IncomingCall.flatParams`). Its
 * answer is an ordinary {@link Answer}: Finish, `noFinishNeeded`, cancellation, pipelining on it,
 * tail calls and the Return (flat-return.ts when the results are flat) are unchanged.
 *
 * What it does not take goes through AnswerTable.handleCall as before, which also reports every
 * error: tracing on, a promisedAnswer target, `sendResultsTo` other than the caller, a question
 * ID in use, an unknown export, a target that is not a local server (a promise, an import), a
 * method without a reader. The checks it repeats come in handleCall's order, so a call it takes
 * is one handleCall would have delivered to the same server, with the same answer.
 *
 * Why: the reader's message (an in-place capnp-ts Message over the socket's bytes), the params
 * Pointer and the params struct were ~450 B and a few hundred nanoseconds per call on the
 * server's critical path (bench/README "Server half of a call (twelfth session)").
 *
 * Threading: the connection's loop thread (the dispatcher's).
 */

import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { viewOf } from "../fastpath.js";
import type { Envelope } from "../fastpath.js";
import type { Hook } from "./hook.js";
import { LocalHook } from "./local.js";
import type { ConnCore } from "./core.js";

/**
 * Delivers the hot-shaped Call in `env` (its one segment `s0`) through its server's flat params
 * reader: true when it did (or answered it `overloaded`); false when the call is not one it
 * takes, with nothing done (the caller takes the general path).
 */
export function flatCall(core: ConnCore, env: Envelope, s0: Uint8Array): boolean {
  if (core.traceOn || env.targetWhich !== rpc.MessageTarget.IMPORTED_CAP || env.sendResultsTo !== rpc.Call_SendResultsTo.CALLER) return false;
  const answers = core.answers;
  const id = env.id;
  if (answers.get(id) !== undefined) return false;
  let target: Hook;
  try {
    target = core.exports.target(env.importedCap);
  } catch {
    return false; // handleCall reports it
  }
  const interfaceId = env.interfaceId;
  const methodId = env.methodId;
  const local = target instanceof LocalHook ? target : null;
  const read = local !== null ? local.server.flatParams?.(interfaceId, methodId) : undefined;
  if (read === undefined) {
    target.release();
    return false;
  }
  try {
    const a = answers.newAnswer(id);
    if (answers.refused(a)) return true;
    const at = env.dataAt;
    const args = at < 0 ? read(viewOf(s0.buffer), 0, 0) : read(viewOf(s0.buffer), at, env.dataWords);
    local!.callRead(interfaceId, methodId, args, a);
  } finally {
    target.release();
  }
  return true;
}

/**
 * The import table of one connection: the peer's capabilities we hold (by its ExportId), each
 * with the number of times we received it, and its rules — reading CapDescriptors (a new import,
 * a promise import, or one of our own exports/answers coming back), Release when our last
 * reference goes, the peer's Resolve of a promise import, and embargoes (Disembargo, both
 * loopback directions) so calls made before a resolution are not overtaken by later ones.
 *
 * Threading: the connection's loop thread.
 */

import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { ProtocolError, RpcError } from "../errors.js";
import { encodeRelease } from "../fastpath.js";
import { BrokenHook, Hook, NullHook } from "./hook.js";
import type { CallData, FlatCall, Route, RouteConn } from "./hook.js";
import { newMessage } from "./message.js";
import { PromiseHook } from "./promise.js";
import { EMPTY, errorFromException, writePromisedAnswer } from "./core.js";
import type { ConnCore } from "./core.js";

/** A capability hosted by the peer. Refs = local holders; `remoteRefs` = times the peer sent it. */
export class ImportHook extends Hook {
  remoteRefs = 1;
  /** The promise wrapper when the peer sent it as senderPromise (weak: no reference). */
  promise: PromiseHook | null = null;
  constructor(
    readonly core: ConnCore,
    readonly id: number,
  ) {
    super();
  }
  protected destroy(): void {
    this.core.imports.release(this);
  }
  call(d: CallData): void {
    this.core.questions.send(d, this.id, -1, null, false);
  }
  override callFlat(c: FlatCall): boolean {
    return this.core.questions.sendFlat(c, this.id, -1, null);
  }
  override remoteConn(): RouteConn {
    return this.core.questions;
  }
}

interface Embargo {
  id: number;
  hook: PromiseHook;
  target: Hook;
}

export class ImportTable {
  // Both start as the shared EMPTY map (read-only); a Map of their own on the first entry.
  private imports = EMPTY as Map<number, ImportHook>;
  /** Embargoes we started (senderLoopback ids). */
  private embargoes = EMPTY as Map<number, Embargo>;
  private nextEmbargoId = 0;

  constructor(private readonly core: ConnCore) {}

  get size(): number {
    return this.imports.size;
  }

  get embargoCount(): number {
    return this.embargoes.size;
  }

  /** New references for the caps of a received cap table (released again if one is bad). */
  readCapTable(payload: rpc.Payload): (Hook | null)[] {
    if (!payload.hasCapTable()) return [];
    const list = payload.getCapTable();
    const n = list.getLength();
    const caps: (Hook | null)[] = new Array(n);
    let i = 0;
    try {
      for (; i < n; i++) caps[i] = this.readDescriptor(list.get(i));
    } catch (e) {
      for (let j = 0; j < i; j++) caps[j]?.release();
      throw e;
    }
    return caps;
  }

  /** A new reference for the cap a CapDescriptor names. */
  readDescriptor(desc: rpc.CapDescriptor): Hook | null {
    switch (desc.which()) {
      case rpc.CapDescriptor.NONE:
        return null;
      case rpc.CapDescriptor.SENDER_HOSTED:
        return this.importCap(desc.getSenderHosted(), false);
      case rpc.CapDescriptor.SENDER_PROMISE:
        return this.importCap(desc.getSenderPromise(), true);
      case rpc.CapDescriptor.RECEIVER_HOSTED:
        return this.core.exports.receiverHosted(desc.getReceiverHosted());
      case rpc.CapDescriptor.RECEIVER_ANSWER:
        return this.core.answers.pipeline(desc.getReceiverAnswer());
      case rpc.CapDescriptor.THIRD_PARTY_HOSTED:
        // Level 3 handoff is not supported: use the vine, which the sender hosts.
        return this.importCap(desc.getThirdPartyHosted().getVineId(), false);
      default:
        throw new ProtocolError(`unknown CapDescriptor kind ${desc.which()}`);
    }
  }

  /** A new reference for the peer's export `id` (senderHosted / senderPromise). */
  importCap(id: number, isPromise: boolean): Hook {
    const imp = this.imports.get(id);
    if (imp !== undefined) {
      imp.remoteRefs++;
      if (imp.promise !== null) return imp.promise.addRef();
      return imp.addRef();
    }
    const h = new ImportHook(this.core, id);
    (this.imports === EMPTY ? (this.imports = new Map()) : this.imports).set(id, h);
    if (!isPromise) return h;
    const p = new PromiseHook();
    h.promise = p;
    p.setRoute({ conn: this.core.questions, importHook: h, importId: id, qid: -1, path: [] });
    return p;
  }

  /** ImportHook refs reached zero: send one Release with the accumulated count. */
  release(imp: ImportHook): void {
    const core = this.core;
    if (this.imports.get(imp.id) !== imp) return; // connection ended or replaced
    this.imports.delete(imp.id);
    if (core.ended) return;
    if (core.traceOn) core.trace(`-> release ${imp.id} x${imp.remoteRefs}`);
    core.sendBytes(encodeRelease(imp.id, imp.remoteRefs));
  }

  /** The peer's Resolve of a promise import. */
  handleResolve(r: rpc.Resolve): void {
    const id = r.getPromiseId();
    let h: Hook;
    if (r.which() === rpc.Resolve.CAP) h = this.readDescriptor(r.getCap()) ?? new NullHook();
    else if (r.which() === rpc.Resolve.EXCEPTION) h = new BrokenHook(errorFromException(r.getException()));
    else throw new ProtocolError(`unknown Resolve kind ${r.which()}`);
    if (this.core.traceOn) this.core.trace(`<- resolve ${id}`);
    const imp = this.imports.get(id);
    const p = imp?.promise ?? null;
    if (imp === undefined || p === null) {
      // We already released that promise (Release and Resolve crossed): drop the resolution.
      h.release();
      return;
    }
    imp.promise = null;
    p.resolve(h);
    h.release();
  }

  /** A promise that sent calls over this connection resolved to `target` elsewhere (questions.ts). */
  startEmbargo(route: Route, target: Hook): Hook {
    const core = this.core;
    if (core.ended) return target;
    const id = this.nextEmbargoId++;
    const hook = new PromiseHook();
    (this.embargoes === EMPTY ? (this.embargoes = new Map()) : this.embargoes).set(id, { id, hook, target });
    const m = newMessage(128);
    const d = m.initRoot(rpc.Message).initDisembargo();
    const t = d.initTarget();
    if (route.importHook !== null) t.setImportedCap(route.importId);
    else writePromisedAnswer(t.initPromisedAnswer(), route.qid, route.path);
    d.getContext().setSenderLoopback(id);
    if (core.traceOn) core.trace(`-> disembargo senderLoopback ${id}`);
    core.send(m);
    return hook.addRef();
  }

  handleDisembargo(d: rpc.Disembargo, root: rpc.Message): void {
    const core = this.core;
    const ctx = d.getContext();
    switch (ctx.which()) {
      case rpc.Disembargo_Context.SENDER_LOOPBACK: {
        // Reflect it: the target must be a cap the peer hosts (one of our imports).
        const eid = ctx.getSenderLoopback();
        if (core.traceOn) core.trace(`<- disembargo senderLoopback ${eid}`);
        const target = core.answers.resolveTarget(d.getTarget());
        const r = target.resolved();
        target.release();
        if (!(r instanceof ImportHook) || r.core !== core) {
          throw new ProtocolError("'Disembargo' of type 'senderLoopback' sent to an object that does not point back to the sender.");
        }
        const m = newMessage(128);
        const out = m.initRoot(rpc.Message).initDisembargo();
        out.initTarget().setImportedCap(r.id);
        out.getContext().setReceiverLoopback(eid);
        core.send(m);
        return;
      }
      case rpc.Disembargo_Context.RECEIVER_LOOPBACK: {
        // Our embargo came back: the calls queued on it go to the resolution.
        const eid = ctx.getReceiverLoopback();
        if (core.traceOn) core.trace(`<- disembargo receiverLoopback ${eid}`);
        const e = this.embargoes.get(eid);
        if (e === undefined) throw new ProtocolError(`Disembargo receiverLoopback for unknown embargo ID ${eid}`);
        this.embargoes.delete(eid);
        e.hook.resolve(e.target);
        e.target.release();
        e.hook.release();
        return;
      }
      default:
        core.sendUnimplemented(root);
        return;
    }
  }

  /** Connection end: embargoes lift (calls go to the local target), promise imports fail. */
  shutdown(dErr: RpcError): void {
    const es = [...this.embargoes.values()];
    this.embargoes.clear();
    for (const e of es) {
      e.hook.resolve(e.target);
      e.target.release();
      e.hook.release();
    }
    // Import handles stay, their calls fail.
    const is = [...this.imports.values()];
    this.imports.clear();
    for (const imp of is) {
      const p = imp.promise;
      imp.promise = null;
      if (p !== null) {
        const b = new BrokenHook(dErr);
        p.resolve(b);
        b.release();
      }
    }
  }
}

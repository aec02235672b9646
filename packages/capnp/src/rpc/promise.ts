/**
 * {@link PromiseHook}: a capability that is not known yet (a local promise, a pipelined result,
 * a promise import, an embargo). Calls queue, or go over its {@link Route} (a question or an
 * import on one connection), until it resolves; on resolution it starts an embargo when calls
 * already sent over the route could otherwise be overtaken (Cap'n Proto's Disembargo rule).
 *
 * Threading: belongs to the thread (event loop) that created it.
 */

import { RpcError, deferred } from "../errors.js";
import type { Deferred } from "../errors.js";
import { Hook, errOutcome } from "./hook.js";
import type { CallData, FlatCall, Route, RouteConn } from "./hook.js";
import type { Server } from "./types.js";

/** {@link PromiseHook.callFlat} of a resolved promise: to its resolution. */
const flatToResolution = (p: PromiseHook, c: FlatCall): boolean => p.resolution!.callFlat(c);
/** {@link PromiseHook.callFlat} of an unresolved promise: over its route. */
const flatToRoute = (p: PromiseHook, c: FlatCall): boolean => p.flatRouted(c);

/** A capability that is not known yet. */
export class PromiseHook extends Hook {
  resolution: Hook | null = null;
  route: Route | null = null;
  private queue: CallData[] = [];
  private sentViaRoute = false;
  private waiters: Deferred<void> | null = null;
  private listeners: ((h: Hook) => void)[] | null = null;

  protected destroy(): void {
    const r = this.resolution;
    if (r !== null) {
      this.resolution = null;
      r.release();
    }
    const route = this.route;
    if (route !== null) {
      this.route = null;
      route.importHook?.release();
    }
    // Calls queued on a promise nobody can resolve any more fail.
    const q = this.queue;
    this.queue = [];
    for (const d of q) {
      d.releaseCaps();
      d.sink.complete(errOutcome(new RpcError("failed", "promise capability released before it resolved")));
    }
  }

  call(d: CallData): void {
    if (this.resolution !== null) this.resolution.call(d);
    else if (this.route !== null) {
      this.sentViaRoute = true;
      this.route.conn.sendCall(d, this.route);
    } else this.queue.push(d);
  }

  /** {@link call} for a flat call: the same choice (resolution, route; queued ones say false). */
  override callFlat(c: FlatCall): boolean {
    // Resolved (every call of a warm connection's bootstrap) or not (a new connection's first
    // call, pipelined on its Bootstrap): a constant chosen by data, one call site (docs/rpc.md "A
    // new connection keeps the optimised code").
    return (this.resolution !== null ? flatToResolution : flatToRoute)(this, c);
  }

  /** @internal {@link callFlat} before the resolution: over the route, if any. */
  flatRouted(c: FlatCall): boolean {
    const route = this.route;
    if (route === null || !route.conn.sendFlatCall(c, route)) return false;
    this.sentViaRoute = true;
    return true;
  }

  /** Send calls (queued and later) over `route` until resolved. Takes ownership of route.importHook. */
  setRoute(route: Route): void {
    if (this.resolution !== null) {
      route.importHook?.release();
      return;
    }
    this.route = route;
    const q = this.queue;
    this.queue = [];
    if (q.length > 0) this.sentViaRoute = true;
    for (const d of q) route.conn.sendCall(d, route);
  }

  /** Resolve to `h` (we take our own reference; the caller keeps its own). */
  resolve(h: Hook): void {
    if (this.resolution !== null || this.refs <= 0) return;
    let target: Hook = h.addRef();
    const route = this.route;
    if (route !== null && this.sentViaRoute && needsEmbargo(target, route.conn)) {
      target = route.conn.startEmbargo(route, target);
    }
    this.resolution = target;
    this.route = null;
    route?.importHook?.release();
    const q = this.queue;
    this.queue = [];
    for (const d of q) target.call(d);
    const ls = this.listeners;
    this.listeners = null;
    if (ls !== null) for (const l of ls) l(target);
    const w = this.waiters;
    this.waiters = null;
    w?.resolve();
  }

  /** Called once with the resolution (not a new reference). */
  onResolved(l: (h: Hook) => void): void {
    if (this.resolution !== null) l(this.resolution);
    else (this.listeners ??= []).push(l);
  }

  override holders(): number {
    const r = this.resolution;
    return this.handles + this.exportEntries + (r === null ? 0 : r.holders());
  }
  override resolved(): Hook {
    return this.resolution === null ? this : this.resolution.resolved();
  }
  override remoteConn(): RouteConn | null {
    if (this.resolution !== null) return this.resolution.remoteConn();
    return this.route === null ? null : this.route.conn;
  }
  override whenResolved(): Promise<void> {
    if (this.resolution !== null) return this.resolution.whenResolved();
    if (this.waiters === null) this.waiters = deferred<void>();
    return this.waiters.promise.then(() => this.resolved().whenResolved());
  }
  override isNullCap(): boolean {
    return this.resolution !== null && this.resolution.isNullCap();
  }
  override brokenError(): RpcError | null {
    return this.resolution === null ? null : this.resolution.brokenError();
  }
  override localServer(): Server | undefined {
    return this.resolution === null ? undefined : this.resolution.localServer();
  }
}

function needsEmbargo(target: Hook, conn: RouteConn): boolean {
  const r = target.resolved();
  if (r.brokenError() !== null || r.isNullCap()) return false;
  return r.remoteConn() !== conn;
}

/**
 * Concurrency lanes: independent async flows of one JS thread that run on separate server Threads
 * (docs/usage.md, "Concurrency lanes"; docs/threading.md).
 *
 * By default (upstream-compatible) every call a JS thread makes outside a server task is made
 * from that thread's one ThreadContext (`loop.threadContext`), so all its Context calls run FIFO
 * on ONE server Thread of the peer, as a blocking C++ thread's would. A lane is one more
 * ThreadContext of the loop: `runInLane(lane, fn)` makes the calls `fn` starts (and everything
 * they await, through AsyncLocalStorage) come from the lane's context, so the peer runs them on
 * the lane's own server Thread: FIFO within the lane, concurrent with other lanes. Callbacks the
 * peer makes while serving a lane's call come back on the lane's callback Thread (its executor),
 * and calls made from them go back to the waiting server Thread, as for any ThreadContext.
 *
 * Cost: nothing until the first `runInLane` (the AsyncLocalStorage is created then); afterwards
 * one `getStore()` per call made outside a server task.
 *
 * Owns: the named lanes (process-wide, by name) and, per lane, one ThreadContext per EventLoop
 * (weakly keyed; their per-Connection entries go with each Connection, as any ThreadContext's).
 * Threading: the thread of the EventLoop whose context is used: the loop thread, or a worker
 * thread (the worker bridge carries a worker's lane to the loop, which makes the calls from a
 * per-worker lane context: docs/threading.md, "Lanes").
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { EventLoop } from "../event-loop.js";
import { longThreadName } from "../log.js";
import { ThreadContext } from "./thread-context.js";

/** A lane: see the module comment. Get one by name with {@link lane}, or construct your own. */
export class Lane {
  readonly name: string;
  readonly #contexts = new WeakMap<EventLoop, ThreadContext>();

  constructor(name: string) {
    if (typeof name !== "string" || name === "") throw new TypeError("Lane: name must be a non-empty string");
    this.name = name;
  }

  /** This lane's ThreadContext on `loop` (made on first use; its Thread name ends in `lane:<name>`). */
  contextFor(loop: EventLoop): ThreadContext {
    let c = this.#contexts.get(loop);
    if (c === undefined || c.closed) {
      c = new ThreadContext(loop, longThreadName(`${loop.name}/lane:${this.name}`));
      c.lane = this.name;
      this.#contexts.set(loop, c);
    }
    return c;
  }

  /** `runInLane(this, fn)`. */
  run<T>(fn: () => T): T {
    return runInLane(this, fn);
  }
}

let storage: AsyncLocalStorage<Lane> | undefined;
const named = new Map<string, Lane>();

/** The process-wide lane called `name` (the same object for the same name). */
export function lane(name: string): Lane {
  let l = named.get(name);
  if (l === undefined) {
    l = new Lane(name);
    named.set(name, l);
  }
  return l;
}

/**
 * Runs `fn` in `lane` (a Lane or a lane name): proxy calls it makes, directly or after awaits,
 * run on the lane's server Thread of each peer. Nested lanes: the innermost wins. Returns what `fn`
 * returns.
 */
export function runInLane<T>(which: Lane | string, fn: () => T): T {
  const l = typeof which === "string" ? lane(which) : which;
  if (!(l instanceof Lane)) throw new TypeError("runInLane: expected a Lane or a lane name");
  storage ??= new AsyncLocalStorage<Lane>();
  return storage.run(l, fn);
}

/** The lane the current async flow runs in, if any. */
export function currentLane(): Lane | undefined {
  return storage === undefined ? undefined : storage.getStore();
}

/** The current lane's ThreadContext on `loop`, or undefined outside lanes (the hot path: one check). */
export function laneContext(loop: EventLoop): ThreadContext | undefined {
  if (storage === undefined) return undefined;
  const l = storage.getStore();
  return l === undefined ? undefined : l.contextFor(loop);
}

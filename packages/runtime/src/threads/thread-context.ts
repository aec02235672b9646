/**
 * ThreadContext: one client thread's view of thread mapping (upstream `ThreadContext` and its
 * `ConnThreads` maps; proxy-io.h, proxy.cpp `SetThread`). The executor, the task frame and the
 * `ProxyClient<Thread>` entries it uses live next to it in this folder.
 *
 * A {@link ThreadContext} stands for one client thread: the loop thread has one
 * (`loop.threadContext`), each server Thread created by `ThreadMap.makeThread`/`makePool` has one,
 * and the worker glue creates one per attached worker. Per Connection it keeps
 *  - the request Thread: the peer's Thread that calls made from this context run on (from the
 *    peer's `ThreadMap.makeThread(name)`, pipelined, created once; or, while serving a call, the
 *    caller's `callbackThread` so nested calls go back to the thread that is waiting), and
 *  - the callback Thread: a local server Thread standing for this context, sent to the peer as
 *    `Context.callbackThread` so callbacks made while serving our call come back here.
 *
 * Owns: its executor and, per Connection, its request and callback {@link ThreadClient}s.
 *
 * Threading: ThreadContext objects live on the loop thread and are only touched there (worker
 * contexts are loop-side stand-ins; the worker keeps its own module state). Every map mutation
 * happens on the loop thread, which is what makes upstream's #189 teardown race impossible here
 * (docs/threading.md): see {@link ThreadClient}.
 */
import type { Capability } from "@multiprocess-ts/capnp";
import type { Connection } from "../connection.js";
import type { EventLoop } from "../event-loop.js";
import { FifoExecutor, type ThreadExecutor } from "./executor.js";
import { currentFrame } from "./frame.js";
import { SlotMap } from "./slot-map.js";
import { ThreadClient } from "./thread-client.js";

export interface ThreadContextOptions {
  /** Where tasks addressed to this context's callback Thread run. Default: a {@link FifoExecutor}. */
  executor?: ThreadExecutor;
}

/** See the module comment. */
export class ThreadContext {
  readonly loop: EventLoop;
  /** Long thread name (`exe-pid/name`), sent as `makeThread(name)` and returned by `getName`. */
  readonly name: string;
  readonly executor: ThreadExecutor;
  /**
   * Connection → the peer Thread our calls run on. A {@link SlotMap}: a server Thread lends its
   * caller's callbackThread here for every call it serves (insert, then remove), and a plain
   * `Map` going from one entry to none costs V8 a new hash table each time.
   */
  readonly requestThreads: Map<Connection, ThreadClient> = new SlotMap<Connection, ThreadClient>();
  /** Connection → our callback Thread, as sent to that peer. */
  readonly callbackThreads = new Map<Connection, ThreadClient>();
  #closed = false;
  /** The lane this context serves (threads/lanes.ts), undefined for a JS thread's own context. */
  lane: string | undefined = undefined;

  constructor(loop: EventLoop, name: string, opts: ThreadContextOptions = {}) {
    this.loop = loop;
    this.name = name;
    this.executor = opts.executor ?? new FifoExecutor();
  }

  /** The context proxy calls made right now belong to: the running task's, else the loop's. */
  static current(loop: EventLoop): ThreadContext {
    const frame = currentFrame();
    if (frame && frame.context.loop === loop) return frame.context;
    return loop.threadContext;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sets the request Thread for `connection` if none is set (upstream `SetThread`'s try_emplace).
   * Takes ownership of `cap` either way. Returns the entry it inserted, or undefined if an entry
   * existed (then `cap` is closed).
   */
  setRequestThread(connection: Connection, cap: Capability): ThreadClient | undefined {
    if (this.requestThreads.has(connection) || connection.state !== "open") {
      cap.close();
      return undefined;
    }
    const entry = new ThreadClient(this.requestThreads, connection, cap);
    this.requestThreads.set(connection, entry);
    return entry;
  }

  /**
   * @internal Makes `entry` (one of `connection`'s entries for this context's map, see
   * `ThreadServer.callbackEntry`) the request Thread for `connection` if none is set (as
   * {@link setRequestThread}, without taking it over). True when it was inserted.
   */
  insertRequestThread(connection: Connection, entry: ThreadClient): boolean {
    if (this.requestThreads.has(connection) || connection.state !== "open" || entry.destroyed) return false;
    this.requestThreads.set(connection, entry);
    return true;
  }

  /** @internal True when `entry` is the request Thread for `connection` now. */
  hasRequestThread(connection: Connection, entry: ThreadClient): boolean {
    return this.requestThreads.get(connection) === entry;
  }

  /** @internal Undoes {@link insertRequestThread} (when `entry` is still the one set). */
  removeRequestThread(connection: Connection, entry: ThreadClient): void {
    if (this.requestThreads.get(connection) === entry) this.requestThreads.delete(connection);
  }

  /**
   * Drops every entry (thread exit / worker detach). Loop thread only; idempotent. Entries are
   * detached from the maps first and destroyed afterwards, like upstream's open PR #335, so a
   * destroy that triggers more teardown never sees a half-iterated map.
   */
  close(): void {
    this.#closed = true;
    const entries = [...this.requestThreads.values(), ...this.callbackThreads.values()];
    for (const e of entries) e.destroy();
  }
}

/**
 * Connection: one link to a peer, after upstream `mp::Connection` (proxy-io.h, proxy.cpp). It owns
 * the transport (through its {@link RpcConnection}), the peer's ThreadMap (from `construct`), our
 * ThreadMap server, the server Threads created for this peer and its pool, and the cleanup lists.
 *
 * Teardown (for `close()` and for a lost link alike), in this order:
 *  1. cancel in-flight server calls (the connection's AbortSignal; queued Context calls are
 *     skipped, running ones finish and their results are discarded by the engine);
 *  2. drop capabilities: our ThreadMap, the peer ThreadMap, the pool, the bootstrap, and the RPC
 *     tables (the engine releases every export, so unreferenced ProxyServers see `onRelease`);
 *  3. flush pending writes and end the transport (`rpc.close()`: Release/Finish messages go out);
 *  4. run the sync cleanups one at a time, most recently added first (upstream LIFO). Each entry is
 *     unlinked before it runs, so a running cleanup may remove others and can never remove itself;
 *  5. then the async cleanups (server implementation disposals) that teardown produced are handed
 *     to the loop's async-cleanup queue, so they run after every sync cleanup, off the call stack;
 *  6. `disconnected` resolves and, in a later turn, the `onDisconnect` callbacks run.
 *
 * Owns: as listed above, plus one EventLoopRef.
 *
 * Threading: created, used and torn down on the loop thread only. Holds an EventLoopRef until
 * teardown has finished.
 */
import {
  RpcConnection,
  DisconnectedError,
  type Capability,
  type Transport,
  type RpcConnectionOptions,
} from "@multiprocess-ts/capnp";
import type { EventLoop, EventLoopRef } from "./event-loop.js";
import type { Struct } from "capnp-ts";
import type { ThreadServer, ThreadMapServer } from "./threads/servers.js";
import type { ThreadContext } from "./threads/thread-context.js";
import { errorText } from "./util.js";
import { traceDescriber } from "./proxy/trace.js";

/** Opaque handle returned by {@link Connection.addSyncCleanup}. */
export interface CleanupHandle {
  readonly [CLEANUP_BRAND]: true;
}
declare const CLEANUP_BRAND: unique symbol;

interface CleanupNode {
  list: CleanupList;
  fn: () => void;
  prev: CleanupNode | undefined;
  next: CleanupNode | undefined;
  linked: boolean;
}

/**
 * Upstream `CleanupList`: an intrusive list of callbacks. `add` inserts at the front (LIFO run
 * order); `remove` and `popFront` are O(1). A popped node is unlinked, so removing it later is a
 * harmless no-op.
 */
export class CleanupList {
  #head: CleanupNode | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(fn: () => void): CleanupHandle {
    const node: CleanupNode = { list: this, fn, prev: undefined, next: this.#head, linked: true };
    if (this.#head) this.#head.prev = node;
    this.#head = node;
    this.#size++;
    return node as unknown as CleanupHandle;
  }

  /** Returns false if the entry already ran or was removed, or belongs to another list. */
  remove(handle: CleanupHandle): boolean {
    const node = handle as unknown as CleanupNode;
    if (!node.linked || node.list !== this) return false;
    if (node.prev) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next) node.next.prev = node.prev;
    node.prev = node.next = undefined;
    node.linked = false;
    this.#size--;
    return true;
  }

  popFront(): (() => void) | undefined {
    const node = this.#head;
    if (!node) return undefined;
    this.remove(node as unknown as CleanupHandle);
    return node.fn;
  }
}

export type ConnectionState = "open" | "closing" | "closed";

export interface ConnectionOptions {
  /** Name for log lines (default `connection#N`). */
  name?: string;
  /**
   * Makes the capability served on Bootstrap, given the Connection under construction (so a
   * ProxyServer can be bound to it). Called once, before any message is read (STYLE anti-pattern 7).
   * The Connection owns the returned handle and closes it at teardown.
   */
  bootstrap?: (connection: Connection) => Capability;
  limits?: RpcConnectionOptions["limits"];
  /** Send server errors' stacks to the peer (default: the loop's `errorStacks`, off). */
  errorStacks?: boolean;
}

let connectionCounter = 0;

/** See the module comment. */
export class Connection {
  readonly loop: EventLoop;
  readonly rpc: RpcConnection;
  readonly name: string;
  /** Server Threads created for this peer (makeThread, makePool, our callback Threads). */
  readonly threads = new Set<ThreadServer>();
  /** Pool threads from `makePool`, in index order; undefined until the peer calls it. */
  pool: ThreadServer[] | undefined;
  /**
   * @internal Told about every Context `fillContext` fills for a call on this Connection (the
   * worker bridge's Connection sets it, to carry the lane and `thread: "pool"` to the loop).
   */
  contextHook: ((ctx: Struct, thread: ThreadContext, pool: boolean) => void) | undefined = undefined;

  #state: ConnectionState = "open";
  #ref: EventLoopRef;
  #syncCleanups = new CleanupList();
  #asyncCleanupsHeld: Array<() => unknown> | undefined;
  #disconnectCbs = new Set<(err: Error | undefined) => void>();
  #abort = new AbortController();
  #peerThreadMap: Capability | null = null;
  #threadMapServer: ThreadMapServer | undefined;
  #threadMapCap: Capability | undefined;
  #poolCaps: Capability[] = [];
  #bootstrap: Capability | undefined;
  #teardown: Promise<void> | undefined;
  #disconnected: Promise<void>;
  #resolveDisconnected!: () => void;
  #error: Error | undefined;

  /** Takes ownership of `transport`. Loop thread only. */
  constructor(loop: EventLoop, transport: Transport, opts: ConnectionOptions = {}) {
    this.loop = loop;
    this.name = opts.name ?? `connection#${++connectionCounter}`;
    this.#ref = loop.ref();
    this.#disconnected = new Promise<void>((r) => (this.#resolveDisconnected = r));
    this.#bootstrap = opts.bootstrap?.(this);
    const rpcOpts: RpcConnectionOptions = {
      name: this.name,
      // The engine's lines already start with the connection name: do not repeat it.
      log: (level, msg) => loop.log(level, msg.startsWith(`${this.name}: `) ? msg : `${this.name}: ${msg}`),
      // The loop's level is fixed: unless it logs "trace", the engine formats no line per message.
      trace: loop.logEnabled("trace"),
    };
    // One line per message, from the engine, naming methods through the generated tables.
    if (rpcOpts.trace === true) rpcOpts.describe = traceDescriber((text) => loop.truncate(text));
    if (this.#bootstrap) rpcOpts.bootstrap = this.#bootstrap;
    if (opts.limits) rpcOpts.limits = opts.limits;
    if (opts.errorStacks ?? loop.errorStacks) rpcOpts.errorStacks = true;
    this.rpc = new RpcConnection(transport, rpcOpts);
    this.rpc.onClose((err) => {
      if (this.#state === "open") {
        loop.log("info", `${this.name}: disconnected${err ? ` (${err.message})` : ""}`);
        void this.#startTeardown(err, false);
      }
    });
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Aborted when teardown starts; server calls on this connection observe it. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Resolves (never rejects) once teardown has finished, for any reason. */
  get disconnected(): Promise<void> {
    return this.#disconnected;
  }

  /** Why the connection ended (undefined for a clean close or while open). */
  get error(): Error | undefined {
    return this.#error;
  }

  // ---------------------------------------------------------------------------------------------
  // cleanups

  /**
   * Registers `fn` to run during teardown step 4 (upstream `addSyncCleanup`; ProxyClients register
   * their disconnect callback here). Returns a handle for {@link removeSyncCleanup}. After teardown
   * has run the sync cleanups, `fn` runs on a later turn instead (the connection is already gone).
   */
  addSyncCleanup(fn: () => void): CleanupHandle {
    if (this.#state === "closed") {
      this.loop.post(fn);
      // A handle of a private list, already unlinked: removing it is a harmless no-op.
      const list = new CleanupList();
      const handle = list.add(fn);
      list.remove(handle);
      return handle;
    }
    return this.#syncCleanups.add(fn);
  }

  /**
   * Unregisters a sync cleanup. Loop thread only. A no-op (returns false) for an entry that has
   * already run or is running, so callers may race teardown safely.
   */
  removeSyncCleanup(handle: CleanupHandle): boolean {
    return this.#syncCleanups.remove(handle);
  }

  /** Number of registered sync cleanups (tests and leak checks). */
  get syncCleanupCount(): number {
    return this.#syncCleanups.size;
  }

  /**
   * Queues `fn` on the loop's async-cleanup queue; while teardown is running it is held back until
   * the sync cleanups have run (teardown step 5).
   */
  addAsyncCleanup(fn: () => unknown): void {
    if (this.#asyncCleanupsHeld) this.#asyncCleanupsHeld.push(fn);
    else this.loop.addAsyncCleanup(fn);
  }

  /**
   * `cb(err)` runs once, on a later turn after teardown finished (any cause: local close, peer
   * close, transport error; `err` undefined for a clean end). Registering after the end schedules
   * it at once. Returns an unregister function.
   */
  onDisconnect(cb: (err: Error | undefined) => void): () => void {
    if (this.#state === "closed") {
      let live = true;
      this.loop.post(() => {
        if (live) cb(this.#error);
      });
      return () => {
        live = false;
      };
    }
    this.#disconnectCbs.add(cb);
    return () => void this.#disconnectCbs.delete(cb);
  }

  // ---------------------------------------------------------------------------------------------
  // thread maps

  /** The peer's ThreadMap (borrowed; dup() to keep), set by the `construct` exchange. */
  get peerThreadMap(): Capability | null {
    return this.#peerThreadMap;
  }

  /** Takes ownership of `cap` (replacing and closing any previous one). */
  setPeerThreadMap(cap: Capability | null): void {
    if (this.#state !== "open") {
      cap?.close();
      return;
    }
    const old = this.#peerThreadMap;
    this.#peerThreadMap = cap && !cap.isNull ? cap : null;
    if (cap && cap.isNull) cap.close();
    old?.close();
  }

  /** Our ThreadMap server for this peer, created on first use. Returns a new reference. */
  threadMapCap(make: (conn: Connection) => { server: ThreadMapServer; cap: Capability }): Capability {
    if (!this.#threadMapCap) {
      const { server, cap } = make(this);
      this.#threadMapServer = server;
      this.#threadMapCap = cap;
    }
    return this.#threadMapCap.dup();
  }

  get threadMapServer(): ThreadMapServer | undefined {
    return this.#threadMapServer;
  }

  /** @internal makePool: keeps one reference per pool Thread until teardown. */
  setPool(threads: ThreadServer[], caps: Capability[]): void {
    this.pool = threads;
    this.#poolCaps = caps;
  }

  // ---------------------------------------------------------------------------------------------
  // teardown

  /**
   * Closes the connection (teardown steps 1-6 in the module comment); resolves when done.
   * Idempotent: later calls return the same promise. `reason` is what the peer's pending calls see.
   */
  close(reason?: Error): Promise<void> {
    return this.#startTeardown(reason, true);
  }

  #startTeardown(err: Error | undefined, local: boolean): Promise<void> {
    if (!this.#teardown) this.#teardown = this.#runTeardown(err, local);
    return this.#teardown;
  }

  async #runTeardown(err: Error | undefined, local: boolean): Promise<void> {
    this.#state = "closing";
    this.#error = err;
    this.#asyncCleanupsHeld = [];
    // 1. cancel in-flight server calls.
    this.#abort.abort(err ?? new DisconnectedError("Interrupted by disconnect"));
    // 2. drop our capabilities; the engine drops its tables in close() below.
    const caps = [this.#peerThreadMap, this.#threadMapCap, ...this.#poolCaps, this.#bootstrap];
    this.#peerThreadMap = null;
    this.#threadMapCap = undefined;
    this.#poolCaps = [];
    this.#bootstrap = undefined;
    for (const cap of caps) {
      try {
        cap?.close();
      } catch (e) {
        this.loop.log("error", `${this.name}: releasing a capability failed: ${errorText(e)}`);
      }
    }
    // 3. flush and end (a no-op when the link is already gone).
    try {
      await this.rpc.close(local ? err : undefined);
    } catch (e) {
      this.loop.log("warning", `${this.name}: closing the RPC connection failed: ${errorText(e)}`);
    }
    // 4. sync cleanups, one at a time, each unlinked before it runs.
    this.#state = "closed";
    for (let fn = this.#syncCleanups.popFront(); fn; fn = this.#syncCleanups.popFront()) {
      try {
        fn();
      } catch (e) {
        this.loop.log("error", `${this.name}: sync cleanup failed: ${errorText(e)}`);
      }
    }
    // 5. async cleanups, after every sync cleanup.
    const held = this.#asyncCleanupsHeld;
    this.#asyncCleanupsHeld = undefined;
    for (const fn of held) this.loop.addAsyncCleanup(fn);
    // 6. notify.
    this.loop.log("debug", `${this.name}: teardown finished`);
    this.#resolveDisconnected();
    const cbs = [...this.#disconnectCbs];
    this.#disconnectCbs.clear();
    const error = this.#error;
    if (cbs.length > 0) {
      this.loop.post(() => {
        for (const cb of cbs) {
          try {
            cb(error);
          } catch (e) {
            this.loop.log("error", `${this.name}: disconnect callback failed: ${errorText(e)}`);
          }
        }
      });
    }
    this.#ref.reset();
  }
}

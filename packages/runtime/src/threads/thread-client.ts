/**
 * {@link ThreadClient}: upstream's `ProxyClient<Thread>` in a `ConnThreads` map (proxy-io.h,
 * proxy.cpp): one (ThreadContext, Connection) → Thread capability entry.
 *
 * Owns: one Thread capability reference and one sync cleanup on its Connection.
 * Threading: loop thread only (every mutation goes through `loop.sync`).
 */
import type { Capability } from "@multiprocess-ts/capnp";
import type { CleanupHandle, Connection } from "../connection.js";

/**
 * One (ThreadContext, Connection) → Thread capability entry: upstream's `ProxyClient<Thread>` in a
 * `ConnThreads` map. It owns one reference to the Thread capability.
 *
 * Teardown is safe in either order (upstream #189, fixed by #201; docs/threading.md): registration
 * adds a disconnect cleanup to the Connection; if the Connection goes first, that cleanup marks the
 * entry `destroyed`, removes it from its map and releases the capability; if the entry goes first, {@link destroy} runs inside
 * `loop.sync` (the barrier every Connection mutation goes through), sees `destroyed === false` and
 * the cleanup still registered, so the Connection is still alive and `removeSyncCleanup` is valid.
 * Maps are searched by Connection again at removal time, never through stale references.
 */
export class ThreadClient {
  readonly connection: Connection;
  #map: Map<Connection, ThreadClient>;
  #cap: Capability | null;
  #cleanup: CleanupHandle | undefined;
  #destroyed = false;

  /** Takes ownership of `cap`. Loop thread only. */
  constructor(map: Map<Connection, ThreadClient>, connection: Connection, cap: Capability) {
    this.connection = connection;
    this.#map = map;
    this.#cap = cap;
    connection.loop.sync(() => {
      this.#cleanup = connection.addSyncCleanup(() => {
        // Connection first: it has spliced this callback out, so we must not remove it again.
        this.#cleanup = undefined;
        this.#drop();
      });
    });
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** The Thread capability (borrowed: dup() it to keep it). Null once destroyed. */
  get cap(): Capability | null {
    return this.#cap;
  }

  /** Entry first: unregister from the Connection and release the capability. Idempotent. */
  destroy(): void {
    this.connection.loop.sync(() => {
      if (this.#destroyed) return;
      if (this.#cleanup !== undefined) {
        this.connection.removeSyncCleanup(this.#cleanup);
        this.#cleanup = undefined;
      }
      this.#drop();
    });
  }

  #drop(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#map.get(this.connection) === this) this.#map.delete(this.connection);
    const cap = this.#cap;
    this.#cap = null;
    cap?.close();
  }
}

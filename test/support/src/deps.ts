/**
 * Lazy access to the packages this fixture drives, with the shapes docs/contracts.md promises.
 *
 * Why dynamic: the RPC engine, the runtime's Connection/proxy layer, the generated FooInterface
 * proxies and the node socket/spawn helpers are written in parallel with this fixture. Importing
 * them statically would break `tsc -b` for every package that depends on test-support until all of
 * them land. Instead each piece is looked up at run time; a scenario names what it `requires`, and
 * the runner keeps scenarios whose dependencies are missing out of the default list (reported as
 * pending). TODO(cleanup): switch to static imports once runtime, proto and node export these.
 *
 * Threading: loop thread only (everything here is plain module loading).
 */

import type { MemoryTransport, Transport } from "@multiprocess-ts/capnp";

/* eslint-disable @typescript-eslint/no-explicit-any */

/** The RPC engine's connection, as far as the fixture uses it (contracts.md §1). */
export interface RpcConnectionLike {
  stats(): { questions: number; answers: number; imports: number; exports: number; embargoes: number };
  readonly isClosed: boolean;
  readonly closed: Promise<Error | undefined>;
}

/** Runtime Connection (contracts.md §2). */
export interface ConnectionLike {
  readonly loop: EventLoopLike;
  readonly rpc: RpcConnectionLike;
  onDisconnect(cb: () => void): unknown;
  close(reason?: Error): Promise<void>;
  readonly disconnected: Promise<void>;
}

export interface TestingHooksLike {
  makeThread?: () => void;
  makeThreadCreated?: () => void;
  asyncRequestStart?: () => void;
  asyncRequestDone?: () => void;
  connected?: () => void;
  disconnected?: () => void;
}

/** Runtime EventLoop (packages/runtime/src/event-loop.ts). */
export interface EventLoopLike {
  readonly name: string;
  readonly hooks: TestingHooksLike;
  readonly numRefs: number;
  readonly pendingWork: number;
  readonly done: Promise<void>;
  post(fn: () => void): void;
  sync<T>(fn: () => T): T;
  ref(): Disposable;
  addAsyncCleanup(fn: () => unknown): void;
}

export type LogFnLike = (level: "trace" | "debug" | "info" | "warning" | "error", msg: string) => void;

/** A generated client class (FooInterfaceClient, FooCallbackClient...). */
export type ClientCtor = (new (cap: any, connection: any, opts?: { destroyConnection?: boolean }) => any) & {
  interfaceId: bigint;
};
/** A generated server class. */
export type ServerCtor = (new (impl: any, connection: any) => any) & { interfaceId: bigint };

export interface Deps {
  capnp: {
    memoryTransportPair(): [MemoryTransport, MemoryTransport];
    RpcConnection: new (t: Transport, opts?: Record<string, unknown>) => RpcConnectionLike;
    DisconnectedError: new (...a: any[]) => Error;
  };
  runtime: {
    EventLoop: new (name: string, opts?: { log?: LogFnLike | { logFn?: LogFnLike; level?: string }; hooks?: TestingHooksLike }) => EventLoopLike;
    Connection: new (loop: EventLoopLike, transport: Transport, opts?: Record<string, unknown>) => ConnectionLike;
    serveTransport(loop: EventLoopLike, transport: Transport, impl: unknown, Server: ServerCtor): ConnectionLike;
    connectTransport(loop: EventLoopLike, transport: Transport, Client: ClientCtor): Promise<any>;
    [k: string]: any;
  };
  foo: {
    FooInterfaceClient: ClientCtor;
    FooInterfaceServer: ServerCtor;
    [k: string]: any;
  };
  node: { [k: string]: any };
}

/** Module specifiers of each group. */
const MODULES = {
  capnp: "@multiprocess-ts/capnp",
  runtime: "@multiprocess-ts/runtime",
  foo: "@multiprocess-ts/proto/test/foo.capnp.js",
  node: "@multiprocess-ts/node",
} as const;

export type DepGroup = keyof typeof MODULES;
/** `group.export`, e.g. "runtime.EventLoop", "foo.FooInterfaceClient", "node.listenConnections". */
export type DepName = `${DepGroup}.${string}`;

const loaded = new Map<DepGroup, Promise<Record<string, unknown> | Error>>();

function loadGroup(g: DepGroup): Promise<Record<string, unknown> | Error> {
  let p = loaded.get(g);
  if (p === undefined) {
    p = import(MODULES[g]).then(
      (m: Record<string, unknown>) => m,
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    );
    loaded.set(g, p);
  }
  return p;
}

/** The dependencies in `names` that are not available yet (module missing or export missing). */
export async function missingDeps(names: readonly DepName[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    const [g, exp] = n.split(".", 2) as [DepGroup, string];
    if (!(g in MODULES)) {
      out.push(`${n} (unknown group)`);
      continue;
    }
    const m = await loadGroup(g);
    if (m instanceof Error) out.push(`${n} (${MODULES[g]} not loadable)`);
    else if (m[exp] === undefined) out.push(n);
  }
  return out;
}

export class MissingDependencyError extends Error {
  constructor(readonly missing: readonly string[]) {
    super(`not available yet: ${missing.join(", ")}`);
  }
  override get name(): string {
    return "MissingDependencyError";
  }
}

/** Loads the groups and checks that `names` exist; throws {@link MissingDependencyError} otherwise. */
export async function requireDeps(names: readonly DepName[]): Promise<Deps> {
  const missing = await missingDeps(names);
  if (missing.length > 0) throw new MissingDependencyError(missing);
  const out: Record<string, unknown> = {};
  for (const g of Object.keys(MODULES) as DepGroup[]) {
    const m = await loadGroup(g);
    out[g] = m instanceof Error ? {} : m;
  }
  return out as unknown as Deps;
}

/** What {@link createTestSetup} needs. */
export const SETUP_DEPS: readonly DepName[] = [
  "capnp.RpcConnection",
  "runtime.EventLoop",
  "runtime.Connection",
  "runtime.serveTransport",
  "foo.FooInterfaceClient",
  "foo.FooInterfaceServer",
];

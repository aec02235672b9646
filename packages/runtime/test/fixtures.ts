/**
 * Hand-written proxies for runtime tests, shaped like mpgen output (contracts.md §2), for a subset
 * of proto/test/foo.capnp (FooInterface, FooCallback) plus a small Init with `construct`.
 * The RPC engine does not check struct ids, so one generic struct layout (8 data bytes, 2 pointers)
 * serves every params/results struct here.
 */
import { memoryTransportPair, type MemoryTransport } from "@multiprocess-ts/capnp";
import {
  Connection,
  EventLoop,
  connectTransport,
  serveTransport,
  type LogLevel,
} from "@multiprocess-ts/runtime";
import * as $mp from "@multiprocess-ts/runtime/gen";
import { ObjectSize, Struct } from "capnp-ts";
import { expect } from "vitest";

export class Args extends Struct {
  static override readonly _capnp = { displayName: "Args", id: "0", size: new ObjectSize(8, 2) };
  get a(): number {
    return Struct.getInt32(0, this);
  }
  set a(v: number) {
    Struct.setInt32(0, v, this);
  }
  get b(): number {
    return Struct.getInt32(4, this);
  }
  set b(v: number) {
    Struct.setInt32(4, v, this);
  }
  get result(): number {
    return Struct.getInt32(0, this);
  }
  set result(v: number) {
    Struct.setInt32(0, v, this);
  }
  get text(): string {
    return Struct.getText(1, this);
  }
  set text(v: string) {
    Struct.setText(1, v, this);
  }
}

const m = (name: string, interfaceId: bigint, methodId: number, context: number, extra: Partial<$mp.ProxyMethod> = {}): $mp.ProxyMethod => ({
  name,
  interfaceId,
  methodId,
  Params: Args,
  Results: Args,
  context,
  destroy: false,
  ...extra,
});

// ---------------------------------------------------------------------------------------------
// FooCallback (0xb5a2f89c910238fc): destroy @0 (context), call @1 (context, arg) -> (result)

export interface FooCallback {
  call(arg: number): number | Promise<number>;
}
const CB_ID = 0xb5a2f89c910238fcn;
export const FooCallback$destroy = m("destroy", CB_ID, 0, 0, { destroy: true, special: "destroy" });
export const FooCallback$call = m("call", CB_ID, 1, 0);

export class FooCallbackClient extends $mp.ProxyClientBase implements FooCallback {
  static readonly interfaceId = CB_ID;
  static readonly hasDestroy = true;
  static readonly $construct: $mp.ProxyMethod | undefined = undefined;
  static readonly $destroy: $mp.ProxyMethod | undefined = FooCallback$destroy;
  call(arg: number): Promise<number> {
    return this.$invoke(FooCallback$call, (p) => (p.a = $mp.checkInt32(arg)), (r) => r.result);
  }
}
export class FooCallbackServer extends $mp.ProxyServerBase<FooCallback> {
  static readonly interfaceId = CB_ID;
  static readonly methods: readonly $mp.ServerMethod<FooCallback>[] = [
    { method: FooCallback$destroy, special: "destroy" },
    { method: FooCallback$call, async invoke(impl, p, r) { r.result = $mp.checkInt32(await impl.call(p.a)); } },
  ];
}

// ---------------------------------------------------------------------------------------------
// FooFn (0xb9ab462afcf29e05): destroy @0 (context), call @1 (context) -> (result)

export type FooFn = () => number | Promise<number>;
const FN_ID = 0xb9ab462afcf29e05n;
const FooFn$destroy = m("destroy", FN_ID, 0, 0, { destroy: true, special: "destroy" });
const FooFn$call = m("call", FN_ID, 1, 0);
export class FooFnClient extends $mp.ProxyClientBase {
  static readonly interfaceId = FN_ID;
  static readonly hasDestroy = true;
  static readonly $construct: $mp.ProxyMethod | undefined = undefined;
  static readonly $destroy: $mp.ProxyMethod | undefined = FooFn$destroy;
  call(): Promise<number> {
    return this.$invoke(FooFn$call, () => {}, (r) => r.result);
  }
}
export class FooFnServer extends $mp.ProxyServerBase<{ call: FooFn }> {
  static readonly interfaceId = FN_ID;
  static readonly methods: readonly $mp.ServerMethod<{ call: FooFn }>[] = [
    { method: FooFn$destroy, special: "destroy" },
    { method: FooFn$call, async invoke(impl, _p, r) { r.result = $mp.checkInt32(await impl.call()); } },
  ];
}

// ---------------------------------------------------------------------------------------------
// FooInterface (0x90de09db457f4d3b), subset:
//   add @0 (a, b) -> (result)                      no context
//   initThreadMap @4 (threadMap) -> (threadMap)    ptr 0 both ways
//   callback @5 (context, callback, arg) -> (result)
//   callFnAsync @18 (context) -> ()
//   callIntFnAsync @21 (context, arg) -> (result)
//   passFn @16 (context, fn :FooFn) -> (result)
//   threadName @30 (context) -> (text)             test-only: the server thread's name

export interface Foo {
  add(a: number, b: number): number | Promise<number>;
  initThreadMap(): void | Promise<void>;
  callback(cb: FooCallback, arg: number): number | Promise<number>;
  callFnAsync(): void | Promise<void>;
  callIntFnAsync(arg: number): number | Promise<number>;
  threadName(): string | Promise<string>;
  passFn(fn: FooFn | null): number | Promise<number>;
}
const FOO_ID = 0x90de09db457f4d3bn;
const Foo$add = m("add", FOO_ID, 0, -1);
const Foo$initThreadMap = m("initThreadMap", FOO_ID, 4, -1);
const Foo$callback = m("callback", FOO_ID, 5, 0);
const Foo$callFnAsync = m("callFnAsync", FOO_ID, 18, 0);
export const Foo$callIntFnAsync = m("callIntFnAsync", FOO_ID, 21, 0);
const Foo$threadName = m("threadName", FOO_ID, 30, 0);
const Foo$passFn = m("passFn", FOO_ID, 16, 0);

export class FooClient extends $mp.ProxyClientBase implements Foo {
  static readonly interfaceId = FOO_ID;
  static readonly hasDestroy = false;
  static readonly $construct: $mp.ProxyMethod | undefined = undefined;
  static readonly $destroy: $mp.ProxyMethod | undefined = undefined;
  add(a: number, b: number): Promise<number> {
    return this.$invoke(Foo$add, (p) => { p.a = $mp.checkInt32(a); p.b = $mp.checkInt32(b); }, (r) => r.result);
  }
  initThreadMap(): Promise<void> {
    return this.$invoke(Foo$initThreadMap, (p, io) => $mp.writeCap(p, 0, io.threadMap()), (r, io) => io.setPeerThreadMap($mp.readCap(r, 0)));
  }
  callback(cb: FooCallback, arg: number): Promise<number> {
    return this.$invoke(
      Foo$callback,
      (p, io) => { $mp.writeCap(p, 1, io.exportObject(cb, FooCallbackServer)); p.a = $mp.checkInt32(arg); },
      (r) => r.result,
    );
  }
  callFnAsync(): Promise<void> {
    return this.$invoke(Foo$callFnAsync, () => {}, () => undefined);
  }
  callIntFnAsync(arg: number): Promise<number> {
    return this.$invoke(Foo$callIntFnAsync, (p) => (p.a = $mp.checkInt32(arg)), (r) => r.result);
  }
  threadName(): Promise<string> {
    return this.$invoke(Foo$threadName, () => {}, (r) => r.text);
  }
  passFn(fn: FooFn | null): Promise<number> {
    return this.$invoke(Foo$passFn, (p, io) => $mp.writeCap(p, 1, io.exportFunction(fn, FooFnServer)), (r) => r.result);
  }
  /** Test-only: send callIntFnAsync with a Context whose `thread` is `threadCap` (or unset). */
  callIntFnOn(threadCap: $mp.Capability | null, arg: number, callbackThread: $mp.Capability | null = null): Promise<number> {
    return rawCall(this, Foo$callIntFnAsync, (p) => {
      p.a = arg;
      const ctx = Struct.initStructAt(0, $mp.Context, p);
      if (threadCap) $mp.writeCap(ctx, 0, threadCap);
      if (callbackThread) $mp.writeCap(ctx, 1, callbackThread);
    }).then((r) => r.result);
  }
}

/** Sends `method` on `client.$cap` without the runtime filling the Context. */
export async function rawCall(client: $mp.ProxyClientBase, method: $mp.ProxyMethod, build: (p: Args) => void): Promise<{ result: number }> {
  const req = client.$cap.newCall(method.interfaceId, method.methodId, Args);
  build(req.params);
  const resp = await req.send();
  try {
    return { result: resp.results(Args).result };
  } finally {
    resp.close();
  }
}

export class FooServer extends $mp.ProxyServerBase<Foo> {
  static readonly interfaceId = FOO_ID;
  static readonly methods: readonly $mp.ServerMethod<Foo>[] = [
    { method: Foo$add, async invoke(impl, p, r) { r.result = $mp.checkInt32(await impl.add(p.a, p.b)); } },
    {
      method: Foo$initThreadMap,
      async invoke(impl, p, r, io) {
        io.setPeerThreadMap($mp.readCap(p, 0));
        $mp.writeCap(r, 0, io.threadMap());
        await impl.initThreadMap();
      },
    },
    {
      method: Foo$callback,
      async invoke(impl, p, r, io) {
        const cb = io.importObject($mp.readCap(p, 1), FooCallbackClient)!;
        r.result = $mp.checkInt32(await impl.callback(cb, p.a));
      },
    },
    { method: Foo$callFnAsync, async invoke(impl) { await impl.callFnAsync(); } },
    { method: Foo$callIntFnAsync, async invoke(impl, p, r) { r.result = $mp.checkInt32(await impl.callIntFnAsync(p.a)); } },
    { method: Foo$threadName, async invoke(impl, _p, r) { r.text = await impl.threadName(); } },
    {
      method: Foo$passFn,
      async invoke(impl, p, r, io) {
        r.result = $mp.checkInt32(await impl.passFn(io.importFunction<FooFn>($mp.readCap(p, 1), FooFnClient)));
      },
    },
  ];
}

/** A FooInterface implementation for tests: records calls, counts disposals. */
export class FooImpl implements Foo {
  disposeCount = 0;
  readonly calls: string[] = [];
  fn: () => void | Promise<void> = () => {};
  intFn: (n: number) => number | Promise<number> = (n) => n;
  threadNameFn: () => string = () => "";
  add(a: number, b: number): number {
    this.calls.push(`add(${a},${b})`);
    return a + b;
  }
  initThreadMap(): void {}
  async callback(cb: FooCallback, arg: number): Promise<number> {
    try {
      return await cb.call(arg);
    } finally {
      await (cb as FooCallbackClient).close();
    }
  }
  async callFnAsync(): Promise<void> {
    await this.fn();
  }
  async callIntFnAsync(arg: number): Promise<number> {
    this.calls.push(`callIntFnAsync(${arg})`);
    return await this.intFn(arg);
  }
  threadName(): string {
    return this.threadNameFn();
  }
  /** Calls `fn` twice, then releases it (upstream: the std::function is destroyed after the call). */
  async passFn(fn: FooFn | null): Promise<number> {
    if (!fn) return -1;
    try {
      return (await fn()) + (await fn());
    } finally {
      await (fn as unknown as AsyncDisposable)[Symbol.asyncDispose]();
    }
  }
  [Symbol.dispose](): void {
    this.disposeCount++;
  }
}

// ---------------------------------------------------------------------------------------------
// Init (0xf005d0634bafecf9): construct @0 (threadMap) -> (threadMap), makeFoo @1 (context) -> (result :Foo)

export interface Init {
  makeFoo(): Foo | Promise<Foo>;
}
const INIT_ID = 0xf005d0634bafecf9n;
const Init$construct = m("construct", INIT_ID, 0, -1, { special: "construct" });
const Init$makeFoo = m("makeFoo", INIT_ID, 1, 0);

export class InitClient extends $mp.ProxyClientBase {
  static readonly interfaceId = INIT_ID;
  static readonly hasDestroy = false;
  static readonly $construct: $mp.ProxyMethod | undefined = Init$construct;
  static readonly $destroy: $mp.ProxyMethod | undefined = undefined;
  makeFoo(): Promise<FooClient> {
    return this.$invoke(Init$makeFoo, () => {}, (r, io) => io.importObject($mp.readCap(r, 0), FooClient)!);
  }
}
/** An Init implementation handing out FooImpl objects. */
export class InitImpl implements Init {
  readonly foos: FooImpl[] = [];
  disposeCount = 0;
  makeFoo(): FooImpl {
    const f = new FooImpl();
    this.foos.push(f);
    return f;
  }
  [Symbol.dispose](): void {
    this.disposeCount++;
  }
}

export class InitServer extends $mp.ProxyServerBase<Init> {
  static readonly interfaceId = INIT_ID;
  static readonly methods: readonly $mp.ServerMethod<Init>[] = [
    { method: Init$construct, special: "construct" },
    {
      method: Init$makeFoo,
      async invoke(impl, _p, r, io) {
        $mp.writeCap(r, 0, io.exportObject(await impl.makeFoo(), FooServer));
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Fixture

export interface LogLine {
  loop: string;
  level: LogLevel;
  msg: string;
}

export interface Pair<C> {
  serverLoop: EventLoop;
  clientLoop: EventLoop;
  serverConn: Connection;
  client: C;
  clientConn: Connection;
  clientTransport: MemoryTransport;
  serverTransport: MemoryTransport;
  logs: LogLine[];
  /** Close the client (and its Connection), wait for both sides and loops, assert no leaks. */
  dispose(): Promise<void>;
}

export function makeLoops(level: LogLevel = "debug"): { serverLoop: EventLoop; clientLoop: EventLoop; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const mk = (name: string) =>
    new EventLoop(name, { log: { level, logFn: (lvl, msg) => logs.push({ loop: name, level: lvl, msg }) } });
  return { serverLoop: mk("server"), clientLoop: mk("client"), logs };
}

/** Serves `impl` with `Server` and connects a `Client` over a memory transport pair. */
export async function connectPair<I, C extends $mp.ProxyClientBase>(
  impl: I,
  Server: $mp.ProxyServerCtor<I>,
  Client: $mp.ProxyClientCtor<C>,
  opts: { level?: LogLevel } = {},
): Promise<Pair<C>> {
  const { serverLoop, clientLoop, logs } = makeLoops(opts.level);
  const [clientTransport, serverTransport] = memoryTransportPair();
  const serverConn = serveTransport(serverLoop, serverTransport, impl, Server);
  serverConn.onDisconnect(() => {});
  const client = await connectTransport(clientLoop, clientTransport, Client);
  const clientConn = client.$connection;
  return {
    serverLoop,
    clientLoop,
    serverConn,
    client,
    clientConn,
    clientTransport,
    serverTransport,
    logs,
    async dispose() {
      await client.close();
      await clientConn.disconnected;
      await serverConn.disconnected;
      await Promise.all([serverLoop.done, clientLoop.done]);
      assertNoLeaks([serverConn, clientConn], [serverLoop, clientLoop], logs);
    },
  };
}

/** RPC tables empty, loops unreferenced and idle, no error-level log lines unless `allowed`. */
export function assertNoLeaks(conns: Connection[], loops: EventLoop[], logs: LogLine[], allowed: RegExp[] = []): void {
  for (const c of conns) expect(c.rpc.stats(), `${c.name} rpc stats`).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
  for (const l of loops) {
    expect(l.numRefs, `${l.name} refs`).toBe(0);
    expect(l.pendingWork, `${l.name} pending work`).toBe(0);
  }
  const errors = logs.filter((l) => l.level === "error" && !allowed.some((re) => re.test(l.msg)));
  expect(errors).toEqual([]);
}

/**
 * Hand-written proxies shaped like mpgen output (contracts.md §2) for the part of
 * proto/test/foo.capnp the worker race tests use. Replace with the generated
 * `@multiprocess-ts/proto` classes once mpgen output is checked in (TODO(cleanup)).
 *
 * One struct layout (8 data bytes, 2 pointers) serves every params/results struct here; the
 * engine does not check struct ids. Pointer 0 is the Proxy.Context wherever a method has one.
 */
import * as $mp from "@multiprocess-ts/runtime/gen";
import { ThreadContext, type EventLoop } from "@multiprocess-ts/runtime";
import { ObjectSize, Struct } from "capnp-ts";

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

function method(name: string, interfaceId: bigint, methodId: number, context: number): $mp.ProxyMethod {
  return { name, interfaceId, methodId, Params: Args, Results: Args, context, destroy: false };
}

// FooCallback: call @1 (context, arg) -> (result)
export interface FooCallback {
  call(arg: number): number | Promise<number>;
}
const CB_ID = 0xb5a2f89c910238fcn;
const FooCallback$call = method("call", CB_ID, 1, 0);

export class FooCallbackClient extends $mp.ProxyClientBase implements FooCallback {
  static readonly interfaceId = CB_ID;
  static readonly hasDestroy = false;
  static readonly $construct: $mp.ProxyMethod | undefined = undefined;
  static readonly $destroy: $mp.ProxyMethod | undefined = undefined;
  call(arg: number): Promise<number> {
    return this.$invoke(FooCallback$call, (p) => (p.a = $mp.checkInt32(arg)), (r) => r.result);
  }
}
export class FooCallbackServer extends $mp.ProxyServerBase<FooCallback> {
  static readonly interfaceId = CB_ID;
  static readonly methods: readonly $mp.ServerMethod<FooCallback>[] = [
    { method: FooCallback$call, async invoke(impl, p, r) { r.result = $mp.checkInt32(await impl.call(p.a)); } },
  ];
}

// A FooCallback that is also a Connection's Init (test-only): initThreadMap @4 on the same
// interface id, so a Connection whose bootstrap is a callback can carry Proxy.Context calls.
const FooCallback$initThreadMap = method("initThreadMap", CB_ID, 4, -1);
export class ThreadedCallbackClient extends FooCallbackClient {
  initThreadMap(): Promise<void> {
    return this.$invoke(FooCallback$initThreadMap, (p, io) => $mp.writeCap(p, 0, io.threadMap()), (r, io) => io.setPeerThreadMap($mp.readCap(r, 0)));
  }
}
export class ThreadedCallbackServer extends $mp.ProxyServerBase<FooCallback> {
  static readonly interfaceId = CB_ID;
  static readonly methods: readonly $mp.ServerMethod<FooCallback>[] = [
    ...FooCallbackServer.methods,
    {
      method: FooCallback$initThreadMap,
      invoke(_impl, p, r, io) {
        io.setPeerThreadMap($mp.readCap(p, 0));
        $mp.writeCap(r, 0, io.threadMap());
      },
    },
  ];
}

// FooInterface subset:
//   add @0 (a, b) -> (result)                         no context: runs on the server's loop
//   initThreadMap @4 (threadMap) -> (threadMap)       pointer 0 both ways
//   callback @5 (context, callback @ptr1, arg) -> (result)
//   callIntFnAsync @21 (context, arg) -> (result)
//   threadName @30 (context) -> (text)                test-only: the server thread's name
export interface Foo {
  add(a: number, b: number): number | Promise<number>;
  initThreadMap(): void | Promise<void>;
  callback(cb: FooCallback, arg: number): number | Promise<number>;
  callIntFnAsync(arg: number): number | Promise<number>;
  threadName(): string | Promise<string>;
}
const FOO_ID = 0x90de09db457f4d3bn;
const Foo$add = method("add", FOO_ID, 0, -1);
const Foo$initThreadMap = method("initThreadMap", FOO_ID, 4, -1);
const Foo$callback = method("callback", FOO_ID, 5, 0);
const Foo$callIntFnAsync = method("callIntFnAsync", FOO_ID, 21, 0);
const Foo$threadName = method("threadName", FOO_ID, 30, 0);

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
  callIntFnAsync(arg: number): Promise<number> {
    return this.$invoke(Foo$callIntFnAsync, (p) => (p.a = $mp.checkInt32(arg)), (r) => r.result);
  }
  threadName(): Promise<string> {
    return this.$invoke(Foo$threadName, () => {}, (r) => r.text);
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
        try {
          r.result = $mp.checkInt32(await impl.callback(cb, p.a));
        } finally {
          await cb.close();
        }
      },
    },
    { method: Foo$callIntFnAsync, async invoke(impl, p, r) { r.result = $mp.checkInt32(await impl.callIntFnAsync(p.a)); } },
    { method: Foo$threadName, async invoke(impl, _p, r) { r.text = await impl.threadName(); } },
  ];
}

/** The server-side implementation: records what ran where. */
export class FooImpl implements Foo {
  readonly log: string[] = [];
  /** What callIntFnAsync does (tests replace it to park a call). */
  intFn: (n: number, signal?: AbortSignal) => number | Promise<number> = (n) => n;

  constructor(private readonly loop: EventLoop) {}

  private here(): string {
    return ThreadContext.current(this.loop).name;
  }
  add(a: number, b: number): number {
    return a + b;
  }
  initThreadMap(): void {}
  async callback(cb: FooCallback, arg: number): Promise<number> {
    this.log.push(`callback(${arg}) on ${this.here()}`);
    return await cb.call(arg);
  }
  async callIntFnAsync(arg: number): Promise<number> {
    this.log.push(`callIntFnAsync(${arg}) on ${this.here()}`);
    return await this.intFn(arg);
  }
  threadName(): string {
    return this.here();
  }
}

/** The FooInterface implementation served by the bench (upstream foo.h semantics where used). */
import type {
  ExtendedCallback,
  FooCallback,
  FooCustom,
  FooEmpty,
  FooFn,
  FooInterface,
  FooMessage,
  FooMutable,
  FooStruct,
} from "@multiprocess-ts/proto/test/foo.capnp.js";

async function release(x: unknown): Promise<void> {
  const c = x as { close?: () => unknown; [Symbol.asyncDispose]?: () => unknown } | null;
  if (c === null || c === undefined) return;
  if (typeof c.close === "function") await c.close();
  else if (typeof c[Symbol.asyncDispose] === "function") await c[Symbol.asyncDispose]!();
}

function unused(name: string): never {
  throw new Error(`bench FooImpl: ${name} is not used by the bench`);
}

export class BenchFoo implements FooInterface {
  saved: FooCallback | null = null;
  add(a: number, b: number): number { return a + b; }
  addOut(a: number, b: number): number { return a + b; }
  addInOut(x: number, sum: number): number { return sum + x; }
  mapSize(map: Map<string, string>): number { return map.size; }
  pass(arg: FooStruct): FooStruct { return arg; }
  raise(): never { unused("raise"); }
  initThreadMap(): void { /* the runtime exchanges ThreadMaps */ }
  /** Calls the callback, then releases it (the remote destroy runs before the call returns). */
  async callback(cb: FooCallback | null, arg: number): Promise<number> {
    try { return await cb!.call(arg); } finally { await release(cb); }
  }
  callbackUnique(cb: FooCallback | null, arg: number): Promise<number> { return this.callback(cb, arg); }
  callbackShared(cb: FooCallback | null, arg: number): Promise<number> { return this.callback(cb, arg); }
  async saveCallback(cb: FooCallback | null): Promise<void> {
    const old = this.saved;
    this.saved = cb;
    await release(old);
  }
  callbackSaved(arg: number): number | Promise<number> { return this.saved!.call(arg); }
  callbackExtended(_cb: ExtendedCallback | null, _arg: number): never { unused("callbackExtended"); }
  passCustom(arg: FooCustom): FooCustom { return arg; }
  passEmpty(arg: FooEmpty): FooEmpty { return arg; }
  passData(arg: Uint8Array): Uint8Array { return arg; }
  passMessage(arg: FooMessage): FooMessage { return { message: arg.message + " call" }; }
  passMutable(arg: FooMutable): FooMutable { return { message: arg.message + " call" }; }
  passEnum(arg: number): number { return arg; }
  passDouble(arg: number): number { return arg; }
  passFn(_fn: FooFn | null): never { unused("passFn"); }
  callFn(): void { /* nothing */ }
  callFnAsync(): void { /* nothing */ }
  /** The bench's "add with a Proxy.Context": no callback, just arg + 1 on the mapped server thread. */
  callIntFnAsync(arg: number): number { return arg + 1; }
  passDataPointers(arg: Uint8Array[]): Uint8Array[] { return arg; }
}

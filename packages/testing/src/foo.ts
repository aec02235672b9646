/**
 * The FooInterface convenience (proto/test/foo.capnp): FooImplementation, the server object of
 * the project's own tests, with upstream's test/mp/test/foo.h
 * semantics (add, addOut, addInOut, pass-through methods, `raise` throws its argument, callbacks,
 * a saved callback, `fn`/`intFn` hooks run by callFn/callFnAsync/callIntFnAsync), implementing the
 * generated TS interface.
 *
 * Capabilities arrive as generated client proxies owned by the callee, so every method that
 * receives a callback releases it when done (upstream destroys the temporary ProxyClient after
 * the call); the saved callback is released when replaced or when this object is disposed.
 *
 * Threading: methods run wherever the runtime dispatches them (loop thread for context-less
 * methods; the server Thread for methods with a Context).
 */

import {
  FooInterfaceClient,
  FooInterfaceServer,
  FooStructError,
  type ExtendedCallback,
  type FooCallback,
  type FooCustom,
  type FooEmpty,
  type FooFn,
  type FooInterface,
  type FooMessage,
  type FooMutable,
  type FooStruct,
} from "@multiprocess-ts/proto/test/foo.capnp.js";
import { createTestSetup, type TestSetup, type TestSetupOptions } from "./setup.js";

/** Releases a proxy the callee owns (clients: close(); imported functions: asyncDispose). */
export async function releaseProxy(p: unknown): Promise<void> {
  const c = p as { close?: () => unknown; [Symbol.asyncDispose]?: () => unknown } | null | undefined;
  if (c === null || c === undefined) return;
  if (typeof c.close === "function") await c.close();
  else if (typeof c[Symbol.asyncDispose] === "function") await c[Symbol.asyncDispose]!();
}

export class FooImplementation implements FooInterface {
  /** Run by callFn / callFnAsync (upstream `m_fn`); must be set before those are called. */
  fn: (() => void | Promise<void>) | undefined;
  /** Run by callIntFnAsync (upstream `m_int_fn`). */
  intFn: ((n: number) => number | Promise<number>) | undefined;
  /** The callback stored by saveCallback (upstream `m_callback`). */
  savedCallback: FooCallback | null = null;
  /** How many times the runtime disposed this object (the leak check wants exactly 1). */
  disposeCount = 0;
  /** Method names in call order, for scenarios that check ordering. */
  readonly calls: string[] = [];

  add(a: number, b: number): number {
    return a + b;
  }
  addOut(a: number, b: number): number {
    return a + b;
  }
  addInOut(x: number, sum: number): number {
    return sum + x;
  }
  mapSize(map: Map<string, string>): number {
    return map.size;
  }
  pass(arg: FooStruct): FooStruct {
    return arg;
  }
  raise(arg: FooStruct): never {
    throw new FooStructError(arg);
  }
  initThreadMap(): void {}
  async callback(callback: FooCallback | null, arg: number): Promise<number> {
    try {
      if (callback === null) throw new Error("callback: null callback");
      return await callback.call(arg);
    } finally {
      await releaseProxy(callback);
    }
  }
  callbackUnique(callback: FooCallback | null, arg: number): Promise<number> {
    return this.callback(callback, arg);
  }
  callbackShared(callback: FooCallback | null, arg: number): Promise<number> {
    return this.callback(callback, arg);
  }
  async saveCallback(callback: FooCallback | null): Promise<void> {
    const old = this.savedCallback;
    this.savedCallback = callback;
    await releaseProxy(old);
  }
  async callbackSaved(arg: number): Promise<number> {
    if (this.savedCallback === null) throw new Error("callbackSaved: no saved callback");
    return await this.savedCallback.call(arg);
  }
  async callbackExtended(callback: ExtendedCallback | null, arg: number): Promise<number> {
    try {
      if (callback === null) throw new Error("callbackExtended: null callback");
      return await callback.callExtended(arg);
    } finally {
      await releaseProxy(callback);
    }
  }
  passCustom(arg: FooCustom): FooCustom {
    return arg;
  }
  passEmpty(arg: FooEmpty): FooEmpty {
    return arg;
  }
  passData(arg: Uint8Array): Uint8Array {
    return arg;
  }
  passMessage(arg: FooMessage): FooMessage {
    return { ...arg, message: arg.message + " call" };
  }
  passMutable(arg: FooMutable): FooMutable {
    return { ...arg, message: arg.message + " call" };
  }
  passEnum(arg: number): number {
    return arg;
  }
  passDouble(arg: number): number {
    return arg;
  }
  async passFn(fn: FooFn | null): Promise<number> {
    try {
      if (fn === null) throw new Error("passFn: null function");
      return await fn();
    } finally {
      await releaseProxy(fn);
    }
  }
  passDataPointers(arg: Uint8Array[]): Uint8Array[] {
    return arg;
  }
  async callFn(): Promise<void> {
    this.calls.push("callFn");
    if (!this.fn) throw new Error("callFn: fn not set");
    await this.fn();
  }
  async callFnAsync(): Promise<void> {
    this.calls.push("callFnAsync");
    if (!this.fn) throw new Error("callFnAsync: fn not set");
    await this.fn();
  }
  async callIntFnAsync(arg: number): Promise<number> {
    this.calls.push(`callIntFnAsync(${arg})`);
    if (!this.intFn) throw new Error("callIntFnAsync: intFn not set");
    return await this.intFn(arg);
  }

  /** Called by the runtime when the server object goes away (destroy, Release or disconnect). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.disposeCount++;
    const saved = this.savedCallback;
    this.savedCallback = null;
    // Upstream #219: releasing a saved callback over a dead connection must not throw out of cleanup.
    try {
      await releaseProxy(saved);
    } catch {
      // the runtime logs it; cleanup never throws
    }
  }
}

/** The setup {@link createFooSetup} returns. */
export type FooSetup = TestSetup<FooImplementation, FooInterfaceClient>;

/** {@link createTestSetup} for a fresh FooImplementation (upstream's TestSetup exactly). */
export function createFooSetup(opts: TestSetupOptions = {}): Promise<FooSetup> {
  return createTestSetup({ impl: new FooImplementation(), Server: FooInterfaceServer, Client: FooInterfaceClient }, opts);
}

/**
 * FooImplementation: the server object of the test fixture, with upstream's test/mp/test/foo.h
 * semantics (add, addOut, addInOut, pass-through methods, `raise` throws its argument, callbacks,
 * a saved callback, `fn`/`intFn` hooks run by callFn/callFnAsync/callIntFnAsync).
 *
 * Mapping to the TS interface mpgen generates (docs/contracts.md §2): out parameters are
 * returned (`addOut(a, b)` returns `ret`, `addInOut(x, sum)` returns the new `sum`), capabilities
 * arrive as generated client proxies owned by the callee, so every method that receives a callback
 * closes it when done with it (upstream destroys the temporary ProxyClient after the call).
 *
 * Threading: methods run wherever the runtime dispatches them (loop thread for context-less
 * methods; the server Thread for methods with a Context).
 */

/** A FooCallback / ExtendedCallback / FooFn proxy as the server sees it (generated client). */
export interface CallbackProxy {
  call(arg: number): number | Promise<number>;
  callExtended?(arg: number): number | Promise<number>;
  close?(): Promise<void> | void;
}

async function release(cb: unknown): Promise<void> {
  const c = cb as { close?: () => unknown } | null | undefined;
  if (c && typeof c.close === "function") await c.close();
}

export class FooImplementation {
  /** Run by callFn / callFnAsync (upstream `m_fn`); must be set before those are called. */
  fn: (() => void | Promise<void>) | undefined;
  /** Run by callIntFnAsync (upstream `m_int_fn`). */
  intFn: ((n: number) => number | Promise<number>) | undefined;
  /** The callback stored by saveCallback (upstream `m_callback`). */
  savedCallback: CallbackProxy | null = null;
  /** How many times the runtime disposed this object (must end at exactly 1). */
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
  mapSize(map: ReadonlyMap<string, string> | readonly (readonly [string, string])[]): number {
    return map instanceof Map ? map.size : (map as readonly unknown[]).length;
  }
  pass<T>(foo: T): T {
    return foo;
  }
  raise(foo: unknown): never {
    throw foo;
  }
  initThreadMap(): void {}
  async callback(callback: CallbackProxy, arg: number): Promise<number> {
    try {
      return await callback.call(arg);
    } finally {
      await release(callback);
    }
  }
  callbackUnique(callback: CallbackProxy, arg: number): Promise<number> {
    return this.callback(callback, arg);
  }
  callbackShared(callback: CallbackProxy, arg: number): Promise<number> {
    return this.callback(callback, arg);
  }
  async saveCallback(callback: CallbackProxy | null): Promise<void> {
    const old = this.savedCallback;
    this.savedCallback = callback;
    await release(old);
  }
  async callbackSaved(arg: number): Promise<number> {
    if (this.savedCallback === null) throw new Error("callbackSaved: no saved callback");
    return await this.savedCallback.call(arg);
  }
  async callbackExtended(callback: CallbackProxy, arg: number): Promise<number> {
    try {
      if (!callback.callExtended) throw new Error("callbackExtended: not an ExtendedCallback");
      return await callback.callExtended(arg);
    } finally {
      await release(callback);
    }
  }
  passCustom<T>(foo: T): T {
    return foo;
  }
  passEmpty<T>(foo: T): T {
    return foo;
  }
  passData<T>(foo: T): T {
    return foo;
  }
  passMessage(foo: { message: string }): { message: string } {
    return { message: foo.message + " call" };
  }
  passMutable(foo: { message: string }): { message: string } {
    return { message: foo.message + " call" };
  }
  passEnum(foo: number): number {
    return foo;
  }
  passDouble(value: number): number {
    return value;
  }
  async passFn(fn: (() => number | Promise<number>) | CallbackProxy): Promise<number> {
    try {
      return typeof fn === "function" ? await fn() : await (fn as { call(): number | Promise<number> }).call();
    } finally {
      await release(fn);
    }
  }
  passDataPointers<T>(values: T): T {
    return values;
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
      await release(saved);
    } catch {
      // logged by the runtime; cleanup never throws (STYLE 5)
    }
  }
}

/**
 * Runtime test fixtures: implementations of the generated test interfaces (proto/test/foo.capnp,
 * proto/test/fixtures.capnp) and the setups the runtime tests start from, all on
 * `@multiprocess-ts/testing`'s createTestSetup (generated client and server over the fenced
 * memory transport, leak check on dispose; write `await using`).
 *
 * Threading: loop thread (the test's thread); impl methods run where the runtime dispatches them.
 */
import {
  FooInterfaceClient,
  FooInterface_callIntFnAsync$Params,
  FooInterface_callIntFnAsync$Results,
  type FooFn,
} from "@multiprocess-ts/proto/test/foo.capnp.js";
import { FooInitClient, FooInitServer, ThreadFooClient, ThreadFooServer, type FooInit, type ThreadFoo } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import * as $mp from "@multiprocess-ts/runtime/gen";
import { FooImplementation, createTestSetup, releaseProxy, type TestSetup, type TestSetupOptions } from "@multiprocess-ts/testing";
import { Struct } from "capnp-ts";

/** Runtime tests log at debug level so they can assert on info/debug lines. */
const DEBUG: TestSetupOptions = { logLevel: "debug" };

/**
 * A ThreadFoo for runtime tests: upstream foo.h semantics (FooImplementation) plus `add` recorded
 * in `calls`, no-op / identity defaults for `fn` / `intFn`, `threadName` answered by
 * `threadNameFn`, and `passFn` calling the function twice.
 */
export class FooImpl extends FooImplementation implements ThreadFoo {
  override fn: () => void | Promise<void> = () => {};
  override intFn: (n: number) => number | Promise<number> = (n) => n;
  threadNameFn: () => string = () => "";
  override add(a: number, b: number): number {
    this.calls.push(`add(${a},${b})`);
    return a + b;
  }
  threadName(): string {
    return this.threadNameFn();
  }
  /** Calls `fn` twice, then releases it (upstream: the std::function is destroyed after the call). */
  override async passFn(fn: FooFn | null): Promise<number> {
    if (!fn) return -1;
    try {
      return (await fn()) + (await fn());
    } finally {
      await releaseProxy(fn);
    }
  }
}

/** A FooInit handing out FooImpl objects. */
export class InitImpl implements FooInit {
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

export type FooPair = TestSetup<FooImpl, ThreadFooClient>;
export type InitPair = TestSetup<InitImpl, FooInitClient>;

/** A ThreadFooClient connected to `impl` (no ThreadMap exchange until `initThreadMap`). */
export function fooSetup(impl: FooImpl = new FooImpl(), opts: TestSetupOptions = {}): Promise<FooPair> {
  return createTestSetup({ impl, Server: ThreadFooServer, Client: ThreadFooClient }, { ...DEBUG, ...opts });
}

/** A FooInitClient connected to `init`; the construct exchange has run. */
export function initSetup(init: InitImpl = new InitImpl(), opts: TestSetupOptions = {}): Promise<InitPair> {
  return createTestSetup({ impl: init, Server: FooInitServer, Client: FooInitClient }, { ...DEBUG, ...opts });
}

/**
 * Sends FooInterface.callIntFnAsync on `client.$cap` with a Context the test fills by hand:
 * `thread` (or unset) and `callbackThread` (or unset), bypassing the runtime's own Context.
 */
export async function callIntFnOn(
  client: $mp.ProxyClientBase,
  thread: $mp.Capability | null,
  arg: number,
  callbackThread: $mp.Capability | null = null,
): Promise<number> {
  const req = client.$cap.newCall(FooInterfaceClient.interfaceId, CALL_INT_FN_ASYNC, FooInterface_callIntFnAsync$Params);
  req.params.arg = arg;
  const ctx = Struct.initStructAt(0, $mp.Context, req.params);
  if (thread) $mp.writeCap(ctx, 0, thread);
  if (callbackThread) $mp.writeCap(ctx, 1, callbackThread);
  const resp = await req.send();
  try {
    return resp.results(FooInterface_callIntFnAsync$Results).result;
  } finally {
    resp.close();
  }
}

/** FooInterface.callIntFnAsync's method ordinal (proto/test/foo.capnp). */
export const CALL_INT_FN_ASYNC = 21;

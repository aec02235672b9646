/**
 * Compile-only checks of the generated FooInterface / example API (never run). Checked by
 * proto/test/types.test.ts with `tsc --noEmit` (strict). Each `@ts-expect-error` must be needed:
 * tsc fails if the line below it compiles.
 */
import {
  type ExtendedCallback,
  type FooCallback,
  type FooFn,
  type FooInterface,
  FooInterfaceClient,
  FooInterfaceServer,
  type FooStruct,
  FooStructError,
  FooCallbackClient,
  ExtendedCallbackClient,
  readFooStruct,
  writeFooStruct,
  FooStruct$Struct,
} from "@multiprocess-ts/proto/test/foo.capnp.js";
import { InitInterfaceClient, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { CalculatorInterfaceClient } from "@multiprocess-ts/proto/example/calculator.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import * as proto from "@multiprocess-ts/proto";

declare const client: FooInterfaceClient;
declare const init: InitInterfaceClient;
declare const printer: PrinterInterface;

export async function clientCalls(): Promise<void> {
  const n: number = await client.add(1, 2);
  // @ts-expect-error Int32 params are numbers
  await client.add("1", 2);
  // @ts-expect-error arity is checked
  await client.add(1);
  const big: number = await client.addOut(1, 2); // single out param → bare value
  const sum: number = await client.addInOut(1, 2); // in/out param → its new value
  await client.mapSize(new Map([["a", "b"]]));
  // @ts-expect-error List(Pair(Text, Text)) is a Map<string, string>
  await client.mapSize([["a", "b"]]);
  const foo: FooStruct = { name: "n", setInt: [1], vectorBool: [true], unorderedSetInt: [], mapStringInt: new Map([["x", 1]]) };
  const back: FooStruct = await client.pass(foo);
  const opt: number | undefined = back.optionalInt; // hasOptionalInt → optional
  // @ts-expect-error mapStringInt is Map<string, number>
  await client.pass({ ...foo, mapStringInt: new Map([["x", "1"]]) });
  // @ts-expect-error hasOptionalInt is hidden
  await client.pass({ ...foo, hasOptionalInt: true });
  // @ts-expect-error setInt is renamed from $Proxy.name("set_int") → setInt, not set_int
  await client.pass({ ...foo, set_int: [] });
  const d: Uint8Array = await client.passData(new Uint8Array(1));
  const ds: Uint8Array[] = await client.passDataPointers([d]);
  const x: number = await client.passDouble(1.5);
  // Context params are hidden: callback(callback, arg), not callback(context, callback, arg).
  const cb: FooCallback = { call: (a: number) => a };
  await client.callback(cb, 1);
  await client.saveCallback(null); // capability params accept null
  // @ts-expect-error the callback must implement call(arg: number)
  await client.callback({ call: (a: string) => a }, 1);
  const ext: ExtendedCallback = { call: (a) => a, callExtended: async (a) => a };
  await client.callbackExtended(ext, 2);
  // @ts-expect-error a plain FooCallback is not an ExtendedCallback
  await client.callbackExtended(cb, 2);
  const fn: FooFn = () => 1;
  await client.passFn(fn);
  await client.passFn(async () => 2);
  // @ts-expect-error FooFn returns a number
  await client.passFn(() => "x");
  // initThreadMap's ThreadMap param/result are $count(0): no TS params, void result.
  const v: void = await client.initThreadMap();
  // @ts-expect-error no params
  await client.initThreadMap(null);
  try {
    await client.raise(foo);
  } catch (e) {
    if (e instanceof FooStructError) {
      const value: FooStruct = e.value;
      void value;
    }
  }
  await client.close();
  void [n, big, sum, opt, ds, x, v];
}

export async function exampleCalls(): Promise<void> {
  // Interface results are client proxies; construct is not a TS method.
  const calc: CalculatorInterfaceClient = await init.makeCalculator(printer);
  await calc.solveEquation("1+1");
  await calc.close();
  // @ts-expect-error construct is handled by the runtime (InitInterfaceClient.$construct)
  await init.construct();
  // @ts-expect-error destroy is handled by close()
  await calc.destroy();
  const hasConstruct: boolean = InitInterfaceClient.$construct !== undefined;
  void hasConstruct;
}

/** Servers implement the TS-native interface, sync or async. */
export const impl: FooInterface = {
  add: (a, b) => a + b,
  addOut: async (a, b) => a + b,
  addInOut: (x, sum) => x + sum,
  mapSize: (m) => m.size,
  pass: (a) => a,
  raise: (a) => { throw new FooStructError(a); },
  initThreadMap: () => {},
  callback: (c, a) => c!.call(a),
  callbackUnique: (c, a) => c!.call(a),
  callbackShared: (c, a) => c!.call(a),
  saveCallback: () => {},
  callbackSaved: (a) => a,
  callbackExtended: (c, a) => c!.callExtended(a),
  passCustom: (a) => a,
  passEmpty: (a) => a,
  passData: (a) => a,
  passMessage: (a) => a,
  passMutable: (a) => a,
  passEnum: (a) => a,
  passDouble: (a) => a,
  passFn: async (f) => await f!(),
  callFn: () => {},
  callFnAsync: async () => {},
  callIntFnAsync: (a) => a,
  passDataPointers: (a) => a,
};

// @ts-expect-error a server impl must return the declared types
export const badImpl: FooInterface = { ...impl, add: (a: number, b: number) => `${a + b}` };

export const initImpl: InitInterface = {
  // @ts-expect-error makeCalculator must return a CalculatorInterface
  makeCalculator: () => 1,
  makePrinter: () => printer,
};

// Static shape used by the runtime.
export const ids: bigint[] = [FooInterfaceClient.interfaceId, FooInterfaceServer.interfaceId, FooCallbackClient.interfaceId];
export const destroyDeclared: boolean = FooCallbackClient.$destroy !== undefined && ExtendedCallbackClient.$destroy !== undefined;
export const ext: FooCallbackClient = null as unknown as ExtendedCallbackClient; // client inheritance
export const ns: typeof FooInterfaceClient = proto.foo.FooInterfaceClient;

/** The capnp-ts level stays available for hand-written code. */
export function structLevel(s: FooStruct$Struct): FooStruct {
  s.name = "x";
  // @ts-expect-error accessors are typed
  s.name = 1;
  writeFooStruct(s, readFooStruct(s));
  return readFooStruct(s);
}

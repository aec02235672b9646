/**
 * Hand-written capnp-ts struct classes for proto/mp/proxy.capnp (file id 0xcc316e3f71a040fb):
 * `Context`, and the params/results of `ThreadMap.makeThread`, `ThreadMap.makePool` and
 * `Thread.getName`. mpgen generates the same structs into `@multiprocess-ts/proto`, but the runtime
 * cannot depend on proto, so these are kept here; layouts checked with
 * `capnp compile -ocapnp proto/mp/proxy.capnp -Iproto` and `-o-` (node ids below).
 *
 * Capability fields (`Context.thread`, `makeThread` result) have no accessors: use
 * `readCap`/`writeCap` with the pointer index given in the comment.
 *
 * Owns: nothing (struct classes and ids). Threading: any thread.
 */
import { ObjectSize, Struct } from "capnp-ts";

export const THREAD_MAP_INTERFACE_ID = 0xee5e37179ad9dc9dn;
export const THREAD_INTERFACE_ID = 0x81c1e2600d0b56c5n;
export const CONTEXT_STRUCT_ID = 0x9c44e6645d0b22c6n;

/** Method ordinals of `ThreadMap` / `Thread`. */
export const ThreadMapMethod = { makeThread: 0, makePool: 1 } as const;
export const ThreadMethod = { getName: 0 } as const;

/** `struct Context` (0 data words, 2 pointers): `thread @0 :Thread` = ptr 0, `callbackThread @1` = ptr 1. */
export class Context extends Struct {
  static readonly THREAD_PTR = 0;
  static readonly CALLBACK_THREAD_PTR = 1;
  static override readonly _capnp = { displayName: "Context", id: "9c44e6645d0b22c6", size: new ObjectSize(0, 2) };
  /** True when `thread` is set (upstream `hasThread()`). */
  hasThread(): boolean {
    return !Struct.isNull(Struct.getPointer(0, this));
  }
  hasCallbackThread(): boolean {
    return !Struct.isNull(Struct.getPointer(1, this));
  }
  override toString(): string {
    return "Context_" + super.toString();
  }
}

/** `ThreadMap.makeThread$Params` (0 data, 1 ptr): `name @0 :Text`. */
export class ThreadMap_makeThread$Params extends Struct {
  static override readonly _capnp = {
    displayName: "makeThread$Params",
    id: "c7dce7fe036b26d4",
    size: new ObjectSize(0, 1),
  };
  get name(): string {
    return Struct.getText(0, this);
  }
  set name(value: string) {
    Struct.setText(0, value, this);
  }
}

/** `ThreadMap.makeThread$Results` (0 data, 1 ptr): `result @0 :Thread` = ptr 0. */
export class ThreadMap_makeThread$Results extends Struct {
  static readonly RESULT_PTR = 0;
  static override readonly _capnp = {
    displayName: "makeThread$Results",
    id: "bbafb2ed83f6268d",
    size: new ObjectSize(0, 1),
  };
}

/** `ThreadMap.makePool$Params` (1 data word, 0 ptrs): `count @0 :UInt32` at byte 0. */
export class ThreadMap_makePool$Params extends Struct {
  static override readonly _capnp = {
    displayName: "makePool$Params",
    id: "d989bdba64550ac4",
    size: new ObjectSize(8, 0),
  };
  get count(): number {
    return Struct.getUint32(0, this);
  }
  set count(value: number) {
    Struct.setUint32(0, value, this);
  }
}

/** `ThreadMap.makePool$Results` (empty). */
export class ThreadMap_makePool$Results extends Struct {
  static override readonly _capnp = {
    displayName: "makePool$Results",
    id: "e62a47a377a4856e",
    size: new ObjectSize(0, 0),
  };
}

/** `Thread.getName$Params` (empty). */
export class Thread_getName$Params extends Struct {
  static override readonly _capnp = {
    displayName: "getName$Params",
    id: "91b503837a7fb9c6",
    size: new ObjectSize(0, 0),
  };
}

/** `Thread.getName$Results` (0 data, 1 ptr): `result @0 :Text`. */
export class Thread_getName$Results extends Struct {
  static override readonly _capnp = {
    displayName: "getName$Results",
    id: "f75eedb886b95bdc",
    size: new ObjectSize(0, 1),
  };
  get result(): string {
    return Struct.getText(0, this);
  }
  set result(value: string) {
    Struct.setText(0, value, this);
  }
}

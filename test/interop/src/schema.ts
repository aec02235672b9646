/**
 * Hand-written capnp-ts structs for test/interop/schema/conformance.capnp (mpgen is not used here:
 * the conformance suite must not depend on our own generator). Ids, sizes and offsets come from
 * `capnp compile -o-`; test/schema.test.ts checks ids and sizes against the schema on every run.
 *
 * Capability fields have no accessors: use readCap/writeCap from @multiprocess-ts/capnp with the
 * pointer index given in each class's comment.
 */
import * as capnp from "capnp-ts";

const S = capnp.Struct;

/** capnp-ts wants the id as hex without 0x. */
function meta(displayName: string, id: bigint, dataBytes: number, pointers: number) {
  return { displayName, id: id.toString(16), size: new capnp.ObjectSize(dataBytes, pointers) };
}

export const CALLBACK_ID = 0xadf86cfa307c07acn;
export const COUNTER_ID = 0xca358946c2a2baban;
export const CALC_ID = 0x962bc8423427e4a2n;

/** Method ordinals of Callback, Counter and Calc. */
export const CallbackMethod = { notify: 0 } as const;
export const CounterMethod = { inc: 0, get: 1 } as const;
export const CalcMethod = {
  add: 0, echo: 1, join: 2, sum: 3, subscribe: 4, makeCounter: 5, readCounter: 6,
  makeCounterLater: 7, resolvePending: 8, identity: 9, reflect: 10, register: 11, fire: 12,
  unregister: 13, fail: 14, hang: 15, seq: 16, stats: 17,
} as const;

/** conformance.capnp `Kind`, the order of rpc.capnp Exception.Type. */
export const Kind = { failed: 0, overloaded: 1, disconnected: 2, unimplemented: 3 } as const;
export type KindName = keyof typeof Kind;
export const KIND_NAMES: readonly KindName[] = ["failed", "overloaded", "disconnected", "unimplemented"];

/** A struct without fields (the params/results of `get`, `unregister`, ...). */
export class Empty extends capnp.Struct {
  static override readonly _capnp = meta("Empty", 0xce445404f1c70840n, 0, 0);
}

export class Ack extends capnp.Struct {
  static override readonly _capnp = meta("Ack", 0xf80fc1efd44ab502n, 8, 0);
  get ack(): number { return S.getInt32(0, this); }
  set ack(v: number) { S.setInt32(0, v, this); }
}

export class Callback_notify$Params extends capnp.Struct {
  static override readonly _capnp = meta("notify$Params", 0xb12f0f4282503580n, 8, 1);
  get value(): number { return S.getInt32(0, this); }
  set value(v: number) { S.setInt32(0, v, this); }
  get msg(): string { return S.getText(0, this); }
  set msg(v: string) { S.setText(0, v, this); }
}

export class Counter_inc$Params extends capnp.Struct {
  static override readonly _capnp = meta("inc$Params", 0xc22f504597421257n, 8, 0);
  get by(): number { return S.getInt32(0, this); }
  set by(v: number) { S.setInt32(0, v, this); }
}

/** Counter.inc$Results and Counter.get$Results share this layout. */
export class Counter_value$Results extends capnp.Struct {
  static override readonly _capnp = meta("inc$Results", 0xa7485d5db91298c5n, 8, 0);
  get value(): number { return S.getInt32(0, this); }
  set value(v: number) { S.setInt32(0, v, this); }
}

export class Calc_add$Params extends capnp.Struct {
  static override readonly _capnp = meta("add$Params", 0xd575ff5e983321dan, 8, 0);
  get a(): number { return S.getInt32(0, this); }
  set a(v: number) { S.setInt32(0, v, this); }
  get b(): number { return S.getInt32(4, this); }
  set b(v: number) { S.setInt32(4, v, this); }
}

export class Calc_add$Results extends capnp.Struct {
  static override readonly _capnp = meta("add$Results", 0xeaca75f3fab155fdn, 8, 0);
  get sum(): number { return S.getInt32(0, this); }
  set sum(v: number) { S.setInt32(0, v, this); }
}

/** echo$Params and echo$Results: text (pointer 0), data (pointer 1). */
export class Calc_echo$Params extends capnp.Struct {
  static override readonly _capnp = meta("echo$Params", 0xf90731ba365103a4n, 0, 2);
  get text(): string { return S.getText(0, this); }
  set text(v: string) { S.setText(0, v, this); }
  /** A copy of the bytes. */
  get data(): Uint8Array { return S.getData(1, this).toUint8Array(); }
  set data(v: Uint8Array) { S.initData(1, v.byteLength, this).copyBuffer(v); }
}

export class Calc_echo$Results extends Calc_echo$Params {
  static override readonly _capnp = meta("echo$Results", 0xb6349d77c78de6f5n, 0, 2);
}

export class Calc_join$Params extends capnp.Struct {
  static override readonly _capnp = meta("join$Params", 0xcfd020b336f53897n, 0, 1);
  get parts(): string[] { return S.getList(0, capnp.TextList, this).toArray(); }
  set parts(v: string[]) {
    const l = S.initList(0, capnp.TextList, v.length, this);
    v.forEach((s, i) => l.set(i, s));
  }
}

export class Calc_join$Results extends capnp.Struct {
  static override readonly _capnp = meta("join$Results", 0x958b0f4c80216b2cn, 8, 1);
  get joined(): string { return S.getText(0, this); }
  set joined(v: string) { S.setText(0, v, this); }
  get count(): number { return S.getUint32(0, this); }
  set count(v: number) { S.setUint32(0, v, this); }
}

export class Calc_sum$Params extends capnp.Struct {
  static override readonly _capnp = meta("sum$Params", 0x8d896718383cefb3n, 0, 1);
  get values(): number[] { return S.getList(0, capnp.Int32List, this).toArray(); }
  set values(v: number[]) {
    const l = S.initList(0, capnp.Int32List, v.length, this);
    v.forEach((x, i) => l.set(i, x));
  }
}

export class Calc_sum$Results extends capnp.Struct {
  static override readonly _capnp = meta("sum$Results", 0x98f41f8b69873820n, 8, 0);
  get total(): bigint { return S.getInt64(0, this); }
  set total(v: bigint) { S.setInt64(0, v, this); }
}

/** cb: pointer 0. */
export class Calc_subscribe$Params extends capnp.Struct {
  static override readonly _capnp = meta("subscribe$Params", 0xc7eeb34d1ec5bd63n, 8, 1);
  get value(): number { return S.getInt32(0, this); }
  set value(v: number) { S.setInt32(0, v, this); }
}

export class Calc_subscribe$Results extends capnp.Struct {
  static override readonly _capnp = meta("subscribe$Results", 0x8745b8337a2c4cd7n, 8, 0);
  get ack(): number { return S.getInt32(0, this); }
  set ack(v: number) { S.setInt32(0, v, this); }
}

export class Calc_makeCounter$Params extends capnp.Struct {
  static override readonly _capnp = meta("makeCounter$Params", 0xf1fee5b776561c06n, 8, 0);
  get start(): number { return S.getInt32(0, this); }
  set start(v: number) { S.setInt32(0, v, this); }
}

/** makeCounter$Results, makeCounterLater$Results, identity$Results, readCounter$Params,
 * identity$Params, register$Params, hang$Params: one capability at pointer 0, no data. */
export class OneCap extends capnp.Struct {
  static override readonly _capnp = meta("makeCounter$Results", 0x84382e535225db49n, 0, 1);
}

export class Calc_readCounter$Results extends capnp.Struct {
  static override readonly _capnp = meta("readCounter$Results", 0xb40a43f771b7d92an, 8, 0);
  get value(): number { return S.getInt32(0, this); }
  set value(v: number) { S.setInt32(0, v, this); }
  get local(): boolean { return S.getBit(32, this); }
  set local(v: boolean) { S.setBit(32, v, this); }
}

export class Calc_makeCounterLater$Params extends Calc_makeCounter$Params {
  static override readonly _capnp = meta("makeCounterLater$Params", 0xcc6bc9aae25ff182n, 8, 0);
}

export class Calc_resolvePending$Results extends capnp.Struct {
  static override readonly _capnp = meta("resolvePending$Results", 0xb738d11a91005231n, 8, 0);
  get count(): number { return S.getUint32(0, this); }
  set count(v: number) { S.setUint32(0, v, this); }
}

/** cb: pointer 0. Results: Ack. */
export class Calc_reflect$Params extends capnp.Struct {
  static override readonly _capnp = meta("reflect$Params", 0xc657d1a066627cc3n, 8, 1);
  get value(): number { return S.getInt32(0, this); }
  set value(v: number) { S.setInt32(0, v, this); }
}

export class Calc_fire$Params extends capnp.Struct {
  static override readonly _capnp = meta("fire$Params", 0x8bdd81a05311b34en, 8, 0);
  get value(): number { return S.getInt32(0, this); }
  set value(v: number) { S.setInt32(0, v, this); }
}

export class Calc_fire$Results extends Calc_subscribe$Results {
  static override readonly _capnp = meta("fire$Results", 0xb9333df8ba554386n, 8, 0);
}

export class Calc_fail$Params extends capnp.Struct {
  static override readonly _capnp = meta("fail$Params", 0xea8d9f55f0227659n, 8, 1);
  get kind(): number { return S.getUint16(0, this); }
  set kind(v: number) { S.setUint16(0, v, this); }
  get msg(): string { return S.getText(0, this); }
  set msg(v: string) { S.setText(0, v, this); }
}

export class Calc_seq$Params extends capnp.Struct {
  static override readonly _capnp = meta("seq$Params", 0xda3bc77f7ac972a0n, 8, 0);
  get n(): number { return S.getUint32(0, this); }
  set n(v: number) { S.setUint32(0, v, this); }
}

export class Calc_seq$Results extends capnp.Struct {
  static override readonly _capnp = meta("seq$Results", 0xd1342d2b7c75b459n, 8, 0);
  get prev(): number { return S.getUint32(0, this); }
  set prev(v: number) { S.setUint32(0, v, this); }
}

export class Calc_stats$Results extends capnp.Struct {
  static override readonly _capnp = meta("stats$Results", 0xe3bb317b96d199b3n, 8, 0);
  get live(): number { return S.getUint32(0, this); }
  set live(v: number) { S.setUint32(0, v, this); }
  get held(): number { return S.getUint32(4, this); }
  set held(v: number) { S.setUint32(4, v, this); }
}

/** Every struct class above, for the layout check against the schema. Classes reused for
 * several schema structs of the same layout list the other ids in `alsoIds`. */
export const STRUCTS: readonly { ctor: { readonly _capnp: { id: string; size: capnp.ObjectSize } }; alsoIds?: bigint[] }[] = [
  { ctor: Empty, alsoIds: [0xd7f008672dccd934n, 0xe4ba9f1774263f83n, 0x933e7baa189f1884n, 0xa6a83353b9f39c5fn,
    0xfb4db1edd27a28ean, 0xa12e2c704cb355a9n, 0xeb7245a4badc5dc4n] },
  { ctor: Ack },
  { ctor: Callback_notify$Params },
  { ctor: Counter_inc$Params },
  { ctor: Counter_value$Results, alsoIds: [0xb5475940bc513ca5n] },
  { ctor: Calc_add$Params },
  { ctor: Calc_add$Results },
  { ctor: Calc_echo$Params },
  { ctor: Calc_echo$Results },
  { ctor: Calc_join$Params },
  { ctor: Calc_join$Results },
  { ctor: Calc_sum$Params },
  { ctor: Calc_sum$Results },
  { ctor: Calc_subscribe$Params },
  { ctor: Calc_subscribe$Results },
  { ctor: Calc_makeCounter$Params },
  { ctor: OneCap, alsoIds: [0x80282684f0ea3d26n, 0xc6894ecb7dac9f2bn, 0xce997b128cba3c86n, 0xcadd5f1f3eddaf75n,
    0xb7303c9598821501n, 0xd0149f3da166090bn] },
  { ctor: Calc_readCounter$Results },
  { ctor: Calc_makeCounterLater$Params },
  { ctor: Calc_resolvePending$Results },
  { ctor: Calc_reflect$Params },
  { ctor: Calc_fire$Params },
  { ctor: Calc_fire$Results },
  { ctor: Calc_fail$Params },
  { ctor: Calc_seq$Params },
  { ctor: Calc_seq$Results },
  { ctor: Calc_stats$Results },
];

/**
 * Interface emitter: the TS-native interface (or function type for
 * `$Proxy.wrap("ProxyCallback<std::function<…>>")`), one `$mp.ProxyMethod` descriptor per method,
 * the `FooClient` proxy class and the `FooServer` dispatch class (contracts.md §2), plus typed error
 * classes for `$Proxy.exception` result fields.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { ANN_EXCEPTION, ANN_NAME, MpgenError, THREAD_MAP_ID, checkAnnotations, isFunctionWrap, textAnnotation } from "../annotations.js";
import { accessorName, camelCase, capitalize, hexBigint, jsdoc, localName, str } from "../names.js";
import type { FieldInfo, MethodInfo, NodeInfo, TypeInfo } from "../schema.js";
import { readField, writeField } from "./codec.js";
import { EMPTY_ENV, type FileContext, isPointerType } from "./context.js";
import { NO_DISCRIMINANT } from "./fields.js";

/** Names generated code uses as locals, and ProxyClientBase members a method must not shadow. */
const LOCALS = new Set(["p", "r", "io", "impl", "out", "e", "options", "ctx"]);
const CLIENT_MEMBERS = new Set(["close", "constructor", "$cap", "$invoke"]);

interface Value {
  field: FieldInfo;
  /** Property name in TS objects. */
  tsName: string;
  /** Local variable / parameter name. */
  local: string;
  type: TypeInfo;
  /** `hasX` companion field (X is optional). */
  has?: FieldInfo;
  /** `wantX` param local: the output is only produced when requested. */
  want?: string;
  /** A param with an explicit schema default: the client may leave it out (`undefined`). */
  defaulted?: boolean;
}

interface ErrorPlan { field: FieldInfo; type: TypeInfo; cls: string; cxx: string }

export interface MethodPlan {
  iface: NodeInfo;
  m: MethodInfo;
  tsName: string;
  constName: string;
  special?: "construct" | "destroy";
  paramsId: bigint;
  resultsId: bigint;
  params: Value[];
  /** All visible outputs (the `result` field included). */
  outputs: Value[];
  /** The output object has fields (named outputs) rather than being the bare `result`. */
  objectResult: boolean;
  errors: ErrorPlan[];
  context: number;
  /** Hidden `Proxy.ThreadMap` params / results (pointer indices), exchanged through the IO. */
  threadMapParams: number[];
  threadMapResults: number[];
}

function companions(fields: readonly FieldInfo[]): Map<string, FieldInfo> {
  const byName = new Map(fields.map((f) => [f.name, f]));
  const out = new Map<string, FieldInfo>();
  for (const f of fields) {
    const has = byName.get(`has${capitalize(f.name)}`);
    if (has?.slot?.type.kind === "bool") out.set(f.name, has);
  }
  return out;
}

export function planMethod(ctx: FileContext, iface: NodeInfo, m: MethodInfo): MethodPlan {
  const where = `${iface.shortName}.${m.name}`;
  checkAnnotations(m.annotations, ctx.model.nodes, `method ${where}`);
  const pn = ctx.node(m.paramStructType), rn = ctx.node(m.resultStructType);
  const pf = pn.struct!.fields, rf = rn.struct!.fields;
  const pEnv = ctx.envOf(m.paramBrand, EMPTY_ENV), rEnv = ctx.envOf(m.resultBrand, EMPTY_ENV);
  const methodName = textAnnotation(m.annotations, ANN_NAME);
  let tsName = methodName !== undefined ? camelCase(methodName) : m.name;
  if (CLIENT_MEMBERS.has(tsName)) tsName = `${tsName}_`;
  const plan: MethodPlan = {
    iface, m, tsName, constName: `${ctx.baseName(iface.id)}$${m.name}`,
    paramsId: m.paramStructType, resultsId: m.resultStructType,
    params: [], outputs: [], objectResult: false, errors: [], context: -1,
    threadMapParams: [], threadMapResults: [],
  };
  if (m.name === "construct" || m.name === "destroy") plan.special = m.name;
  const used = new Set<string>();
  const local = (n: string): string => {
    let x = localName(n);
    if (LOCALS.has(x)) x = `${x}_`;
    while (used.has(x)) x = `${x}_`;
    used.add(x);
    return x;
  };
  const pHas = companions(pf);
  const pHidden = new Set([...pHas.values()].map((f) => f.name));
  for (const f of pf) {
    checkAnnotations(f.annotations, ctx.model.nodes, `parameter ${where}.${f.name}`);
    if (ctx.isContextField(f) && plan.context < 0) plan.context = f.slot!.offset;
    if (f.slot === undefined) throw new MpgenError(`mpgen: cannot map group parameter ${where}.${f.name}`);
    if (isThreadMap(f)) plan.threadMapParams.push(f.slot.offset);
    if (ctx.isHidden(f) || pHidden.has(f.name)) continue;
    const tsName = ctx.fieldTsName(f);
    const v: Value = { field: f, tsName, local: local(tsName), type: ctx.resolve(f.slot.type, pEnv) };
    const has = pHas.get(f.name);
    if (has !== undefined) v.has = has;
    else if (f.slot.hadExplicitDefault) v.defaulted = true;
    plan.params.push(v);
  }
  const rHas = companions(rf);
  const rHidden = new Set([...rHas.values()].map((f) => f.name));
  for (const f of rf) {
    checkAnnotations(f.annotations, ctx.model.nodes, `result ${where}.${f.name}`);
    if (f.slot === undefined) throw new MpgenError(`mpgen: cannot map group result ${where}.${f.name}`);
    const cxx = textAnnotation(f.annotations, ANN_EXCEPTION);
    const t = ctx.resolve(f.slot.type, rEnv);
    if (cxx !== undefined) {
      if (!isPointerType(t) || t.kind === "interface" || t.kind === "anyPointer") {
        throw new MpgenError(`mpgen: cannot map $Proxy.exception on ${where}.${f.name}: the field must be a Text, Data, List or struct so an unset field means "no exception"`);
      }
      plan.errors.push({ field: f, type: t, cls: errorClassName(cxx), cxx });
      continue;
    }
    if (isThreadMap(f)) plan.threadMapResults.push(f.slot.offset);
    if (ctx.isHidden(f) || rHidden.has(f.name)) continue;
    const tsName = ctx.fieldTsName(f);
    const inOut = plan.params.find((p) => p.field.name === f.name);
    const v: Value = { field: f, tsName, local: inOut !== undefined ? `out_${inOut.local}` : local(tsName), type: t };
    const has = rHas.get(f.name);
    if (has !== undefined) v.has = has;
    const want = plan.params.find((p) => p.field.name === `want${capitalize(f.name)}` && p.type.kind === "bool");
    if (want !== undefined) v.want = want.local;
    plan.outputs.push(v);
  }
  // One output (the `result` field, an out or an in/out param) is returned bare; several are
  // returned as an object keyed by their TS names.
  plan.objectResult = plan.outputs.length > 1;
  return plan;
}

/** `mp::test::FooStruct` → `FooStructError`, `std::runtime_error` → `RuntimeError`. */
export function errorClassName(cxx: string): string {
  const last = cxx.replace(/<.*$/, "").replace(/^.*::/, "");
  const pascal = last.split(/_+/).filter((x) => x !== "").map(capitalize).join("").replace(/[^A-Za-z0-9_$]/g, "_");
  return pascal.endsWith("Error") ? pascal : `${pascal}Error`;
}

function isThreadMap(f: FieldInfo): boolean {
  return f.slot?.type.kind === "interface" && f.slot.type.typeId === THREAD_MAP_ID;
}

function optional(v: Value): boolean { return v.has !== undefined || v.want !== undefined; }

/**
 * Params accept `null` for capabilities (the peer may leave them unset); results do not.
 * `input`: the value is written by this side (client params, implementation results), so structs
 * with defaulted fields take their `FooInit` type.
 */
function valueType(ctx: FileContext, v: Value, clientResult = false, isParam = false, input = false): string {
  const t = ctx.tsType(v.type, { clientResult, nullableCaps: isParam, input });
  return optional(v) || (input && v.defaulted === true) ? `${t} | undefined` : t;
}

/** The TS return type (without Promise) of a method; `input` for what implementations return. */
function returnType(ctx: FileContext, plan: MethodPlan, clientResult: boolean, input = false): string {
  if (plan.outputs.length === 0) return "void";
  if (!plan.objectResult) return valueType(ctx, plan.outputs[0]!, clientResult, false, input);
  return `{ ${plan.outputs.map((o) => `${o.tsName}: ${valueType(ctx, o, clientResult, false, input)}`).join("; ")} }`;
}

/**
 * The declared params. `client`: the caller's side, where params with a schema default may be
 * left out (`?` when only defaulted params follow, else `T | undefined`) and structs take their
 * writer input type; otherwise the implementation's side, which receives every value.
 */
function paramList(ctx: FileContext, plan: MethodPlan, client = false): string {
  let trailing = plan.params.length;
  while (client && trailing > 0 && plan.params[trailing - 1]!.defaulted === true) trailing--;
  return plan.params.map((p, i) => `${p.local}${i >= trailing ? "?" : ""}: ${valueType(ctx, p, false, true, client)}`).join(", ");
}

/** `params` followed by the trailing options / context parameter every method takes. */
function withTrailing(params: string, trailing: string): string {
  return params === "" ? trailing : `${params}, ${trailing}`;
}

function methodDoc(plan: MethodPlan, indent: string): string {
  return jsdoc(plan.m.doc, indent);
}

/** Every interface id this one inherits from, nearest first (no duplicates). */
export function ancestors(ctx: FileContext, n: NodeInfo, seen: Set<bigint> = new Set()): NodeInfo[] {
  const out: NodeInfo[] = [];
  for (const s of n.interface?.superclasses ?? []) {
    if (seen.has(s.id)) continue;
    seen.add(s.id);
    const p = ctx.node(s.id);
    out.push(p, ...ancestors(ctx, p, seen));
  }
  return out;
}

function findSpecial(ctx: FileContext, n: NodeInfo, name: "construct" | "destroy"): { iface: NodeInfo; m: MethodInfo } | undefined {
  for (const i of [n, ...ancestors(ctx, n)]) {
    const m = i.interface!.methods.find((x) => x.name === name);
    if (m !== undefined) return { iface: i, m };
  }
  return undefined;
}

/** Collects the error classes a file needs (deduplicated by C++ name). */
export function emitErrorClasses(ctx: FileContext, plans: MethodPlan[]): string {
  const seen = new Map<string, ErrorPlan>();
  for (const p of plans) for (const e of p.errors) if (!seen.has(e.cls)) seen.set(e.cls, e);
  let out = "";
  for (const e of seen.values()) {
    const vt = ctx.tsType(e.type);
    out += jsdoc(`Typed error for \`$Proxy.exception(${JSON.stringify(e.cxx)})\`: a server implementation throws it to fill the\nexception result field, and the client proxy throws it again when that field is set. Only the value\ncrosses the wire: the default message is derived from it (a Text value, or a struct's\n\`message\` / \`what\` / \`reason\` text; else ${JSON.stringify(e.cxx)}), so it reads the same on both sides.`);
    out += `export class ${e.cls} extends Error {\n`;
    out += `  readonly value: ${vt};\n`;
    out += `  constructor(value: ${vt}, message: string = $mp.exceptionMessage(value, ${str(e.cxx)})) {\n    super(message);\n    this.name = ${str(e.cls)};\n    this.value = value;\n  }\n}\n\n`;
  }
  return out;
}

/**
 * The method's descriptor. `clientIo` (ordinary methods: whether the generated client method's
 * params writer or results reader takes a ClientIO) spares the runtime a look at their arity per call.
 */
function emitMethodConst(ctx: FileContext, plan: MethodPlan): string {
  const special = plan.special !== undefined ? `, special: ${str(plan.special)}` : "";
  const io = plan.special === undefined ? `, clientIo: ${emitClientMethod(ctx, plan).io}` : "";
  return `const ${plan.constName}: $mp.ProxyMethod = { name: ${str(plan.m.name)}, interfaceId: ${hexBigint(plan.iface.id)}, methodId: ${plan.m.id},\n` +
    `  Params: ${ctx.structClass(plan.paramsId)}, Results: ${ctx.structClass(plan.resultsId)}, context: ${plan.context}, destroy: ${plan.special === "destroy"}${special}${io} };\n`;
}

function writeValue(ctx: FileContext, s: string, v: Value, expr: string, io: string): string[] {
  const w = writeField(ctx, s, v.field, v.type, expr, io);
  if (v.has !== undefined) return [`if (${expr} !== undefined) {`, `  ${s}.${v.has.name} = true;`, ...w.map((x) => `  ${x}`), `}`];
  if (v.want !== undefined || v.defaulted === true) return [`if (${expr} !== undefined) {`, ...w.map((x) => `  ${x}`), `}`];
  return w;
}

function readValue(ctx: FileContext, s: string, v: Value, io: string, nullableCaps: boolean): string {
  const r = readField(ctx, s, v.field, v.type, io, nullableCaps);
  if (v.has !== undefined) return `${s}.${v.has.name} ? ${r} : undefined`;
  return r;
}

/** DataView setter and byte width of the numeric types a flat params writer writes. */
const FLAT_SET: Partial<Record<TypeInfo["kind"], [string, number]>> = {
  int8: ["Int8", 1], uint8: ["Uint8", 1], int16: ["Int16", 2], uint16: ["Uint16", 2], enum: ["Uint16", 2],
  int32: ["Int32", 4], uint32: ["Uint32", 4], float32: ["Float32", 4], float64: ["Float64", 8],
  int64: ["BigInt64", 8], uint64: ["BigUint64", 8],
};

/**
 * The statements of a flat params writer (`$invokeFlat`, runtime proxy/client.ts): one DataView
 * set per parameter at its byte offset from `at`, with the setter's own range check; or null
 * when the params struct is not flat (a pointer field, a Context), or a parameter is not a plain
 * number (bool, optional, defaulted, in a union, an explicit default: the struct setters handle
 * those).
 */
function flatWriter(ctx: FileContext, plan: MethodPlan): string[] | null {
  if (plan.special !== undefined || plan.context >= 0 || plan.threadMapParams.length > 0) return null;
  if (ctx.node(plan.paramsId).struct?.pointerCount !== 0) return null;
  const out: string[] = [];
  for (const p of plan.params) {
    const f = p.field;
    const set = FLAT_SET[p.type.kind];
    if (set === undefined || p.has !== undefined || p.want !== undefined || p.defaulted === true) return null;
    if (f.discriminantValue !== NO_DISCRIMINANT || f.slot === undefined || f.slot.hadExplicitDefault) return null;
    const [fn, bytes] = set;
    const v = p.type.kind === "enum" || p.type.kind === "float32" || p.type.kind === "float64" ? p.local : ctx.checkWrite(p.type, p.local);
    const at = f.slot.offset === 0 ? "at" : `at + ${f.slot.offset * bytes}`;
    out.push(bytes === 1 ? `dv.set${fn}(${at}, ${v});` : `dv.set${fn}(${at}, ${v}, true);`);
  }
  return out;
}

/** DataView getter, byte width and default of the plain values a flat results reader reads. */
const FLAT_GET: Partial<Record<TypeInfo["kind"], [string, number, string]>> = {
  int8: ["Int8", 1, "0"], uint8: ["Uint8", 1, "0"], int16: ["Int16", 2, "0"], uint16: ["Uint16", 2, "0"], enum: ["Uint16", 2, "0"],
  int32: ["Int32", 4, "0"], uint32: ["Uint32", 4, "0"], float32: ["Float32", 4, "0"], float64: ["Float64", 8, "0"],
  int64: ["BigInt64", 8, "0n"], uint64: ["BigUint64", 8, "0n"],
};

/**
 * The expression of a flat results reader for one output (see {@link flatResultsReader}): its
 * DataView read at its byte offset from `at` when the struct's `words` data words hold it, else
 * its default (a struct of an older peer, or a null content: `words` 0), as capnp reads it; null
 * when the output is not a plain number, bigint or bool without an explicit default.
 */
function flatRead(ctx: FileContext, o: Value): string | null {
  const f = o.field;
  if (o.has !== undefined || o.want !== undefined) return null;
  if (f.discriminantValue !== NO_DISCRIMINANT || f.slot === undefined || f.slot.hadExplicitDefault) return null;
  const off = f.slot.offset;
  if (o.type.kind === "bool") {
    const byte = off >>> 3;
    const at = byte === 0 ? "at" : `at + ${byte}`;
    return `words > ${byte >>> 3} ? (dv.getUint8(${at}) & ${1 << (off & 7)}) !== 0 : false`;
  }
  const get = FLAT_GET[o.type.kind];
  if (get === undefined) return null;
  const [fn, bytes, dflt] = get;
  const byte = off * bytes;
  const at = byte === 0 ? "at" : `at + ${byte}`;
  const read = bytes === 1 ? `dv.get${fn}(${at})` : `dv.get${fn}(${at}, true)`;
  const cast = o.type.kind === "enum" ? ` as ${ctx.nativeName(o.type.typeId)}` : "";
  return `words > ${(byte + bytes - 1) >>> 3} ? ${read}${cast} : ${dflt}`;
}

/**
 * A flat results reader (`readFlat` of `$invoke` / `$invokeFlat`, runtime proxy/client.ts; capnp
 * FlatRead): the method's value read straight from the results' data section `(dv, at, words)`,
 * the same value `read` returns from the results struct; the engine uses it for a Return it can
 * read with no message. Null when the results struct has a pointer, the method declares errors
 * or returns a thread map, or an output is not a plain number, bigint or bool ({@link flatRead}).
 * Several outputs read as one object, as `read` returns them.
 */
function flatResultsReader(ctx: FileContext, plan: MethodPlan): string | null {
  if (plan.special !== undefined || plan.errors.length > 0 || plan.threadMapResults.length > 0) return null;
  if (ctx.node(plan.resultsId).struct?.pointerCount !== 0) return null;
  if (plan.outputs.length === 0) return "(): undefined => undefined";
  const reads: string[] = [];
  for (const o of plan.outputs) {
    const r = flatRead(ctx, o);
    if (r === null) return null;
    reads.push(r);
  }
  const args = "(dv: DataView, at: number, words: number)";
  if (!plan.objectResult) return `${args} => ${reads[0]}`;
  return `${args} => ({\n${plan.outputs.map((o, i) => `  ${o.tsName}: ${reads[i]},`).join("\n")}\n})`;
}

/**
 * One client method. Its `read` is a module-level function (`hoisted`, emitted before the client
 * class) when it uses none of the method's parameters, so a call allocates one closure (the
 * params writer), not two.
 */
function emitClientMethod(ctx: FileContext, plan: MethodPlan): { method: string; hoisted: string; io: boolean } {
  ctx.resetTemps();
  const P = ctx.structClass(plan.paramsId), R = ctx.structClass(plan.resultsId);
  const flat = flatWriter(ctx, plan);
  const build: string[] = flat ?? [];
  if (flat === null) for (const p of plan.params) build.push(...writeValue(ctx, "p", p, p.local, "io"));
  if (flat === null) for (const i of plan.threadMapParams) build.push(`$mp.writeCap(p, ${i}, io.threadMap());`);
  const read: string[] = [];
  for (const i of plan.threadMapResults) read.push(`io.setPeerThreadMap($mp.readCap(r, ${i}));`);
  for (const e of plan.errors) {
    read.push(`if (!$.Pointer.isNull($.Struct.getPointer(${e.field.slot!.offset}, r))) throw new ${e.cls}(${readField(ctx, "r", e.field, e.type, "io")});`);
  }
  const readOut = (o: Value): string => {
    const r = readValue(ctx, "r", o, "io", false);
    return o.want !== undefined ? `${o.want} ? ${r} : undefined` : r;
  };
  if (plan.outputs.length > 0) {
    if (!plan.objectResult) read.push(`return ${readOut(plan.outputs[0]!)};`);
    else {
      read.push(`return {`);
      for (const o of plan.outputs) read.push(`  ${o.tsName}: ${readOut(o)},`);
      read.push(`};`);
    }
  }
  const buildSrc = build.join("\n");
  const readSrc = read.join("\n");
  const bArgs = build.length === 0 ? "()" : flat !== null ? "(dv: DataView, at: number)" : `(p: ${P}${/\bio\b/.test(buildSrc) ? ", io" : ""})`;
  const rArgs = read.length === 0 ? "()" : `(r: ${R}${/\bio\b/.test(readSrc) ? ", io" : ""})`;
  const ind = (xs: string[], n: string): string => xs.map((x) => `${n}${x}`).join("\n");
  const buildFn = build.length === 0 ? `${bArgs} => {}` : `${bArgs} => {\n${ind(build, "        ")}\n      }`;
  const readFn = read.length === 0 ? `${rArgs} => undefined` : `${rArgs} => {\n${ind(read, "        ")}\n      }`;
  const rt = returnType(ctx, plan, true);
  // `read` refers to a parameter only through a `wantX` flag.
  const captures = plan.outputs.some((o) => o.want !== undefined);
  let hoisted = "";
  let readRef = readFn;
  let flatRef = "";
  if (!captures) {
    readRef = `${plan.constName}$read`;
    const hArgs = read.length === 0 ? "()" : `(r: ${R}${/\bio\b/.test(readSrc) ? ", io: $mp.ClientIO" : ""})`;
    const body = read.length === 0 ? `${hArgs} => undefined` : `${hArgs} => {\n${ind(read, "  ")}\n}`;
    hoisted = `const ${readRef} = ${body};\n`;
    const readFlat = flatResultsReader(ctx, plan);
    if (readFlat !== null) {
      flatRef = `${plan.constName}$readFlat`;
      hoisted += `const ${flatRef} = ${readFlat};\n`;
    }
  }
  const method = `${methodDoc(plan, "  ")}  ${plan.tsName}(${withTrailing(paramList(ctx, plan, true), "options?: $mp.CallOptions")}): Promise<${rt}> {\n` +
    `    return this.${flat !== null ? "$invokeFlat" : "$invoke"}(${plan.constName},\n      ${buildFn},\n      ${readRef},\n      options${flatRef === "" ? "" : `,\n      ${flatRef}`});\n  }\n`;
  return { method, hoisted, io: bArgs.endsWith(", io)") || rArgs.endsWith(", io)") };
}

/**
 * A server's flat params reader (`ServerMethod.read`, runtime proxy/seam.ts): for a method whose
 * params a client writes flat ({@link flatWriter}: data fields of plain numbers, no explicit
 * default), a function of the params struct's data section (byte `at` of `dv`, `words` data
 * words) returning the object the server entry's `invoke` reads its parameters from, under the
 * struct's accessor names. A field beyond `words` (an older peer's smaller struct) reads as its
 * default, zero (capnp's rule: absent data reads as the default, and these have none). The engine
 * runs it on the socket's bytes before anything can await (packages/capnp rpc/flat-params.ts).
 * Null when the method is not flat; `pick` is the parameters' `Pick<>` key list.
 */
function flatParamsReader(ctx: FileContext, plan: MethodPlan): { read: string; pick: string } | null {
  if (flatWriter(ctx, plan) === null) return null;
  const fields: string[] = [];
  const keys: string[] = [];
  for (const p of plan.params) {
    const [fn, bytes] = FLAT_SET[p.type.kind]!; // the DataView getter of the setter's type
    const off = p.field.slot!.offset * bytes;
    const name = accessorName(p.field.name);
    const at = off === 0 ? "at" : `at + ${off}`;
    const get = bytes === 1 ? `dv.get${fn}(${at})` : `dv.get${fn}(${at}, true)`;
    const zero = p.type.kind === "int64" || p.type.kind === "uint64" ? "0n" : "0";
    fields.push(`${name}: words > ${Math.floor(off / 8)} ? ${get} : ${zero}`);
    keys.push(str(name));
  }
  const P = ctx.structClass(plan.paramsId);
  const pick = `Pick<${P}, ${keys.length === 0 ? "never" : keys.join(" | ")}>`;
  if (fields.length === 0) return { read: `(): ${pick} => $mp.NO_PARAMS`, pick };
  const args = `(dv: DataView, at: number, words: number): ${pick}`;
  return { read: `${args} => ({\n${fields.map((f) => `    ${f},`).join("\n")}\n  })`, pick };
}

function emitServerEntry(ctx: FileContext, plan: MethodPlan, implCall: (args: string) => string): string {
  if (plan.special !== undefined) return `{ method: ${plan.constName}, special: ${str(plan.special)} },`;
  ctx.resetTemps();
  const flat = flatParamsReader(ctx, plan);
  const P = flat !== null ? flat.pick : ctx.structClass(plan.paramsId), R = ctx.structClass(plan.resultsId);
  const body: string[] = [];
  for (const i of plan.threadMapParams) body.push(`io.setPeerThreadMap($mp.readCap(p, ${i}));`);
  const args = plan.params.map((p) => {
    body.push(`const ${p.local} = ${readValue(ctx, "p", p, "io", true)};`);
    return p.local;
  });
  // The implementation may be synchronous: call it, and only when it returned a thenable return
  // a promise that writes the results (or a declared exception) once it settles; otherwise write
  // them now and return undefined (no promise, no microtask hop). The writes are emitted twice
  // (each with its own temporaries): the synchronous path allocates no closure.
  // The implementation's trailing argument is its CallContext: the IO (its lazily made `signal`).
  const call = implCall([...args, "io"].join(", "));
  const writes = (): string[] => {
    const w: string[] = [];
    if (plan.outputs.length > 0) {
      if (!plan.objectResult) w.push(...writeValue(ctx, "r", plan.outputs[0]!, "out", "io"));
      else for (const o of plan.outputs) w.push(...writeValue(ctx, "r", o, `out.${o.tsName}`, "io"));
    }
    for (const i of plan.threadMapResults) w.push(`$mp.writeCap(r, ${i}, io.threadMap());`);
    return w;
  };
  const catches: string[] = [];
  for (const e of plan.errors) {
    catches.push(`if (e instanceof ${e.cls}) {`, ...writeField(ctx, "r", e.field, e.type, "e.value", "io").map((x) => `  ${x}`), `  return;`, `}`);
  }
  if (plan.errors.length > 0) {
    // A declared exception may be thrown synchronously or reject the returned promise.
    body.push(`let out: ReturnType<typeof impl.${plan.tsName}>;`);
    body.push(`try {`, `  out = ${call};`, `} catch (e) {`, ...catches.map((x) => `  ${x}`), `  throw e;`, `}`);
  } else {
    body.push(`const out = ${call};`);
  }
  const asyncWrites = writes();
  const outParam = asyncWrites.some((x) => /\bout\b/.test(x)) ? "(out)" : "()";
  const onFulfilled = asyncWrites.length > 0 ? `${outParam} => {\n${asyncWrites.map((x) => `  ${x}`).join("\n")}\n}` : undefined;
  const onRejected = plan.errors.length > 0 ? `(e: unknown) => {\n${[...catches, "throw e;"].map((x) => `  ${x}`).join("\n")}\n}` : undefined;
  if (onFulfilled === undefined && onRejected === undefined) {
    body.push(`if ($mp.isThenable(out)) return Promise.resolve(out);`);
  } else if (onRejected === undefined) {
    // The runtime's dispatcher runs the writes in the engine's own reaction to `out` (no promise
    // and no reaction of ours); `thenWrite` is `Promise.resolve(out).then(...)` anywhere else.
    body.push(...`if ($mp.isThenable(out)) return $mp.thenWrite(io, out, ${onFulfilled});`.split("\n"));
  } else {
    const handlers = onRejected === undefined ? onFulfilled! : `${onFulfilled ?? "undefined"}, ${onRejected}`;
    body.push(...`if ($mp.isThenable(out)) return Promise.resolve(out).then(${handlers});`.split("\n"));
  }
  body.push(...writes());
  const src = body.join("\n");
  const pName = /\bp\b/.test(src) ? "p" : "_p";
  const rName = /\br\b/.test(src) ? "r" : "_r";
  const io = /\bio\b/.test(src) ? ", io" : "";
  const read = flat !== null ? ` read: ${flat.read},` : "";
  return `{ method: ${plan.constName},${read} invoke(impl, ${pName}: ${P}, ${rName}: ${R}${io}): void | Promise<void> {\n${body.map((b) => `    ${b}`).join("\n")}\n  } },`;
}

/** Emits everything for interface node `n`; returns the source and the method plans. */
export function emitInterface(ctx: FileContext, n: NodeInfo): { src: string; plans: MethodPlan[] } {
  checkAnnotations(n.annotations, ctx.model.nodes, `interface ${n.shortName}`);
  const base = ctx.baseName(n.id);
  const plans = n.interface!.methods.map((m) => planMethod(ctx, n, m));
  const supers = n.interface!.superclasses.map((s) => ctx.node(s.id));
  const isFn = isFunctionWrap(n);
  let out = "";
  for (const p of plans) out += emitMethodConst(ctx, p);
  out += "\n";

  // Declarations follow the schema's code order; method ids stay the ordinals.
  const ordinary = plans.filter((p) => p.special === undefined).sort((a, b) => a.m.codeOrder - b.m.codeOrder);
  let implType: string;
  if (isFn) {
    const call = ordinary.find((p) => p.m.name === "call");
    if (call === undefined) throw new MpgenError(`mpgen: cannot map $Proxy.wrap(ProxyCallback<std::function<…>>) on ${n.shortName}: it has no \`call\` method`);
    out += jsdoc(n.doc ?? `Function type for \`${n.shortName}\` (${textAnnotation(n.annotations, 0xe6f46079b7b1405en) ?? ""}).`);
    out += `export type ${base} = (${withTrailing(paramList(ctx, call), "options?: $mp.CallOptions")}) => ${returnType(ctx, call, false)} | Promise<${returnType(ctx, call, false)}>;\n\n`;
    implType = `{ call: ${base} }`;
  } else {
    const ext = supers.length > 0 ? ` extends ${supers.map((s) => ctx.nativeName(s.id)).join(", ")}` : "";
    out += jsdoc(n.doc ?? `TS-native interface of \`${n.shortName}\`, implemented by servers (sync or async) and by {@link ${base}Client}.`);
    out += `export interface ${base}${ext} {\n`;
    for (const p of ordinary) {
      const rt = returnType(ctx, p, false, true);
      out += `${methodDoc(p, "  ")}  ${p.tsName}(${withTrailing(paramList(ctx, p), "ctx?: $mp.CallContext")}): ${rt} | Promise<${rt}>;\n`;
    }
    out += `}\n\n`;
    implType = base;
  }

  // Client: extends the first superclass's client; methods of other superclasses are re-emitted.
  const parentClient = supers.length > 0 ? ctx.clientClass(supers[0]!.id) : "$mp.ProxyClientBase";
  const inherited = new Set<bigint>(supers.length > 0 ? [supers[0]!.id, ...ancestors(ctx, supers[0]!).map((a) => a.id)] : []);
  const extraPlans: MethodPlan[] = [];
  for (const a of ancestors(ctx, n)) {
    if (inherited.has(a.id)) continue;
    inherited.add(a.id);
    // Methods of a second superclass: emitted in this file, so their descriptors must be too.
    for (const m of a.interface!.methods) {
      const pl = planMethod(ctx, a, m);
      pl.constName = `${base}$${ctx.baseName(a.id)}$${m.name}`;
      out += emitMethodConst(ctx, pl);
      extraPlans.push(pl);
    }
  }
  const construct = findSpecial(ctx, n, "construct");
  const destroy = findSpecial(ctx, n, "destroy");
  const specialConst = (x: { iface: NodeInfo; m: MethodInfo } | undefined): string => {
    if (x === undefined) return "undefined";
    if (x.iface.id === n.id) return `${base}$${x.m.name}`;
    const extra = extraPlans.find((p) => p.iface.id === x.iface.id && p.m.name === x.m.name);
    if (extra !== undefined) return extra.constName;
    return `${ctx.clientClass(x.iface.id)}.$${x.m.name}`;
  };
  const methods = [...ordinary, ...extraPlans.filter((x) => x.special === undefined)].map((p) => emitClientMethod(ctx, p));
  const hoisted = methods.map((x) => x.hoisted).join("");
  if (hoisted !== "") out += `${hoisted}\n`;
  out += jsdoc(`Client proxy for \`${n.shortName}\`: each method sends one call and resolves with its results.`);
  out += `export class ${base}Client extends ${parentClient}${isFn ? "" : ` implements ${base}`} {\n`;
  // A client of a derived interface extends its parent's client class (noImplicitOverride).
  const ovr = supers.length > 0 ? "override " : "";
  out += `  static ${ovr}readonly interfaceId: bigint = ${hexBigint(n.id)};\n`;
  out += `  static ${ovr}readonly $construct: $mp.ProxyMethod | undefined = ${specialConst(construct)};\n`;
  out += `  static ${ovr}readonly $destroy: $mp.ProxyMethod | undefined = ${specialConst(destroy)};\n`;
  for (const x of methods) out += x.method;
  out += `}\n\n`;

  out += jsdoc(`Server dispatch for \`${n.shortName}\`: wraps an implementation of {@link ${base}}${supers.length > 0 ? " (parent interface methods included, with their interface ids)" : ""}.`);
  out += `export class ${base}Server extends $mp.ProxyServerBase<${implType}> {\n`;
  out += `  static readonly interfaceId: bigint = ${hexBigint(n.id)};\n`;
  out += `  static readonly methods: readonly $mp.ServerMethod<${implType}>[] = [\n`;
  const entries: string[] = [];
  for (const p of [...plans, ...extraPlans]) {
    entries.push(emitServerEntry(ctx, p, (args) => (isFn ? `impl.call(${args})` : `impl.${p.tsName}(${args})`)));
  }
  for (const e of entries) out += e.split("\n").map((l) => `    ${l}`).join("\n") + "\n";
  if (supers.length > 0) out += `    ...${ctx.serverClass(supers[0]!.id)}.methods,\n`;
  out += `  ];\n}\n`;
  return { src: out, plans: [...plans, ...extraPlans] };
}

/**
 * The value codec: expressions and statements that turn capnp-ts struct accessors into TS-native
 * values and back (fields, lists, maps, structs, capabilities), including schema defaults of
 * pointer fields and discriminated unions (struct bodies in body.ts).
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { MpgenError, isFunctionWrap } from "../annotations.js";
import { accessorName, capitalize } from "../names.js";
import type { FieldInfo, NodeInfo, TypeInfo } from "../schema.js";
import { ELEMENT_SIZE, EMPTY_ENV, type Env, type FileContext } from "./context.js";
import { isDefaulted, nativeFields, whichTag } from "./fields.js";
import { literal } from "./literal.js";

/**
 * Expression reading field `f` (of resolved type `t`) from struct expression `s` as a TS-native
 * value. `accessor` is false for fields whose class accessor is untyped (generic parameters).
 */
export function readField(ctx: FileContext, s: string, f: FieldInfo, t: TypeInfo, io: string, nullableCaps = true): string {
  const r = readFieldValue(ctx, s, f, t, io, nullableCaps);
  // A Data, List or struct default applies when the pointer is null (Text defaults go to getText).
  const d = f.slot!.defaultValue;
  if (f.slot!.hadExplicitDefault && d.kind === "pointer" && (t.kind === "data" || t.kind === "list" || t.kind === "struct")) {
    return `($.Pointer.isNull($.Struct.getPointer(${f.slot!.offset}, ${s})) ? ${literal(ctx, d.decoded ?? null, t)} : ${r})`;
  }
  return r;
}

function readFieldValue(ctx: FileContext, s: string, f: FieldInfo, t: TypeInfo, io: string, nullableCaps: boolean): string {
  const slot = f.slot!;
  const generic = slot.type.kind === "anyPointer";
  const acc = `${s}.${accessorName(f.name)}`;
  switch (t.kind) {
    // A field read at its own width is always in range: only writes are checked (checkWrite).
    case "bool": case "float32": case "float64": case "int64": case "uint64": return acc;
    case "int8": case "int16": case "int32": case "uint8": case "uint16": case "uint32": return acc;
    case "enum": return `${acc} as ${ctx.nativeName(t.typeId)}`;
    case "text": return generic ? `$.Struct.getText(${slot.offset}, ${s})` : acc;
    case "data": ctx.usesDataView = true; return `$dataView($.Struct.getData(${slot.offset}, ${s}))`;
    case "list": return readList(ctx, `$.Struct.getList(${slot.offset}, ${ctx.listCtor(t.element)}, ${s})`, t, io);
    case "struct": return readStruct(ctx, `$.Struct.getStruct(${slot.offset}, ${ctx.structClass(t.typeId)}, ${s})`, t, io);
    case "interface": return readCap(ctx, `$mp.readCap(${s}, ${slot.offset})`, t, io, `${f.name}`, nullableCaps);
    default: throw new MpgenError(`mpgen: cannot map field ${f.name} of type ${t.kind} to a TS-native value`);
  }
}

/**
 * Imports a capability. Received values that the peer may leave unset (params, struct fields)
 * stay `T | null`; results are checked with the local `$nonNull` helper.
 */
export function readCap(ctx: FileContext, cap: string, t: TypeInfo & { kind: "interface" }, io: string, what: string, nullable: boolean): string {
  const n = ctx.node(t.typeId);
  const expr = isFunctionWrap(n)
    ? `${io}.importFunction<${ctx.nativeName(t.typeId)}>(${cap}, ${ctx.clientClass(t.typeId)})`
    : `${io}.importObject(${cap}, ${ctx.clientClass(t.typeId)})`;
  if (nullable) return expr;
  ctx.usesNonNull = true;
  return `$nonNull(${expr}, ${JSON.stringify(what)})`;
}

export function exportCap(ctx: FileContext, v: string, t: TypeInfo & { kind: "interface" }, io: string): string {
  const n = ctx.node(t.typeId);
  if (isFunctionWrap(n)) return `${io}.exportFunction(${v}, ${ctx.serverClass(t.typeId)})`;
  return `${io}.exportObject(${v}, ${ctx.serverClass(t.typeId)})`;
}

export function readStruct(ctx: FileContext, raw: string, t: TypeInfo & { kind: "struct" }, io: string): string {
  const n = ctx.node(t.typeId);
  if (!n.isGeneric) {
    return ctx.structNeedsIo(t.typeId) ? `${ctx.readFn(t.typeId)}(${raw}, ${io})` : `${ctx.readFn(t.typeId)}(${raw})`;
  }
  // Generic struct: inline the reader with the bound types.
  return readInline(ctx, n, ctx.envOf(t.brand, EMPTY_ENV), raw, io);
}

/** Reads a capnp-ts list expression as a TS array or Map. */
export function readList(ctx: FileContext, raw: string, t: TypeInfo & { kind: "list" }, io: string): string {
  const me = ctx.mapEntry(t);
  const el = t.element;
  if (me !== undefined && el.kind === "struct") {
    const n = ctx.node(el.typeId);
    const env = ctx.envOf(el.brand, EMPTY_ENV);
    const fields = n.struct!.fields;
    const first = fields.find((f) => f.name === "first")!, second = fields.find((f) => f.name === "second")!;
    const e = ctx.fresh("e");
    const k = readField(ctx, e, first, ctx.resolve(first.slot!.type, env), io);
    const v = readField(ctx, e, second, ctx.resolve(second.slot!.type, env), io);
    return `new Map(${raw}.map((${e}): [${ctx.tsType(me[0])}, ${ctx.tsType(me[1])}] => [${k}, ${v}]))`;
  }
  // Primitive, Text and Data lists: the runtime's one-pass readers (docs/rpc.md "Cost model").
  switch (el.kind) {
    case "bool": return `$mp.readBoolList(${raw})`;
    case "int8": case "int16": case "int32": case "uint8": case "uint16": case "uint32": case "float32": case "float64":
      return `$mp.readNumberList(${raw}, ${JSON.stringify(el.kind)})`;
    case "int64": case "uint64": return `$mp.readBigIntList(${raw}, ${el.kind === "int64"})`;
    case "text": return `$mp.readTextList(${raw})`;
    case "enum": return `$mp.readNumberList(${raw}, "uint16") as ${ctx.nativeName(el.typeId)}[]`;
    case "data": return `$mp.readDataList(${raw})`;
    case "struct": {
      const e = ctx.fresh("e");
      return `${raw}.map((${e}) => ${readStruct(ctx, e, el, io)})`;
    }
    case "list": {
      const e = ctx.fresh("e");
      return `${raw}.map((${e}) => ${readList(ctx, e, el, io)})`;
    }
    default: throw new MpgenError(`mpgen: cannot map List(${el.kind}) to a TS-native value`);
  }
}

/** Statements writing TS-native value `v` into field `f` of struct expression `s`. */
export function writeField(ctx: FileContext, s: string, f: FieldInfo, t: TypeInfo, v: string, io: string): string[] {
  const slot = f.slot!;
  const generic = slot.type.kind === "anyPointer";
  const acc = `${s}.${accessorName(f.name)}`;
  switch (t.kind) {
    case "bool": case "float32": case "float64": case "enum":
      return [`${acc} = ${v};`];
    case "int8": case "int16": case "int32": case "uint8": case "uint16": case "uint32": case "int64": case "uint64":
      return [`${acc} = ${ctx.checkWrite(t, v)};`];
    case "text": return [generic ? `$.Struct.setText(${slot.offset}, ${v}, ${s});` : `${acc} = ${v};`];
    case "data": return [`$.writeData(${slot.offset}, ${v}, ${s});`];
    case "list": {
      const me = ctx.mapEntry(t);
      const l = ctx.fresh("l");
      const len = me !== undefined ? `${v}.size` : `${v}.length`;
      return [`const ${l} = $.Struct.initList(${slot.offset}, ${ctx.listCtor(t.element)}, ${len}, ${s});`, ...writeListElements(ctx, l, t, v, io)];
    }
    case "struct": {
      const cls = ctx.structClass(t.typeId);
      return writeStruct(ctx, `$.Struct.initStructAt(${slot.offset}, ${cls}, ${s})`, t, v, io);
    }
    case "interface":
      return [`$mp.writeCap(${s}, ${slot.offset}, ${exportCap(ctx, v, t, io)});`];
    default: throw new MpgenError(`mpgen: cannot map field ${f.name} of type ${t.kind} to a TS-native value`);
  }
}

export function writeStruct(ctx: FileContext, target: string, t: TypeInfo & { kind: "struct" }, v: string, io: string): string[] {
  const n = ctx.node(t.typeId);
  if (!n.isGeneric) {
    return [ctx.structNeedsIo(t.typeId) ? `${ctx.writeFn(t.typeId)}(${target}, ${v}, ${io});` : `${ctx.writeFn(t.typeId)}(${target}, ${v});`];
  }
  const e = ctx.fresh("g");
  return [`{`, ...[`const ${e} = ${target};`, ...writeBody(ctx, n, ctx.envOf(t.brand, EMPTY_ENV), e, v, io)].map((x) => `  ${x}`), `}`];
}

/** Statements filling the already initialised list `l` from `v`. */
export function writeListElements(ctx: FileContext, l: string, t: TypeInfo & { kind: "list" }, v: string, io: string): string[] {
  const el = t.element;
  const me = ctx.mapEntry(t);
  const j = ctx.fresh("j");
  if (me !== undefined && el.kind === "struct") {
    const n = ctx.node(el.typeId);
    const env = ctx.envOf(el.brand, EMPTY_ENV);
    const fields = n.struct!.fields;
    const first = fields.find((f) => f.name === "first")!, second = fields.find((f) => f.name === "second")!;
    const k = ctx.fresh("k"), x = ctx.fresh("x"), e = ctx.fresh("e");
    const body = [
      `const ${e} = ${l}.get(${j}++);`,
      ...writeField(ctx, e, first, ctx.resolve(first.slot!.type, env), k, io),
      ...writeField(ctx, e, second, ctx.resolve(second.slot!.type, env), x, io),
    ];
    return [`let ${j} = 0;`, `for (const [${k}, ${x}] of ${v}) {`, ...body.map((b) => `  ${b}`), `}`];
  }
  const e = ctx.fresh("e");
  let body: string[];
  switch (el.kind) {
    case "bool": case "float32": case "float64": case "text": case "enum":
      body = [`${l}.set(${j}, ${e});`];
      break;
    case "int8": case "int16": case "int32": case "uint8": case "uint16": case "uint32": case "int64": case "uint64":
      body = [`${l}.set(${j}, ${ctx.checkWrite(el, e)});`];
      break;
    case "data":
      // Large elements are adopted like Data fields (docs/rpc.md "Large Data is sent from your buffer").
      body = [`$.writeDataElement(${l}, ${j}, ${e});`];
      break;
    case "struct":
      body = writeStruct(ctx, `${l}.get(${j})`, el, e, io);
      break;
    case "list": {
      const inner = ctx.fresh("l");
      const size = ELEMENT_SIZE[el.element.kind]!;
      const innerMap = ctx.mapEntry(el);
      const len = innerMap !== undefined ? `${e}.size` : `${e}.length`;
      const composite = el.element.kind === "struct" ? `, ${ctx.structClass(el.element.typeId)}._capnp.size` : "";
      ctx.listCtor(el);
      body = [`const ${inner} = ${l}.get(${j});`, `$.List.initList($.ListElementSize.${size}, ${len}, ${inner}${composite});`, ...writeListElements(ctx, inner, el, e, io)];
      break;
    }
    default: throw new MpgenError(`mpgen: cannot map List(${el.kind}) to a TS-native value`);
  }
  return [`${v}.forEach((${e}, ${j}) => {`, ...body.map((b) => `  ${b}`), `});`];
}

// ---- struct bodies ------------------------------------------------------------------------

/** What reading struct (or group) `n` through `s` yields: common entries, and one per union member. */
export interface ReadParts {
  common: string[];
  /** Discriminant value, `which` tag and member entry (none for a Void member). */
  members: { disc: number; tag: string; entry?: string }[];
}

export function readParts(ctx: FileContext, n: NodeInfo, env: Env, s: string, io: string): ReadParts {
  const out: ReadParts = { common: [], members: [] };
  for (const nf of nativeFields(ctx, n)) {
    const f = nf.field;
    let r = "";
    if (f.groupId !== undefined) {
      const g = ctx.node(f.groupId);
      const acc = `${s}.${accessorName(f.name)}`;
      if (g.isGeneric) r = readInline(ctx, g, env, acc, io);
      else r = `${ctx.readFn(f.groupId)}(${acc}${ctx.structNeedsIo(f.groupId) ? `, ${io}` : ""})`;
    } else if (f.slot!.type.kind !== "void") {
      r = readField(ctx, s, f, ctx.resolve(f.slot!.type, env), io);
    }
    if (nf.union) {
      const m: ReadParts["members"][number] = { disc: f.discriminantValue, tag: whichTag(nf) };
      if (r !== "") m.entry = `${nf.tsName}: ${r}`;
      out.members.push(m);
      continue;
    }
    if (nf.has !== undefined) r = `${s}.${accessorName(nf.has.name)} ? ${r} : undefined`;
    out.common.push(`${nf.tsName}: ${r}`);
  }
  return out;
}

/** The name of struct node `n` in messages (`Shape.style`). */
export function displayPath(n: NodeInfo): string {
  return n.displayName.slice(n.displayName.indexOf(":") + 1);
}

/**
 * `switch` statements returning one object per union member (`asConst`: tags spelled `"x" as
 * const`, for readers without a declared return type). A discriminant this schema does not know
 * (a newer peer's member) reads as the common fields and `which: <the raw discriminant>`, as
 * capnp's C++ `which()` returns it (schema evolution: readers tolerate unknown members).
 */
export function unionSwitch(s: string, p: ReadParts, asConst: boolean): string[] {
  const out = [`switch (${s}.which()) {`];
  for (const m of p.members) {
    const entries = [...p.common, `which: ${m.tag}${asConst ? " as const" : ""}`, ...(m.entry !== undefined ? [m.entry] : [])];
    out.push(`  case ${m.disc}:`, `    return { ${entries.join(", ")} };`);
  }
  out.push(`  default:`, `    return { ${[...p.common, `which: ${s}.which()`].join(", ")} };`, `}`);
  return out;
}

/** An expression reading generic struct (or group) `n` from `raw` with the bindings in `env`. */
function readInline(ctx: FileContext, n: NodeInfo, env: Env, raw: string, io: string): string {
  const e = ctx.fresh("g");
  const p = readParts(ctx, n, env, e, io);
  const cls = ctx.structClass(n.id);
  if (p.members.length === 0) return `((${e}: ${cls}) => ({ ${p.common.join(", ")} }))(${raw})`;
  return `((${e}: ${cls}) => { ${unionSwitch(e, p, true).map((x) => x.trim()).join(" ")} })(${raw})`;
}

/**
 * Statements writing TS-native value `v` into struct (or group) `n` at `s`: fields with explicit
 * defaults only when defined, `hasX` companions set with their field, union members by `which`.
 */
export function writeBody(ctx: FileContext, n: NodeInfo, env: Env, s: string, v: string, io: string): string[] {
  const out: string[] = [];
  const cases: string[] = [];
  const disc = n.struct!.discriminantOffset * 2;
  for (const nf of nativeFields(ctx, n)) {
    const f = nf.field;
    const x = `${v}.${nf.tsName}`;
    let w: string[];
    if (f.groupId !== undefined) {
      const g = ctx.node(f.groupId);
      const target = nf.union ? `${s}.init${capitalize(f.name)}()` : `${s}.${accessorName(f.name)}`;
      if (g.isGeneric) {
        const e = ctx.fresh("g");
        w = [`const ${e} = ${target};`, ...writeBody(ctx, g, env, e, x, io)];
      } else {
        w = [`${ctx.writeFn(f.groupId)}(${target}, ${x}${ctx.structNeedsIo(f.groupId) ? `, ${io}` : ""});`];
      }
    } else if (f.slot!.type.kind === "void") {
      w = [`$.Struct.setUint16(${disc}, ${f.discriminantValue}, ${s});`];
    } else {
      w = writeField(ctx, s, f, ctx.resolve(f.slot!.type, env), x, io);
      if (nf.union) w = [`$.Struct.setUint16(${disc}, ${f.discriminantValue}, ${s});`, ...w];
    }
    if (nf.union) {
      cases.push(`case ${whichTag(nf)}: {`, ...w.map((y) => `  ${y}`), `  break;`, `}`);
    } else if (nf.has !== undefined) {
      out.push(`if (${x} !== undefined) {`, `  ${s}.${accessorName(nf.has.name)} = true;`, ...w.map((y) => `  ${y}`), `}`);
    } else if (isDefaulted(nf)) {
      out.push(`if (${x} !== undefined) {`, ...w.map((y) => `  ${y}`), `}`);
    } else if (w.length === 1) {
      out.push(...w);
    } else {
      out.push(`{`, ...w.map((y) => `  ${y}`), `}`);
    }
  }
  if (cases.length > 0) {
    // A numeric `which` (an unknown member as read) or a tag naming no member: a typed error.
    const bad = `throw new $mp.UnknownUnionMemberError(${JSON.stringify(displayPath(n))}, (${v} as { which: unknown }).which);`;
    out.push(`switch (${v}.which) {`, ...cases.map((y) => `  ${y}`), `  default:`, `    ${bad}`, `}`);
  }
  return out;
}

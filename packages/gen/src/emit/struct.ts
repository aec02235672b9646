/**
 * Struct emitter: the capnp-ts accessor class (`Foo$Struct`, or `Iface_m$Params` for implicit
 * parameter structs). The TS-native types and converters are in native.ts.
 *
 * Runs at build time (mpgen), on the main thread of the mpgen process; no RPC thread involved.
 *
 * @module
 */
import { accessorName, capitalize, jsdoc, str } from "../names.js";
import type { NodeInfo, TypeInfo, ValueInfo } from "../schema.js";
import type { FileContext } from "./context.js";

const NO_DISCRIMINANT = 0xffff;

const ACCESS: Partial<Record<TypeInfo["kind"], [fn: string, ts: string, bytes: number, mask: string]>> = {
  int8: ["Int8", "number", 1, "getInt8Mask"], int16: ["Int16", "number", 2, "getInt16Mask"],
  int32: ["Int32", "number", 4, "getInt32Mask"], int64: ["Int64", "bigint", 8, "getInt64Mask"],
  uint8: ["Uint8", "number", 1, "getUint8Mask"], uint16: ["Uint16", "number", 2, "getUint16Mask"],
  uint32: ["Uint32", "number", 4, "getUint32Mask"], uint64: ["Uint64", "bigint", 8, "getUint64Mask"],
  float32: ["Float32", "number", 4, "getFloat32Mask"], float64: ["Float64", "number", 8, "getFloat64Mask"],
  enum: ["Uint16", "number", 2, "getUint16Mask"],
};

function isNonZero(v: ValueInfo): boolean {
  if (v.kind === "pointer" || v.kind === "void") return false;
  if (v.kind === "text") return v.value !== "";
  if (typeof v.value === "bigint") return v.value !== 0n;
  if (typeof v.value === "number") return v.value !== 0 || Object.is(v.value, -0);
  return v.value === true;
}

function literal(v: ValueInfo): string {
  if (typeof v.value === "bigint") return `${v.value}n`;
  if (typeof v.value === "number") return Object.is(v.value, -0) ? "-0" : String(v.value);
  return String(v.value);
}

/** All struct nodes (incl. groups) to emit classes for, given top-level struct ids. */
export function collectGroups(ctx: FileContext, id: bigint, out: bigint[]): void {
  out.push(id);
  for (const f of ctx.node(id).struct?.fields ?? []) if (f.groupId !== undefined) collectGroups(ctx, f.groupId, out);
}

/** The capnp-ts class of one struct node. */
export function emitStructClass(ctx: FileContext, n: NodeInfo): string {
  const s = n.struct!;
  const cls = ctx.structClassLocal(n.id);
  const lines: string[] = [];
  const union = s.discriminantCount > 0;
  lines.push(`static override readonly _capnp = { displayName: ${str(n.shortName)}, id: ${str(n.id.toString(16))}, size: new $.ObjectSize(${s.dataWordCount * 8}, ${s.pointerCount}) };`);
  if (union) {
    for (const f of s.fields) if (f.discriminantValue !== NO_DISCRIMINANT) lines.push(`static readonly ${f.name.toUpperCase()} = ${f.discriminantValue};`);
    lines.push(`/** The active union member (compare with the static constants). */`);
    lines.push(`which(): number { return $.Struct.getUint16(${s.discriminantOffset * 2}, this); }`);
  }
  const taken = new Set(s.fields.map((f) => accessorName(f.name)));
  for (const f of s.fields) {
    const d = jsdoc(f.doc).trimEnd();
    const setDisc = f.discriminantValue !== NO_DISCRIMINANT ? `$.Struct.setUint16(${s.discriminantOffset * 2}, ${f.discriminantValue}, this); ` : "";
    const name = accessorName(f.name);
    const cap = capitalize(f.name);
    if (d !== "") lines.push(...d.split("\n"));
    if (f.groupId !== undefined) {
      const g = ctx.structClass(f.groupId);
      lines.push(`get ${name}(): ${g} { return $.Struct.getAs(${g}, this); }`);
      if (setDisc !== "") lines.push(`init${cap}(): ${g} { ${setDisc}return $.Struct.getAs(${g}, this); }`);
      continue;
    }
    const slot = f.slot!;
    const t = slot.type;
    const a = ACCESS[t.kind];
    if (a !== undefined) {
      const [fn, ts, bytes, maskFn] = a;
      let mask = "";
      if (isNonZero(slot.defaultValue)) {
        const m = `$default_${cls}_${f.name}`;
        ctx.trailer.set(m, `const ${m} = $.${maskFn}(${literal(slot.defaultValue)});`);
        mask = `, ${m}`;
      }
      const tsType = t.kind === "enum" ? ctx.nativeName(t.typeId) : ts;
      const get = `$.Struct.get${fn}(${slot.offset * bytes}, this${mask})`;
      lines.push(`get ${name}(): ${tsType} { return ${t.kind === "enum" ? `${get} as ${tsType}` : get}; }`);
      lines.push(`set ${name}(v: ${tsType}) { ${setDisc}$.Struct.set${fn}(${slot.offset * bytes}, v, this${mask}); }`);
      continue;
    }
    switch (t.kind) {
      case "void":
        if (setDisc !== "") lines.push(`set${cap}(): void { ${setDisc}}`);
        break;
      case "bool": {
        let mask = "";
        if (isNonZero(slot.defaultValue)) {
          const m = `$default_${cls}_${f.name}`;
          ctx.trailer.set(m, `const ${m} = $.getBitMask(true, ${slot.offset % 8});`);
          mask = `, ${m}`;
        }
        lines.push(`get ${name}(): boolean { return $.Struct.getBit(${slot.offset}, this${mask}); }`);
        lines.push(`set ${name}(v: boolean) { ${setDisc}$.Struct.setBit(${slot.offset}, v, this${mask}); }`);
        break;
      }
      case "text": {
        const def = slot.defaultValue.kind === "text" && slot.defaultValue.value !== "" ? `, ${str(slot.defaultValue.value)}` : "";
        lines.push(`get ${name}(): string { return $.Struct.getText(${slot.offset}, this${def}); }`);
        lines.push(`set ${name}(v: string) { ${setDisc}$.Struct.setText(${slot.offset}, v, this); }`);
        lines.push(`has${cap}(): boolean { return !$.Pointer.isNull($.Struct.getPointer(${slot.offset}, this)); }`);
        break;
      }
      case "data":
        lines.push(`get ${name}(): $.Data { return $.Struct.getData(${slot.offset}, this); }`);
        lines.push(`init${cap}(length: number): $.Data { ${setDisc}return $.Struct.initData(${slot.offset}, length, this); }`);
        lines.push(`has${cap}(): boolean { return !$.Pointer.isNull($.Struct.getPointer(${slot.offset}, this)); }`);
        break;
      case "list": {
        const ctor = ctx.listCtor(t.element);
        const el = elementClassType(ctx, t.element);
        lines.push(`get ${name}(): $.List<${el}> { return $.Struct.getList(${slot.offset}, ${ctor}, this); }`);
        lines.push(`init${cap}(length: number): $.List<${el}> { ${setDisc}return $.Struct.initList(${slot.offset}, ${ctor}, length, this); }`);
        lines.push(`has${cap}(): boolean { return !$.Pointer.isNull($.Struct.getPointer(${slot.offset}, this)); }`);
        break;
      }
      case "struct": {
        const sc = ctx.structClass(t.typeId);
        lines.push(`get ${name}(): ${sc} { return $.Struct.getStruct(${slot.offset}, ${sc}, this); }`);
        lines.push(`init${cap}(): ${sc} { ${setDisc}return $.Struct.initStructAt(${slot.offset}, ${sc}, this); }`);
        lines.push(`has${cap}(): boolean { return !$.Pointer.isNull($.Struct.getPointer(${slot.offset}, this)); }`);
        break;
      }
      case "interface":
        lines.push(`// ${f.name}: capability at pointer ${slot.offset}; use $mp.readCap / $mp.writeCap.`);
        break;
      default:
        lines.push(`get ${name}(): $.Pointer { return $.Struct.getPointer(${slot.offset}, this); }`);
        lines.push(`has${cap}(): boolean { return !$.Pointer.isNull($.Struct.getPointer(${slot.offset}, this)); }`);
        break;
    }
  }
  // `hasX()` / `initX()` / `setX()` helpers are dropped when a field already has that name (e.g. `hasResult`).
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^(?:has|init|set)[A-Z][A-Za-z0-9_]*(?=\()/.exec(lines[i]!);
    if (m !== null && taken.has(m[0])) lines.splice(i, 1);
  }
  const head = n.doc !== undefined && !ctx.isImplicitStruct(n.id) ? jsdoc(n.doc) : jsdoc(`capnp-ts accessors for \`${n.shortName}\` (${n.displayName.slice(n.displayName.indexOf(":") + 1)}).`);
  return `${head}export class ${cls} extends $.Struct {\n${lines.map((l) => `  ${l}`).join("\n")}\n}\n`;
}

function elementClassType(ctx: FileContext, el: TypeInfo): string {
  switch (el.kind) {
    case "bool": return "boolean";
    case "int64": case "uint64": return "bigint";
    case "text": return "string";
    case "data": return "$.Data";
    case "enum": return "number";
    case "struct": return ctx.structClass(el.typeId);
    case "list": return `$.List<${elementClassType(ctx, el.element)}>`;
    case "interface": return "$.Interface";
    case "anyPointer": return "$.Pointer";
    case "void": return "void";
    default: return "number";
  }
}

/**
 * The oracle for the schema compiler's tests: runs the real `capnp compile -o-` (failing loudly
 * when it is missing), decodes its CodeGeneratorRequest and ours with layouts taken from capnp's
 * own compile of schema.capnp (read through capnp-ts, independent of our compiler), and compares
 * them node for node, printing a readable diff. Test-only; runs in the vitest process.
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as $ from "capnp-ts";
import * as S from "capnp-ts/src/std/schema.capnp.js";
import {
  CODE_GENERATOR_REQUEST_ID, canonicalPtr, compile, decodeStruct, readMessage, writeMessage, type Obj,
} from "../dist/index.js";

export const SCHEMA_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = path.resolve(SCHEMA_DIR, "../..");

/** Runs `capnp` with `args`; a missing binary is a test failure with a clear message. */
export function capnp(args: readonly string[]): Buffer {
  try {
    return execFileSync("capnp", args, { maxBuffer: 1 << 28, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === "ENOENT") throw new Error("the oracle test needs `capnp` (capnproto 0.9.2) on PATH: apt-get install capnproto");
    throw new Error(`capnp ${args.join(" ")} failed:\n${err.stderr?.toString() ?? err.message}`);
  }
}

function typeObj(t: S.Type): Obj {
  const w = t.which();
  switch (w) {
    case S.Type_Which.LIST: return { list: { elementType: typeObj(t.list.elementType) } };
    case S.Type_Which.ENUM: return { enum: { typeId: t.enum.typeId } };
    case S.Type_Which.STRUCT: return { struct: { typeId: t.struct.typeId } };
    case S.Type_Which.INTERFACE: return { interface: { typeId: t.interface.typeId } };
    case S.Type_Which.ANY_POINTER: return { anyPointer: { unconstrained: { anyKind: null } } };
    default: return { [S.Type_Which[w]!.toLowerCase().replace(/_/g, "")]: null };
  }
}

function valueObj(v: S.Value): Obj {
  const w = v.which();
  const name = S.Value_Which[w]!.toLowerCase();
  const getters: Record<string, () => unknown> = {
    bool: () => v.bool, int8: () => v.int8, int16: () => v.int16, int32: () => v.int32, int64: () => v.int64,
    uint8: () => v.uint8, uint16: () => v.uint16, uint32: () => v.uint32, uint64: () => v.uint64,
    float32: () => v.float32, float64: () => v.float64, enum: () => v.enum,
  };
  const g = getters[name];
  return { [name]: g === undefined ? null : g() };
}

let layouts: Map<bigint, Obj> | undefined;

/** schema.capnp's struct layouts as capnp computes them. */
export function oracleLayouts(): Map<bigint, Obj> {
  if (layouts !== undefined) return layouts;
  const bytes = capnp(["compile", "-o-", "--src-prefix=/usr/include", "/usr/include/capnp/schema.capnp"]);
  // Re-frame as one segment: capnp-ts 0.9.3 mis-reads some multi-segment messages.
  const flat = writeMessage(readMessage(new Uint8Array(bytes)));
  const req = new $.Message(flat, false).getRoot(S.CodeGeneratorRequest);
  layouts = new Map();
  for (const n of req.nodes.toArray()) {
    if (!n.isStruct()) continue;
    const s = n.struct;
    const fields = s.fields.toArray().map((f): Obj => {
      const out: Obj = { name: f.name, discriminantValue: f.discriminantValue };
      if (f.isGroup()) out["group"] = { typeId: f.group.typeId };
      else out["slot"] = { offset: f.slot.offset, type: typeObj(f.slot.type), defaultValue: valueObj(f.slot.defaultValue) };
      return out;
    });
    layouts.set(n.id, {
      id: n.id,
      struct: { dataWordCount: s.dataWordCount, pointerCount: s.pointerCount, discriminantCount: s.discriminantCount, discriminantOffset: s.discriminantOffset, fields },
    });
  }
  return layouts;
}

function norm(v: unknown): unknown {
  if (typeof v === "bigint") return "0x" + v.toString(16);
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  if (v instanceof Uint8Array) return "bytes:" + Buffer.from(v).toString("hex");
  if (v !== null && typeof v === "object" && "k" in v && ["s", "l", "c"].includes((v as { k: string }).k)) {
    return "ptr:" + canonicalPtr(v as Parameters<typeof canonicalPtr>[0]);
  }
  if (Array.isArray(v)) return v.map(norm);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

/** A CodeGeneratorRequest decoded to plain JSON-able values (AnyPointer values canonicalised). */
export function decodeRequest(bytes: Uint8Array): Obj {
  const root = readMessage(bytes);
  if (root === null || root.k !== "s") throw new Error("not a CodeGeneratorRequest: the root is not a struct");
  return norm(decodeStruct(oracleLayouts(), CODE_GENERATOR_REQUEST_ID, root)) as Obj;
}

function diff(a: unknown, b: unknown, at: string, out: string[]): void {
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) diff((a as Obj)[k], (b as Obj)[k], `${at}.${k}`, out);
  } else {
    out.push(`  ${at}: capnp=${JSON.stringify(a)} ours=${JSON.stringify(b)}`);
  }
}

export interface Comparison { nodes: number; matched: number; diffs: string[] }

/** Compares two decoded requests: nodes by id, source infos by id, requested files, version. */
export function compareRequests(theirs: Obj, ours: Obj): Comparison {
  const byId = (r: Obj, key: string): Map<string, Obj> => new Map(((r[key] as Obj[] | null) ?? []).map((n) => [String(n["id"]), n]));
  const a = byId(theirs, "nodes");
  const b = byId(ours, "nodes");
  const diffs: string[] = [];
  let matched = 0;
  for (const [id, n] of a) {
    const m = b.get(id);
    const name = `${String(n["displayName"])} (${id})`;
    if (m === undefined) { diffs.push(`node ${name}: missing from ours`); continue; }
    const d: string[] = [];
    diff(n, m, "", d);
    if (d.length === 0) matched++; else diffs.push(`node ${name}:\n${d.join("\n")}`);
  }
  for (const [id, m] of b) if (!a.has(id)) diffs.push(`node ${String(m["displayName"])} (${id}): not in capnp's output`);
  const rest: string[] = [];
  diff(byIdObj(byId(theirs, "sourceInfo")), byIdObj(byId(ours, "sourceInfo")), "sourceInfo", rest);
  diff(theirs["requestedFiles"], ours["requestedFiles"], "requestedFiles", rest);
  diff(theirs["capnpVersion"], ours["capnpVersion"], "capnpVersion", rest);
  if (rest.length > 0) diffs.push(`request:\n${rest.join("\n")}`);
  return { nodes: a.size, matched, diffs };
}

function byIdObj(m: Map<string, Obj>): Obj {
  return Object.fromEntries(m);
}

export interface OracleCase { files: string[]; importPaths?: string[]; srcPrefixes: string[] }

/** Compiles a case with capnp and with ours and compares the two requests. */
export function oracle(c: OracleCase): Comparison {
  const args = ["compile", "-o-", ...(c.importPaths ?? []).map((i) => `-I${i}`), ...c.srcPrefixes.map((p) => `--src-prefix=${p}`), ...c.files];
  const theirs = decodeRequest(new Uint8Array(capnp(args)));
  const ours = decodeRequest(compile({ files: c.files, importPaths: c.importPaths ?? [], srcPrefixes: c.srcPrefixes }));
  return compareRequests(theirs, ours);
}

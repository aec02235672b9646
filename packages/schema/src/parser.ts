/**
 * The schema parser: lexed statements to a declaration tree (ast.ts), with file:line:col errors.
 * Runs at build time.
 *
 * Grammar reference: capnproto c++/src/capnp/compiler/parser.c++.
 *
 * @module
 */
import type { AnnotationApp, Decl, DeclKind, Expr, MethodParam, Param, ParamList } from "./ast.js";
import { Lexer, type Source, type Statement, type Token } from "./lexer.js";

const TARGETS = ["file", "const", "enum", "enumerant", "struct", "field", "union", "group", "interface", "method", "param", "annotation"];

class Cursor {
  i = 0;
  constructor(readonly src: Source, readonly toks: Token[], readonly endPos: number) {}
  peek(n = 0): Token | undefined { return this.toks[this.i + n]; }
  get done(): boolean { return this.i >= this.toks.length; }
  pos(): number { return this.peek()?.pos ?? this.endPos; }
  fail(what: string): never {
    const t = this.peek();
    throw this.src.error(this.pos(), t === undefined ? `parse error: expected ${what}` : `parse error: expected ${what}, got ${describe(t)}`);
  }
  isOp(v: string, n = 0): boolean { const t = this.peek(n); return t?.t === "op" && t.v === v; }
  isKw(v: string, n = 0): boolean { const t = this.peek(n); return t?.t === "ident" && t.v === v; }
  op(v: string): void { if (!this.isOp(v)) this.fail(`'${v}'`); this.i++; }
  ident(): string { const t = this.peek(); if (t?.t !== "ident") this.fail("a name"); this.i++; return t.v; }
  int(): bigint { const t = this.peek(); if (t?.t !== "int") this.fail("an integer"); this.i++; return t.v; }
  end(): void { if (!this.done) this.fail("end of declaration"); }
}

function describe(t: Token): string {
  switch (t.t) {
    case "ident": case "op": return `'${t.v}'`;
    case "paren": return "'('";
    case "bracket": return "'['";
    case "int": return "an integer literal";
    default: return `a ${t.t} literal`;
  }
}

export function parseExpr(c: Cursor): Expr {
  let e = parseBase(c);
  for (;;) {
    const t = c.peek();
    if (c.isOp(".") && c.peek(1)?.t === "ident") {
      c.i++;
      e = { k: "member", parent: e, name: c.ident(), pos: e.pos };
    } else if (t?.t === "paren") {
      c.i++;
      e = { k: "app", fn: e, params: t.items.map((it) => parseParam(c, it, t.pos)), pos: e.pos };
    } else return e;
  }
}

function sub(c: Cursor, toks: Token[], pos: number): Cursor { return new Cursor(c.src, toks, toks[0]?.pos ?? pos); }

function parseWhole(c: Cursor, toks: Token[], pos: number): Expr {
  const s = sub(c, toks, pos);
  if (s.done) s.fail("an expression");
  const e = parseExpr(s);
  s.end();
  return e;
}

function parseParam(c: Cursor, toks: Token[], pos: number): Param {
  const s = sub(c, toks, pos);
  if (s.peek()?.t === "ident" && s.isOp("=", 1)) {
    const name = s.ident();
    s.i++;
    const value = parseExpr(s);
    s.end();
    return { name, value };
  }
  return { value: parseWhole(c, toks, pos) };
}

function parseBase(c: Cursor): Expr {
  const t = c.peek();
  if (t === undefined) c.fail("an expression");
  const pos = t.pos;
  c.i++;
  switch (t.t) {
    case "int": return { k: "int", v: t.v, pos };
    case "float": return { k: "float", v: t.v, pos };
    case "binary": return { k: "binary", v: t.v, pos };
    case "string": {
      let v = t.v;
      while (c.peek()?.t === "string") v += (c.peek() as { v: string }).v, c.i++;
      return { k: "string", v, pos };
    }
    case "bracket": return { k: "list", items: t.items.map((it) => parseWhole(c, it, pos)), pos };
    case "paren": {
      const items = t.items.map((it) => parseParam(c, it, pos));
      if (items.length === 1 && items[0]!.name === undefined) return items[0]!.value;
      return { k: "tuple", items, pos };
    }
    case "op": {
      const n = c.peek();
      if (t.v === "-" && n?.t === "int") { c.i++; return { k: "neg", v: n.v, pos }; }
      if (t.v === "-" && n?.t === "float") { c.i++; return { k: "float", v: -n.v, pos }; }
      if (t.v === "-" && n?.t === "ident" && n.v === "inf") { c.i++; return { k: "float", v: -Infinity, pos }; }
      if (t.v === "." && n?.t === "ident") { c.i++; return { k: "abs", name: n.v, pos }; }
      c.i--;
      return c.fail("an expression");
    }
    case "ident": {
      const n = c.peek();
      if ((t.v === "import" || t.v === "embed") && n?.t === "string") {
        c.i++;
        return { k: t.v, path: n.v, pos };
      }
      return { k: "rel", name: t.v, pos };
    }
  }
}

function annotations(c: Cursor): AnnotationApp[] {
  const out: AnnotationApp[] = [];
  while (c.isOp("$")) {
    const pos = c.pos();
    c.i++;
    const e = parseExpr(c);
    if (e.k === "app") {
      const p = e.params;
      if (p.length === 1 && p[0]!.name === undefined) out.push({ name: e.fn, value: p[0]!.value, pos });
      else out.push({ name: e.fn, value: { k: "tuple", items: p, pos: e.pos }, pos });
    } else out.push({ name: e, pos });
  }
  return out;
}

function nameList(c: Cursor, kind: "paren" | "bracket"): string[] {
  const t = c.peek();
  if (t?.t !== kind) return [];
  c.i++;
  return t.items.map((it) => { const s = sub(c, it, t.pos); const n = s.ident(); s.end(); return n; });
}

function uid(c: Cursor): bigint | undefined {
  if (!c.isOp("@")) return undefined;
  c.i++;
  const pos = c.pos();
  const v = c.int();
  if (v < 1n << 63n) throw c.src.error(pos, "Invalid ID.  Please generate a new one with 'capnpc -i'.");
  return v;
}

function ordinal(c: Cursor): { value: number; pos: number } {
  c.op("@");
  const pos = c.pos();
  const v = c.int();
  if (v >= 65536n) throw c.src.error(pos, "Ordinals cannot be greater than 65535.");
  return { value: Number(v), pos };
}

function decl(kind: DeclKind, name: string, pos: number, st: Statement): Decl {
  const d: Decl = { kind, name, pos, params: [], annotations: [], nested: [] };
  if (st.doc !== undefined) d.doc = st.doc;
  return d;
}

function paramList(c: Cursor): ParamList {
  const t = c.peek();
  const pos = c.pos();
  if (c.isKw("stream")) { c.i++; return { k: "stream", pos }; }
  if (t?.t === "paren") {
    c.i++;
    const params = t.items.map((it): MethodParam => {
      const s = sub(c, it, t.pos);
      const p: MethodParam = { pos: s.pos(), name: s.ident(), type: (s.op(":"), parseExpr(s)), annotations: [] };
      if (s.isOp("=")) { s.i++; p.dflt = parseExpr(s); }
      p.annotations = annotations(s);
      s.end();
      return p;
    });
    return { k: "named", params, pos };
  }
  return { k: "type", expr: parseExpr(c), pos };
}

function keywordDecl(c: Cursor, st: Statement, kw: string): Decl {
  const pos = c.pos();
  c.i++;
  if (kw === "using") {
    let name: string | undefined;
    if (c.peek()?.t === "ident" && c.isOp("=", 1)) { name = c.ident(); c.i++; }
    const target = parseExpr(c);
    if (name === undefined) {
      if (target.k !== "member") throw c.src.error(pos, "'using' declaration without '=' must specify a named declaration from a different scope.");
      name = target.name;
    }
    const d = decl("using", name, pos, st);
    d.type = target;
    return d;
  }
  const d = decl(kw as DeclKind, c.ident(), pos, st);
  d.uid = uid(c);
  if (d.uid === undefined) delete d.uid;
  if (kw === "const") {
    c.op(":"); d.type = parseExpr(c); c.op("="); d.value = parseExpr(c);
  } else if (kw === "annotation") {
    const t = c.peek();
    if (t?.t !== "paren") c.fail("'(' and annotation targets");
    c.i++;
    d.targets = new Set();
    for (const it of t.items) {
      const s = sub(c, it, t.pos);
      if (s.isOp("*")) { s.i++; TARGETS.forEach((x) => d.targets!.add(x)); } else {
        const n = s.ident();
        if (!TARGETS.includes(n)) throw c.src.error(it[0]!.pos, `'${n}' is not a valid annotation target`);
        d.targets.add(n);
      }
      s.end();
    }
    c.op(":"); d.type = parseExpr(c);
  } else if (kw === "struct" || kw === "interface") {
    d.params = nameList(c, "paren");
    if (kw === "interface" && c.isKw("extends")) {
      c.i++;
      const t = c.peek();
      if (t?.t !== "paren") c.fail("'(' after extends");
      c.i++;
      d.superclasses = t.items.map((it) => parseWhole(c, it, t.pos));
    }
  }
  d.annotations = annotations(c);
  c.end();
  return d;
}

function memberDecl(c: Cursor, st: Statement, parent: DeclKind): Decl {
  const pos = c.pos();
  const name = c.ident();
  if (c.isOp(":") && (c.isKw("group", 1) || c.isKw("union", 1))) {
    c.i++;
    const d = decl(c.ident() as DeclKind, name, pos, st);
    d.annotations = annotations(c);
    c.end();
    return d;
  }
  const ord = ordinal(c);
  const bang = c.isOp("!");
  if (bang) c.i++;
  if (c.isKw("union") || (c.isOp(":") && c.isKw("union", 1))) {
    if (!bang) throw c.src.error(ord.pos, "As of Cap'n Proto v0.3, it is no longer necessary to assign numbers to unions. However, removing the number will break binary compatibility. If this is an old protocol and you need to retain compatibility, please add an exclamation point after the number to indicate that it is really needed, e.g. `foo @1! :union {`. If this is a new protocol or compatibility doesn't matter, just remove the @n entirely.");
    if (!c.isOp(":")) throw c.src.error(ord.pos, "As of Cap'n Proto v0.3, the 'union' keyword should be prefixed with a colon for named unions, e.g. `foo :union {`.");
    c.i += 2;
    const d = decl("union", name, pos, st);
    d.ordinal = ord;
    d.annotations = annotations(c);
    c.end();
    return d;
  }
  const kind: DeclKind = parent === "enum" ? "enumerant" : parent === "interface" ? "method" : "field";
  const d = decl(kind, name, pos, st);
  d.ordinal = ord;
  if (kind === "field") {
    c.op(":"); d.type = parseExpr(c);
    if (c.isOp("=")) { c.i++; d.value = parseExpr(c); }
  } else if (kind === "method") {
    d.params = nameList(c, "bracket");
    d.methodParams = paramList(c);
    if (c.isOp("->")) { c.i++; d.methodResults = paramList(c); }
  }
  d.annotations = annotations(c);
  c.end();
  return d;
}

const KEYWORDS = new Set(["using", "const", "enum", "struct", "interface", "annotation"]);
const HAS_BLOCK = new Set<DeclKind>(["enum", "struct", "interface", "union", "group"]);

function statement(src: Source, st: Statement, parent: Decl): void {
  const c = new Cursor(src, st.tokens, st.pos);
  const first = c.peek();
  if (first === undefined) throw src.error(st.pos, "parse error: empty declaration");
  if (first.t === "op" && first.v === "@" && parent.kind === "file") {
    c.i++;
    const id = c.int();
    c.end();
    if (parent.uid !== undefined) throw src.error(first.pos, "File already has an ID.");
    if (id < 1n << 63n) throw src.error(first.pos, "Invalid ID.  Please generate a new one with 'capnpc -i'.");
    parent.uid = id;
    if (st.doc !== undefined) parent.doc = st.doc;
    return;
  }
  if (first.t === "op" && first.v === "$") {
    parent.annotations.push(...annotations(c));
    c.end();
    return;
  }
  let d: Decl;
  if (first.t === "ident" && first.v === "union" && st.tokens.length === 1) {
    d = decl("union", "", first.pos, st);
  } else if (first.t === "ident" && KEYWORDS.has(first.v) && c.peek(1)?.t === "ident") {
    d = keywordDecl(c, st, first.v);
  } else if (first.t === "ident") {
    d = memberDecl(c, st, parent.kind);
  } else {
    throw src.error(first.pos, `parse error: unexpected ${describe(first)}`);
  }
  if (st.block !== undefined) {
    if (!HAS_BLOCK.has(d.kind)) throw src.error(st.pos, `a ${d.kind} declaration takes no '{ … }' block`);
    for (const s of st.block) statement(src, s, d);
  } else if (HAS_BLOCK.has(d.kind)) {
    throw src.error(st.pos, `parse error: ${d.kind} '${d.name}' needs a '{ … }' block`);
  }
  parent.nested.push(d);
}

/** Parses a whole file; the file declaration must carry an explicit `@0x…;` id. */
export function parseFile(src: Source): Decl {
  const statements = new Lexer(src).lexFile();
  const file: Decl = { kind: "file", name: src.file, pos: 0, params: [], annotations: [], nested: [] };
  for (const st of statements) statement(src, st, file);
  if (file.uid === undefined) throw src.error(0, "File does not declare an ID.  Add a line like @0x<16 hex digits>; (generate one with `capnp id`).");
  return file;
}

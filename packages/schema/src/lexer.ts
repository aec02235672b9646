/**
 * The schema lexer: source text to statements (token lists ending in `;` or a `{ … }` block),
 * keeping doc comments the way capnp 0.9's lexer does (comment lines right after `;`, `{` or a
 * closing `}`). Errors carry file:line:col. Runs at build time.
 *
 * Grammar reference: capnproto c++/src/capnp/compiler/lexer.c++.
 *
 * @module
 */

export class SchemaError extends Error {
  override name = "SchemaError";
  constructor(readonly file: string, readonly line: number, readonly col: number, readonly reason: string) {
    super(`${file}:${line}:${col}: error: ${reason}`);
  }
}

/** Maps offsets in a source text to line:col for error messages. */
export class Source {
  private readonly lineStarts: number[] = [0];
  constructor(readonly file: string, readonly text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
  }
  error(offset: number, reason: string): SchemaError {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid; else hi = mid - 1;
    }
    return new SchemaError(this.file, lo + 1, offset - this.lineStarts[lo]! + 1, reason);
  }
}

export type Token =
  | { t: "ident"; v: string; pos: number }
  | { t: "int"; v: bigint; pos: number }
  | { t: "float"; v: number; pos: number }
  | { t: "string"; v: string; pos: number }
  | { t: "binary"; v: Uint8Array; pos: number }
  | { t: "op"; v: string; pos: number }
  | { t: "paren" | "bracket"; items: Token[][]; pos: number };

export interface Statement { tokens: Token[]; block?: Statement[]; doc?: string; pos: number }

const OP_CHARS = "!$%&*+-./:<=>?@^|~";
const isIdStart = (c: string): boolean => /[A-Za-z_]/.test(c);
const isIdChar = (c: string): boolean => /[A-Za-z0-9_]/.test(c);
const isDigit = (c: string): boolean => c >= "0" && c <= "9";
/**
 * An integer literal's value as capnp's lexer computes it: accumulated in a uint64, so a literal
 * of 2^64 or more wraps (capnp accepts `0x123456789abcde0f0` as 0x23456789abcde0f0); the range
 * check against the field's type comes after, on the wrapped value.
 */
const wrap64 = (v: bigint): bigint => BigInt.asUintN(64, v);
const ESCAPES: Record<string, string> = { a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v", "'": "'", '"': '"', "\\": "\\", "?": "?" };

export class Lexer {
  private i = 0;
  private readonly s: string;
  constructor(private readonly src: Source) { this.s = src.text; }

  /** The whole file as a statement sequence. */
  lexFile(): Statement[] {
    const out = this.statements();
    if (this.i < this.s.length) throw this.src.error(this.i, this.s[this.i] === "}" ? "unexpected '}'" : "parse error: expected ';' or '{'");
    return out;
  }

  private skipSpace(): void {
    for (;;) {
      const c = this.s[this.i];
      if (c === undefined) return;
      if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v" || c === "\ufeff") this.i++;
      else if (c === "#") { while (this.i < this.s.length && this.s[this.i] !== "\n") this.i++; }
      else return;
    }
  }

  private statements(): Statement[] {
    const out: Statement[] = [];
    for (;;) {
      this.skipSpace();
      const c = this.s[this.i];
      if (c === undefined || c === "}") return out;
      const pos = this.i;
      const tokens = this.tokenSequence();
      const end = this.s[this.i];
      if (end === ";") {
        this.i++;
        const doc = this.docComment();
        out.push(doc === undefined ? { tokens, pos } : { tokens, pos, doc });
      } else if (end === "{") {
        this.i++;
        const doc = this.docComment();
        const block = this.statements();
        if (this.s[this.i] !== "}") throw this.src.error(this.i, "parse error: expected '}'");
        this.i++;
        const late = this.docComment();
        const d = doc ?? late;
        out.push(d === undefined ? { tokens, block, pos } : { tokens, block, pos, doc: d });
      } else {
        throw this.src.error(this.i, end === undefined ? "parse error: unexpected end of file (missing ';'?)" : `parse error: unexpected '${end}'`);
      }
    }
  }

  /** Comment lines directly after `;`, `{` or `}` (same line, or starting on the next line). */
  private docComment(): string | undefined {
    const start = this.i;
    const lineWs = (): void => { while (this.s[this.i] === " " || this.s[this.i] === "\t" || this.s[this.i] === "\f" || this.s[this.i] === "\v") this.i++; };
    lineWs();
    if (this.s[this.i] === "\n") this.i++;
    else if (this.s[this.i] === "\r") { this.i++; if (this.s[this.i] === "\n") this.i++; }
    const lines: string[] = [];
    for (;;) {
      const save = this.i;
      lineWs();
      if (this.s[this.i] !== "#") { this.i = save; break; }
      this.i++;
      if (this.s[this.i] === " ") this.i++;
      const e = this.s.indexOf("\n", this.i);
      const end = e < 0 ? this.s.length : e;
      lines.push(this.s.slice(this.i, end));
      this.i = e < 0 ? end : end + 1;
    }
    if (lines.length === 0) { this.i = start; return undefined; }
    return lines.map((l) => l + "\n").join("");
  }

  private tokenSequence(): Token[] {
    const out: Token[] = [];
    for (;;) {
      this.skipSpace();
      const t = this.token();
      if (t === undefined) return out;
      out.push(t);
    }
  }

  private token(): Token | undefined {
    const pos = this.i;
    const c = this.s[pos];
    if (c === undefined) return undefined;
    if (c === "0" && this.s[pos + 1] === "x" && this.s[pos + 2] === '"') return this.binary(pos);
    if (isIdStart(c)) {
      while (isIdChar(this.s[this.i] ?? "")) this.i++;
      return { t: "ident", v: this.s.slice(pos, this.i), pos };
    }
    if (c === '"') return { t: "string", v: this.string(), pos };
    if (isDigit(c)) return this.number(pos);
    if (OP_CHARS.includes(c)) {
      while (OP_CHARS.includes(this.s[this.i] ?? "\0")) this.i++;
      return { t: "op", v: this.s.slice(pos, this.i), pos };
    }
    if (c === "(" || c === "[") {
      this.i++;
      const items = this.commaList(c === "(" ? ")" : "]");
      return { t: c === "(" ? "paren" : "bracket", items, pos };
    }
    if (c === "\0" || c === "\xff" || c === "\xfe") throw this.src.error(pos, "Non-UTF-8 input detected. Cap'n Proto schema files must be UTF-8 text.");
    return undefined;
  }

  private commaList(close: string): Token[][] {
    const items: Token[][] = [];
    for (;;) {
      items.push(this.tokenSequence());
      const c = this.s[this.i];
      if (c === ",") { this.i++; continue; }
      if (c === close) { this.i++; break; }
      throw this.src.error(this.i, c === undefined ? `parse error: missing '${close}'` : `parse error: expected ',' or '${close}', got '${c}'`);
    }
    if (items.length === 1 && items[0]!.length === 0) return [];
    if (items.length > 1 && items[items.length - 1]!.length === 0) items.pop();
    return items;
  }

  private number(pos: number): Token {
    const s = this.s;
    if (s[pos] === "0" && (s[pos + 1] === "x" || s[pos + 1] === "X")) {
      this.i = pos + 2;
      while (/[0-9a-fA-F]/.test(s[this.i] ?? "")) this.i++;
      if (this.i === pos + 2) throw this.src.error(pos, "invalid hex literal");
      return { t: "int", v: wrap64(BigInt(s.slice(pos, this.i))), pos };
    }
    if (s[pos] === "0" && isDigit(s[pos + 1] ?? "")) {
      // Octal, as capnp: the literal ends at the first non-octal digit.
      this.i = pos + 1;
      while (/[0-7]/.test(s[this.i] ?? "")) this.i++;
      return { t: "int", v: wrap64(BigInt("0o" + (s.slice(pos + 1, this.i) || "0"))), pos };
    }
    while (isDigit(s[this.i] ?? "")) this.i++;
    let isFloat = false;
    if (s[this.i] === "." && isDigit(s[this.i + 1] ?? "")) {
      isFloat = true;
      this.i++;
      while (isDigit(s[this.i] ?? "")) this.i++;
    }
    if ((s[this.i] === "e" || s[this.i] === "E") && /[0-9+-]/.test(s[this.i + 1] ?? "")) {
      isFloat = true;
      this.i += 2;
      while (isDigit(s[this.i] ?? "")) this.i++;
    }
    const text = s.slice(pos, this.i);
    if (isFloat) return { t: "float", v: Number(text), pos };
    return { t: "int", v: wrap64(BigInt(text)), pos };
  }

  private string(): string {
    const start = this.i;
    this.i++;
    const bytes: number[] = [];
    for (;;) {
      const c = this.s[this.i];
      if (c === undefined || c === "\n") throw this.src.error(start, "unterminated string literal");
      this.i++;
      if (c === '"') break;
      if (c !== "\\") { for (const b of Buffer.from(c, "utf8")) bytes.push(b); continue; }
      const e = this.s[this.i++] ?? "";
      if (e in ESCAPES) bytes.push(ESCAPES[e]!.charCodeAt(0));
      else if (e === "x") {
        // Exactly two hex digits, as capnp's lexer: "\x4" is a parse error there, not byte 4.
        const m = /^[0-9a-fA-F]{2}/.exec(this.s.slice(this.i, this.i + 2));
        if (m === null) throw this.src.error(this.i, "invalid \\x escape (two hex digits expected)");
        bytes.push(parseInt(m[0], 16));
        this.i += m[0].length;
      } else if (/[0-7]/.test(e)) {
        const m = /^[0-7]{0,2}/.exec(this.s.slice(this.i))![0];
        bytes.push(parseInt(e + m, 8) & 0xff);
        this.i += m.length;
      } else throw this.src.error(this.i - 2, `invalid escape '\\${e}'`);
    }
    return Buffer.from(bytes).toString("utf8");
  }

  private binary(pos: number): Token {
    this.i = pos + 3;
    const out: number[] = [];
    for (;;) {
      while (/\s/.test(this.s[this.i] ?? "")) this.i++;
      const c = this.s[this.i];
      if (c === '"') { this.i++; break; }
      const m = /^[0-9a-fA-F]{2}/.exec(this.s.slice(this.i, this.i + 2));
      if (m === null) throw this.src.error(this.i, "invalid binary literal (expected hex byte pairs)");
      out.push(parseInt(m[0], 16));
      this.i += 2;
    }
    return { t: "binary", v: Uint8Array.from(out), pos };
  }
}

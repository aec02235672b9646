/**
 * A seeded generator of random, valid schemas for the oracle test: structs whose fields, unions,
 * groups and unions inside groups get shuffled ordinals and mixed sizes (to exercise the layout's
 * hole filling and union growth), defaults of every kind, enums with shuffled ordinals, generic
 * structs, interfaces with default parameters, consts and annotations. Test-only.
 */

/**
 * The seed of the randomised schema tests: SCHEMA_SEED if set; else a fixed one under CI=true (a
 * CI verdict must be reproducible, and a seed that finds a bug becomes a test case), else a new
 * one per run (local runs keep exploring; the seed is printed).
 */
export function schemaSeed(): number {
  const given = process.env["SCHEMA_SEED"];
  if (given !== undefined && given !== "") return Number(given);
  if (process.env["CI"] === "true") return 1132959456;
  return Date.now() % 2 ** 31;
}

/** mulberry32: a small deterministic PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface StructInfo { name: string; scalars: { name: string; type: string }[] }

const SCALARS = ["Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64"];
const RANGES: Record<string, [bigint, bigint]> = {
  Int8: [-128n, 127n], Int16: [-32768n, 32767n], Int32: [-(2n ** 31n), 2n ** 31n - 1n], Int64: [-(2n ** 63n), 2n ** 63n - 1n],
  UInt8: [0n, 255n], UInt16: [0n, 65535n], UInt32: [0n, 2n ** 32n - 1n], UInt64: [0n, 2n ** 64n - 1n],
};

class Gen {
  private slots: { text: string; ord?: true }[] = [];
  readonly structs: StructInfo[] = [];
  readonly enums: { name: string; values: string[] }[] = [];
  private nameCount = 0;

  constructor(private readonly r: () => number) {}

  int(n: number): number { return Math.floor(this.r() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  chance(p: number): boolean { return this.r() < p; }
  name(prefix: string): string { return `${prefix}${this.nameCount++}`; }

  scalarValue(type: string): string {
    if (type === "Bool") return this.chance(0.5) ? "true" : "false";
    if (type === "Float32" || type === "Float64") return this.pick(["1.5", "-0.25", "3", "1e10", "-inf", "inf", "nan", "0.1", "-7"]);
    const [lo, hi] = RANGES[type]!;
    const span = hi - lo;
    const v = this.pick([lo, hi, 0n, 1n, lo + (span * BigInt(this.int(1000))) / 1000n]);
    return this.chance(0.2) && v >= 0n ? `0x${v.toString(16)}` : v.toString();
  }

  /** A type expression and, sometimes, a default value for it. */
  fieldType(depth: number): { type: string; dflt?: string } {
    const k = this.int(10);
    if (k < 5) {
      const t = this.pick(SCALARS);
      return this.chance(0.4) ? { type: t, dflt: this.scalarValue(t) } : { type: t };
    }
    if (k === 5) return this.chance(0.5) ? { type: "Text", dflt: JSON.stringify(this.name("t")) } : { type: this.pick(["Text", "Data", "Void", "AnyPointer"]) };
    if (k === 6 && this.enums.length > 0) {
      const e = this.pick(this.enums);
      return this.chance(0.5) ? { type: e.name, dflt: this.pick(e.values) } : { type: e.name };
    }
    if (k === 7 && this.structs.length > 0) {
      const s = this.pick(this.structs);
      if (this.chance(0.5) && s.scalars.length > 0) {
        const f = this.pick(s.scalars);
        return { type: s.name, dflt: `(${f.name} = ${this.scalarValue(f.type)})` };
      }
      return { type: s.name };
    }
    if (k === 8 && depth < 2) {
      const inner = this.fieldType(depth + 1);
      if (inner.type === "AnyPointer" || inner.type === "Void") return { type: "List(Int32)", dflt: "[1, -2, 3]" };
      const dflt = inner.dflt !== undefined && this.chance(0.5) ? `[${inner.dflt}, ${inner.dflt}]` : undefined;
      return dflt === undefined ? { type: `List(${inner.type})` } : { type: `List(${inner.type})`, dflt };
    }
    if (k === 9 && this.structs.length > 0 && depth === 0) {
      const arg = this.pick(["Text", "Data", this.pick(this.structs).name]);
      return this.chance(0.5) ? { type: `Box(${arg})` } : { type: `Tri(Text, ${arg}, ${arg})` };
    }
    return { type: this.pick(SCALARS) };
  }

  /** Emits a field declaration with an ordinal placeholder; returns its line. */
  field(indent: string, scalars: StructInfo["scalars"] | undefined): string {
    const name = this.name("f");
    const t = this.fieldType(0);
    if (scalars !== undefined && SCALARS.includes(t.type)) scalars.push({ name, type: t.type });
    const ann = this.annotation();
    const doc = this.chance(0.2) ? `  # doc of ${name}` : "";
    this.slots.push({ text: "", ord: true });
    return `${indent}${name} @ORD${this.slots.length - 1} :${t.type}${t.dflt !== undefined ? ` = ${t.dflt}` : ""}${ann};${doc}`;
  }

  /** Zero or more annotation applications with values of several types. */
  annotation(): string {
    let out = "";
    while (this.chance(0.2)) {
      out += this.pick([
        () => ` $ann(${this.int(100)})`,
        () => ` $annText(${JSON.stringify(this.name("a"))})`,
        () => ` $annList([${this.int(9)}, ${this.int(9)}])`,
        () => ` $annStruct((x = ${this.int(50)}, y = ${JSON.stringify(this.name("y"))}, l = [${this.scalarValue("Float64")}]))`,
        () => " $annVoid",
      ])();
    }
    return out;
  }

  doc(what: string): string {
    return this.chance(0.3) ? `  # ${what} doc ${this.int(1000)}` : "";
  }

  union(indent: string, named: boolean, depth: number): string[] {
    const lines = [named ? `${indent}${this.name("u")} :union${this.annotation()} {${this.doc("union")}` : `${indent}union {`];
    const n = 2 + this.int(3);
    for (let i = 0; i < n; i++) {
      if (depth < 2 && this.chance(0.25)) lines.push(...this.group(indent + "  ", depth + 1));
      else lines.push(this.field(indent + "  ", undefined));
    }
    lines.push(`${indent}}`);
    return lines;
  }

  group(indent: string, depth: number): string[] {
    const lines = [`${indent}${this.name("g")} :group${this.annotation()} {${this.doc("group")}`];
    const n = 1 + this.int(3);
    for (let i = 0; i < n; i++) lines.push(this.field(indent + "  ", undefined));
    if (depth < 2 && this.chance(0.4)) lines.push(...this.union(indent + "  ", false, depth + 1));
    else if (depth < 2 && this.chance(0.3)) lines.push(...this.union(indent + "  ", true, depth + 1));
    lines.push(`${indent}}`);
    return lines;
  }

  struct(): string[] {
    const info: StructInfo = { name: this.name("S"), scalars: [] };
    const lines = [`struct ${info.name}${this.annotation()} {${this.doc("struct")}`];
    if (this.chance(0.3)) {
      // A nested declaration, used through its qualified name by later fields.
      const nested = this.name("N");
      lines.push(`  struct ${nested} {`, `    v @0 :Int32 = ${this.int(100)};`, "  }");
      lines.push(`  const ${this.name("k")} :${nested} = (v = ${this.int(100)});`);
    }
    let hasUnnamed = false;
    const n = 1 + this.int(8);
    for (let i = 0; i < n; i++) {
      const k = this.int(10);
      if (k < 6) lines.push(this.field("  ", info.scalars));
      else if (k === 6 && !hasUnnamed) { hasUnnamed = true; lines.push(...this.union("  ", false, 0)); }
      else if (k === 7) lines.push(...this.union("  ", true, 0));
      else lines.push(...this.group("  ", 0));
    }
    lines.push("}");
    this.structs.push(info);
    return lines;
  }

  enumDecl(): string[] {
    const name = this.name("E");
    const n = 1 + this.int(5);
    const values = Array.from({ length: n }, () => this.name("e"));
    const ords = this.shuffle([...Array(n).keys()]);
    this.enums.push({ name, values });
    return [`enum ${name}${this.annotation()} {`, ...values.map((v, i) => `  ${v} @${ords[i]!}${this.annotation()};${this.doc("enumerant")}`), "}"];
  }

  iface(): string[] {
    const name = this.name("I");
    const n = 1 + this.int(4);
    const ords = this.shuffle([...Array(n).keys()]);
    const generic = this.chance(0.3);
    const lines = [`interface ${name}${generic ? "(Q)" : ""}${this.annotation()} {${this.doc("interface")}`];
    for (let i = 0; i < n; i++) {
      const implicit = this.chance(0.2);
      const params = Array.from({ length: this.int(4) }, () => {
        const t = this.fieldType(1);
        return `${this.name("p")} :${t.type}${t.dflt !== undefined ? ` = ${t.dflt}` : ""}${this.annotation()}`;
      });
      if (implicit) params.push(`${this.name("p")} :M`);
      if (generic) params.push(`${this.name("p")} :Q`);
      const results = Array.from({ length: this.int(3) }, () => `${this.name("r")} :${this.fieldType(1).type}`);
      if (implicit) results.push(`${this.name("r")} :Box(M)`);
      const m = `${this.name("m")} @${ords[i]!}${implicit ? " [M]" : ""}`;
      lines.push(`  ${m} (${params.join(", ")}) -> (${results.join(", ")})${this.annotation()};${this.doc("method")}`);
    }
    lines.push("}");
    return lines;
  }

  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }

  /** Replaces the ordinal placeholders of one struct with a random permutation of 0..n-1. */
  assignOrdinals(lines: string[]): string[] {
    const found = lines.join("\n").match(/@ORD\d+/g) ?? [];
    const ords = this.shuffle([...found.keys()]);
    let text = lines.join("\n");
    found.forEach((ph, i) => { text = text.replace(new RegExp(`${ph}(?!\\d)`), `@${ords[i]!}`); });
    return text.split("\n");
  }

  file(id: bigint): string {
    const out = [
      `@0x${id.toString(16)};`, "", "annotation ann(*) :Int32;", "annotation annText(*) :Text;", "annotation annList(*) :List(UInt8);",
      "annotation annStruct(*) :AnnValue;", "annotation annVoid(*) :Void;", "struct AnnValue {", "  x @0 :Int16 = 7;", "  y @1 :Text;", "  l @2 :List(Float64);", "}",
      "struct Box(T) {", "  value @0 :T;", "}", "struct Tri(A, B, C) {", "  c @0 :List(C);", "  b @1 :B;", "}", "",
    ];
    const parts = 2 + this.int(6);
    for (let i = 0; i < parts; i++) {
      const k = this.int(10);
      if (k < 6) out.push(...this.assignOrdinals(this.struct()));
      else if (k < 8) out.push(...this.enumDecl());
      else if (k < 9) out.push(...this.iface());
      else if (this.chance(0.5) || this.structs.length === 0) {
        const t = this.pick(SCALARS);
        out.push(`const ${this.name("c")} :${t} = ${this.scalarValue(t)};${this.doc("const")}`);
      } else {
        const t = this.fieldType(0);
        if (t.dflt !== undefined && !t.type.startsWith("Box")) out.push(`const ${this.name("c")} :${t.type} = ${t.dflt};`);
      }
      out.push("");
    }
    return out.join("\n");
  }
}

/** One random schema file's text, deterministic in `seed`. */
export function randomSchema(seed: number): string {
  const r = rng(seed);
  const id = (1n << 63n) | (BigInt(Math.floor(r() * 2 ** 31)) << 16n) | BigInt(seed & 0xffff);
  return new Gen(r).file(id);
}

/**
 * Struct translation: walks a struct's (or a method's parameter list's) members, creates group and
 * union nodes, then allocates every field in ordinal order through layout.ts and fills in the
 * `Field` objects, discriminants, group ids and source info the way capnp's StructTranslator does.
 * Runs at build time.
 *
 * Reference: capnproto c++/src/capnp/compiler/node-translator.c++ (StructTranslator).
 *
 * @module
 */
import type { AnnotationApp, Decl, Expr, MethodParam } from "./ast.js";
import type { Obj } from "./dynamic.js";
import { groupId } from "./ids.js";
import { Group, Issue344Error, Top, Union, type FieldScope } from "./layout.js";

/** What the struct translator needs from its node translator. */
export interface StructHost {
  fail(pos: number, msg: string): never;
  compileType(e: Expr, implicit: { scopeId: bigint; names: readonly string[] }): Obj;
  /** Fills `target` (a Value) with `expr` compiled as `type`; `isParam` allows `null` defaults. */
  compileDefault(expr: Expr, type: Obj, target: Obj, isParam: boolean): void;
  compileAnnotations(anns: AnnotationApp[], flag: string): Obj[] | undefined;
  /** Registers a new group node (and its source info) with the node translator. */
  addGroup(node: Obj, sourceInfo: Obj): void;
}

const LG_SIZE: Record<string, number> = {
  void: -1, bool: 0, int8: 3, uint8: 3, int16: 4, uint16: 4, enum: 4, int32: 5, uint32: 5, float32: 5,
  int64: 6, uint64: 6, float64: 6,
};

export function defaultDefault(type: Obj): Obj {
  const k = Object.keys(type)[0]!;
  switch (k) {
    case "void": case "interface": return { [k]: null };
    case "bool": return { bool: false };
    case "int64": case "uint64": return { [k]: 0n };
    case "text": case "data": case "struct": case "list": case "anyPointer": return { [k]: null };
    default: return { [k]: 0 };
  }
}

class Member {
  index = 0;
  childCount = 0;
  childInitialized = 0;
  unionDiscriminantCount = 0;
  schema: Obj | undefined;
  fieldScope: FieldScope | undefined;
  unionScope: Union | undefined;
  isParam = false;
  type: Expr | undefined;
  dflt: Expr | undefined;
  fields: Obj[] = [];
  members: Obj[] = [];

  constructor(
    readonly parent: Member | undefined, readonly codeOrder: number, readonly isInUnion: boolean,
    readonly name: string, readonly kind: "field" | "union" | "group" | "root",
    readonly node: Obj | undefined, readonly sourceInfo: Obj | undefined,
    readonly ordinal: { value: number; pos: number } | undefined,
    readonly annotations: AnnotationApp[], readonly doc: string | undefined, readonly pos: number,
  ) {}

  getSchema(): Obj {
    if (this.schema !== undefined) return this.schema;
    const p = this.parent!;
    this.index = p.childInitialized;
    const [field, si] = p.addMemberSchema();
    if (this.isInUnion) field["discriminantValue"] = p.unionDiscriminantCount++;
    field["name"] = this.name;
    field["codeOrder"] = this.codeOrder;
    if (this.doc !== undefined) si["docComment"] = this.doc;
    this.schema = field;
    return field;
  }

  addMemberSchema(): [Obj, Obj] {
    const st = this.node!["struct"] as Obj;
    if (st["fields"] === undefined) {
      if (this.parent !== undefined) this.getSchema();
      this.fields = Array.from({ length: this.childCount }, () => ({}));
      this.members = Array.from({ length: this.childCount }, () => ({}));
      st["fields"] = this.fields;
      this.sourceInfo!["members"] = this.members;
    }
    const i = this.childInitialized++;
    return [this.fields[i]!, this.members[i]!];
  }

  finishGroup(): void {
    const st = this.node!["struct"] as Obj;
    if (this.unionScope !== undefined) {
      this.unionScope.addDiscriminant();
      st["discriminantCount"] = this.unionDiscriminantCount;
      st["discriminantOffset"] = this.unionScope.discriminantOffset;
    }
    if (this.parent !== undefined) {
      const parentId = this.parent.node!["id"] as bigint;
      const id = groupId(parentId, this.index);
      this.node!["id"] = id;
      this.node!["scopeId"] = parentId;
      this.getSchema()["group"] = { typeId: id };
      this.sourceInfo!["id"] = id;
      if (this.doc !== undefined) this.sourceInfo!["docComment"] = this.doc;
    }
  }
}

export class StructTranslator {
  private readonly top = new Top();
  private readonly byOrdinal: [number, Member][] = [];
  private readonly all: Member[] = [];

  constructor(private readonly host: StructHost, private readonly implicit: { scopeId: bigint; names: readonly string[] }) {}

  /** A struct declaration's members. */
  translate(members: Decl[], node: Obj, sourceInfo: Obj): void {
    const root = new Member(undefined, 0, false, "", "root", node, sourceInfo, undefined, [], undefined, 0);
    this.traverseTopOrGroup(members, root, this.top);
    this.finish(root, node);
  }

  /** A method's named parameter list. */
  translateParams(params: MethodParam[], node: Obj, sourceInfo: Obj): void {
    const root = new Member(undefined, 0, false, "", "root", node, sourceInfo, undefined, [], undefined, 0);
    params.forEach((p, i) => {
      root.childCount++;
      const m = new Member(root, i, false, p.name, "field", undefined, undefined, undefined, p.annotations, undefined, p.pos);
      m.isParam = true;
      m.fieldScope = this.top;
      m.type = p.type;
      m.dflt = p.dflt;
      this.all.push(m);
      this.byOrdinal.push([i, m]);
    });
    this.finish(root, node);
  }

  private newGroupNode(parent: Obj, name: string): [Obj, Obj] {
    const displayName = `${parent["displayName"] as string}.${name}`;
    const node: Obj = {
      displayName, displayNamePrefixLength: displayName.length - name.length,
      isGeneric: parent["isGeneric"], struct: { isGroup: true, discriminantCount: 0, discriminantOffset: 0 },
    };
    const si: Obj = {};
    this.host.addGroup(node, si);
    return [node, si];
  }

  private fieldMember(parent: Member, codeOrder: number, d: Decl, scope: FieldScope, inUnion: boolean): Member {
    const m = new Member(parent, codeOrder, inUnion, d.name, "field", undefined, undefined, d.ordinal, d.annotations, d.doc, d.pos);
    m.fieldScope = scope;
    m.type = d.type;
    m.dflt = d.value;
    return m;
  }

  private nodeMember(parent: Member, codeOrder: number, d: Decl, inUnion: boolean): Member {
    const [node, si] = this.newGroupNode(parent.node!, d.name);
    return new Member(parent, codeOrder, inUnion, d.name, d.kind as "union" | "group", node, si, d.ordinal, d.annotations, d.doc, d.pos);
  }

  private traverseUnion(d: Decl, parent: Member, layout: Union, codeOrder: { n: number }): void {
    if (d.nested.filter((x) => x.kind === "field" || x.kind === "union" || x.kind === "group").length < 2) this.host.fail(d.pos, "Union must have at least two members.");
    for (const m of d.nested) {
      let info: Member | undefined;
      let ordinal: number | undefined;
      if (m.kind === "field") {
        parent.childCount++;
        info = this.fieldMember(parent, codeOrder.n++, m, new Group(layout), true);
        ordinal = m.ordinal!.value;
      } else if (m.kind === "union") {
        if (m.name === "") this.host.fail(m.pos, "Unions cannot contain unnamed unions.");
        parent.childCount++;
        const unionLayout = new Union(new Group(layout));
        info = this.nodeMember(parent, codeOrder.n++, m, true);
        this.all.push(info);
        info.unionScope = unionLayout;
        this.traverseUnion(m, info, unionLayout, { n: 0 });
        ordinal = m.ordinal?.value;
        if (ordinal !== undefined) this.byOrdinal.push([ordinal, info]);
        continue;
      } else if (m.kind === "group") {
        parent.childCount++;
        info = this.nodeMember(parent, codeOrder.n++, m, true);
        this.all.push(info);
        this.traverseGroup(m, info, new Group(layout));
        continue;
      } else continue;
      this.all.push(info);
      this.byOrdinal.push([ordinal, info]);
    }
  }

  private traverseGroup(d: Decl, parent: Member, layout: FieldScope): void {
    if (d.nested.filter((x) => x.kind === "field" || x.kind === "union" || x.kind === "group").length < 1) this.host.fail(d.pos, "Group must have at least one member.");
    this.traverseTopOrGroup(d.nested, parent, layout);
  }

  private traverseTopOrGroup(members: Decl[], parent: Member, layout: FieldScope): void {
    const codeOrder = { n: 0 };
    for (const m of members) {
      if (m.kind === "field") {
        parent.childCount++;
        const info = this.fieldMember(parent, codeOrder.n++, m, layout, false);
        this.all.push(info);
        this.byOrdinal.push([m.ordinal!.value, info]);
      } else if (m.kind === "union") {
        const unionLayout = new Union(layout);
        let info: Member;
        let sub = { n: 0 };
        if (m.name === "") {
          if (parent.unionScope !== undefined) this.host.fail(m.pos, "An unnamed union is already defined in this scope.");
          info = parent;
          sub = codeOrder;
        } else {
          parent.childCount++;
          info = this.nodeMember(parent, codeOrder.n++, m, false);
          this.all.push(info);
        }
        info.unionScope = unionLayout;
        this.traverseUnion(m, info, unionLayout, sub);
        if (m.ordinal !== undefined) this.byOrdinal.push([m.ordinal.value, info]);
      } else if (m.kind === "group") {
        parent.childCount++;
        const info = this.nodeMember(parent, codeOrder.n++, m, false);
        this.all.push(info);
        this.traverseGroup(m, info, layout);
      }
    }
  }

  private finish(root: Member, node: Obj): void {
    const sorted = this.byOrdinal.map((e, i) => [e[0], i, e[1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let expected = 0;
    for (const [ord, , m] of sorted) {
      if (m.ordinal !== undefined) {
        if (ord < expected) this.host.fail(m.ordinal.pos, "Duplicate ordinal number.");
        if (ord > expected) this.host.fail(m.ordinal.pos, `Skipped ordinal @${expected}.  Ordinals must be sequential with no holes.`);
        expected = ord + 1;
      }
      const field = m.getSchema();
      field["ordinal"] = { explicit: ord };
      if (m.kind === "union") {
        if (!m.unionScope!.addDiscriminant()) this.host.fail(m.ordinal!.pos, "Union ordinal, if specified, must be greater than no more than one of its member ordinals (i.e. there can only be one field retroactively unionized).");
        continue;
      }
      try {
        this.allocateField(m, field);
      } catch (e) {
        if (e instanceof Issue344Error) this.host.fail(m.pos, e.message);
        throw e;
      }
    }
    root.finishGroup();
    for (const m of this.all) {
      let flag = "targetsParam";
      if (!m.isParam) {
        if (m.kind === "union" || m.kind === "group") m.finishGroup();
        flag = m.kind === "union" ? "targetsUnion" : m.kind === "group" ? "targetsGroup" : "targetsField";
      }
      const anns = this.host.compileAnnotations(m.annotations, flag);
      if (anns !== undefined) m.getSchema()["annotations"] = anns;
    }
    const st = node["struct"] as Obj;
    st["dataWordCount"] = this.top.dataWordCount;
    st["pointerCount"] = this.top.pointerCount;
    st["preferredListEncoding"] = 7;
  }

  private allocateField(m: Member, field: Obj): void {
    const type = this.host.compileType(m.type!, this.implicit);
    const slot: Obj = { type, defaultValue: defaultDefault(type) };
    field["slot"] = slot;
    if (m.dflt !== undefined) {
      const isNull = m.isParam && m.dflt.k === "rel" && m.dflt.name === "null";
      if (isNull) {
        if (LG_SIZE[Object.keys(type)[0]!] !== undefined) this.host.fail(m.dflt.pos, "Only pointer parameters can declare their default as 'null'.");
      } else {
        this.host.compileDefault(m.dflt, type, slot["defaultValue"] as Obj, m.isParam);
      }
      slot["hadExplicitDefault"] = true;
    }
    const lg = LG_SIZE[Object.keys(type)[0]!];
    const scope = m.fieldScope!;
    if (lg === undefined) slot["offset"] = scope.addPointer();
    else if (lg === -1) { scope.addVoid(); slot["offset"] = 0; } else slot["offset"] = scope.addData(lg);
  }
}

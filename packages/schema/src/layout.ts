/**
 * Struct layout, allocated the way capnp does so offsets match bit for bit: a hole set per struct
 * (fields fill the smallest free hole, splitting larger ones), unions that share data locations
 * between their members and grow them in place, and a 16-bit discriminant added when a union gets
 * its second member. Fields are allocated in ordinal order by the caller. Runs at build time.
 *
 * Algorithm reference: capnproto c++/src/capnp/compiler/node-translator.c++ (StructLayout).
 *
 * @module
 */

const HOLE_SLOTS = 6;

/**
 * capnp 0.5 and earlier laid out some union expansions wrongly; capnp since refuses those schemas
 * (capnproto issue 344) and so do we, rather than produce a layout capnp would not.
 */
export class Issue344Error extends Error {
  override name = "Issue344Error";
  constructor() {
    super("Bad news: Cap'n Proto 0.5.x and previous contained a bug which would cause this schema to be compiled incorrectly. Please see: https://github.com/sandstorm-io/capnproto/issues/344");
  }
}

/** Free holes by size: holes[lg] is the offset (in units of 2^lg bits) of a free hole, or 0. */
class HoleSet {
  holes: number[] = [0, 0, 0, 0, 0, 0];

  tryAllocate(lg: number): number | undefined {
    if (lg >= HOLE_SLOTS) return undefined;
    if (this.holes[lg] !== 0) { const r = this.holes[lg]!; this.holes[lg] = 0; return r; }
    const next = this.tryAllocate(lg + 1);
    if (next === undefined) return undefined;
    const r = next * 2;
    this.holes[lg] = r + 1;
    return r;
  }

  addHolesAtEnd(lg: number, offset: number, limit = HOLE_SLOTS): void {
    while (lg < limit) {
      this.holes[lg] = offset;
      ++lg;
      offset = (offset + 1) >> 1;
    }
  }

  tryExpand(oldLg: number, oldOffset: number, factor: number): boolean {
    if (factor === 0) return true;
    if (oldLg === HOLE_SLOTS) return false;
    if (this.holes[oldLg] !== oldOffset + 1) return false;
    if (this.tryExpand(oldLg + 1, oldOffset >> 1, factor - 1)) { this.holes[oldLg] = 0; return true; }
    return false;
  }

  smallestAtLeast(size: number): number | undefined {
    for (let i = size; i < HOLE_SLOTS; i++) if (this.holes[i] !== 0) return i;
    return undefined;
  }
}

export interface FieldScope {
  addVoid(): void;
  /** Offset in units of 2^lg bits. */
  addData(lg: number): number;
  addPointer(): number;
  tryExpandData(oldLg: number, oldOffset: number, factor: number): boolean;
}

export class Top implements FieldScope {
  dataWordCount = 0;
  pointerCount = 0;
  private readonly holes = new HoleSet();
  addVoid(): void {}
  addData(lg: number): number {
    const hole = this.holes.tryAllocate(lg);
    if (hole !== undefined) return hole;
    const offset = this.dataWordCount++ << (6 - lg);
    this.holes.addHolesAtEnd(lg, offset + 1);
    return offset;
  }
  addPointer(): number { return this.pointerCount++; }
  tryExpandData(oldLg: number, oldOffset: number, factor: number): boolean {
    return this.holes.tryExpand(oldLg, oldOffset, factor);
  }
}

interface DataLocation { lg: number; offset: number }

export class Union {
  groupCount = 0;
  discriminantOffset: number | undefined;
  readonly dataLocations: DataLocation[] = [];
  readonly pointerLocations: number[] = [];
  constructor(readonly parent: FieldScope) {}

  tryExpandTo(loc: DataLocation, newLg: number): boolean {
    if (newLg <= loc.lg) return true;
    if (!this.parent.tryExpandData(loc.lg, loc.offset, newLg - loc.lg)) return false;
    loc.offset >>= newLg - loc.lg;
    loc.lg = newLg;
    return true;
  }
  addNewDataLocation(lg: number): number {
    const offset = this.parent.addData(lg);
    this.dataLocations.push({ lg, offset });
    return offset;
  }
  addNewPointerLocation(): number {
    const p = this.parent.addPointer();
    this.pointerLocations.push(p);
    return p;
  }
  newGroupAddingFirstMember(): void {
    if (++this.groupCount === 2) this.addDiscriminant();
  }
  addDiscriminant(): boolean {
    if (this.discriminantOffset !== undefined) return false;
    this.discriminantOffset = this.parent.addData(4);
    return true;
  }
}

/** How one union member uses one of the union's data locations. */
class Usage {
  isUsed = false;
  lgUsed = 0;
  readonly holes = new HoleSet();
  constructor(lg?: number) { if (lg !== undefined) { this.isUsed = true; this.lgUsed = lg; } }

  smallestHoleAtLeast(loc: DataLocation, lg: number): number | undefined {
    if (!this.isUsed) return lg <= loc.lg ? loc.lg : undefined;
    if (lg >= this.lgUsed) return lg < loc.lg ? lg : undefined;
    const r = this.holes.smallestAtLeast(lg);
    if (r !== undefined) return r;
    return this.lgUsed < loc.lg ? this.lgUsed : undefined;
  }

  allocateFromHole(loc: DataLocation, lg: number): number {
    let result: number;
    if (!this.isUsed) {
      result = 0;
      this.isUsed = true;
      this.lgUsed = lg;
    } else if (lg >= this.lgUsed) {
      this.holes.addHolesAtEnd(this.lgUsed, 1, lg);
      this.lgUsed = lg + 1;
      result = 1;
    } else {
      const hole = this.holes.tryAllocate(lg);
      if (hole !== undefined) result = hole;
      else {
        result = 1 << (this.lgUsed - lg);
        this.holes.addHolesAtEnd(lg, result + 1, this.lgUsed);
        this.lgUsed += 1;
      }
    }
    return (loc.offset << (loc.lg - lg)) + result;
  }

  tryAllocateByExpanding(u: Union, loc: DataLocation, lg: number): number | undefined {
    if (!this.isUsed) {
      if (!u.tryExpandTo(loc, lg)) return undefined;
      this.isUsed = true;
      this.lgUsed = lg;
      return loc.offset << (loc.lg - lg);
    }
    const newSize = Math.max(this.lgUsed, lg) + 1;
    if (!this.tryExpandUsage(u, loc, newSize, true)) return undefined;
    const r = this.holes.tryAllocate(lg)!;
    return (loc.offset << (loc.lg - lg)) + r;
  }

  tryExpand(u: Union, loc: DataLocation, oldLg: number, oldOffset: number, factor: number): boolean {
    if (oldOffset === 0 && this.lgUsed === oldLg) return this.tryExpandUsage(u, loc, oldLg + factor, false);
    return this.holes.tryExpand(oldLg, oldOffset, factor);
  }

  private tryExpandUsage(u: Union, loc: DataLocation, desired: number, newHoles: boolean): boolean {
    if (desired > loc.lg && !u.tryExpandTo(loc, desired)) return false;
    if (newHoles) this.holes.addHolesAtEnd(this.lgUsed, 1, desired);
    else throw new Issue344Error();
    this.lgUsed = desired;
    return true;
  }
}

/** A union member (a field's singleton group, or a group) laid out inside its union. */
export class Group implements FieldScope {
  private readonly usage: Usage[] = [];
  private pointerUsage = 0;
  private hasMembers = false;
  constructor(readonly parent: Union) {}

  private addMember(): void {
    if (!this.hasMembers) { this.hasMembers = true; this.parent.newGroupAddingFirstMember(); }
  }
  addVoid(): void {
    this.addMember();
    this.parent.parent.addVoid();
  }
  addData(lg: number): number {
    this.addMember();
    const locs = this.parent.dataLocations;
    let bestSize = Infinity;
    let best: number | undefined;
    for (let i = 0; i < locs.length; i++) {
      if (this.usage.length === i) this.usage.push(new Usage());
      const hole = this.usage[i]!.smallestHoleAtLeast(locs[i]!, lg);
      if (hole !== undefined && hole < bestSize) { bestSize = hole; best = i; }
    }
    if (best !== undefined) return this.usage[best]!.allocateFromHole(locs[best]!, lg);
    for (let i = 0; i < locs.length; i++) {
      const r = this.usage[i]!.tryAllocateByExpanding(this.parent, locs[i]!, lg);
      if (r !== undefined) return r;
    }
    const r = this.parent.addNewDataLocation(lg);
    this.usage.push(new Usage(lg));
    return r;
  }
  addPointer(): number {
    this.addMember();
    const locs = this.parent.pointerLocations;
    if (this.pointerUsage < locs.length) return locs[this.pointerUsage++]!;
    this.pointerUsage++;
    return this.parent.addNewPointerLocation();
  }
  tryExpandData(oldLg: number, oldOffset: number, factor: number): boolean {
    const mustFail = oldLg + factor > 6 || (oldOffset & ((1 << factor) - 1)) !== 0;
    for (let i = 0; i < this.usage.length; i++) {
      const loc = this.parent.dataLocations[i]!;
      if (loc.lg >= oldLg && oldOffset >> (loc.lg - oldLg) === loc.offset) {
        const local = oldOffset - (loc.offset << (loc.lg - oldLg));
        const ok = this.usage[i]!.tryExpand(this.parent, loc, oldLg, local, factor);
        if (mustFail && ok) throw new Issue344Error();
        return ok;
      }
    }
    return false;
  }
}

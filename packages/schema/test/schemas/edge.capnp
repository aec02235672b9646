# Edge cases for the schema compiler's oracle test: every feature, compared with capnp.
@0xd3a4b5c6d7e8f901;
# The file's doc comment.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("edge");
using import "imported.capnp".Shared;
using Imp = import "imported.capnp";

const cBool :Bool = true;
const cInt8 :Int8 = -128;
const cInt16 :Int16 = 32767;
const cInt32 :Int32 = -2147483648;
const cInt64 :Int64 = -9223372036854775808;
const cUInt8 :UInt8 = 255;
const cUInt16 :UInt16 = 0xffff;
const cUInt32 :UInt32 = 4294967295;
const cUInt64 :UInt64 = 18446744073709551615;
const cFloat32 :Float32 = 1.25e10;
const cFloat64 :Float64 = -inf;
const cNan :Float64 = nan;
const cInf :Float32 = inf;
const cOctal :Int32 = 0777;
const cText :Text = "hello \"world\"\n\x41\101" " joined";
const cData :Data = 0x"de ad be ef";
const cDataStr :Data = "bytes";
const cVoid :Void = void;
const cEnum :Color = blue;
const cList :List(Int32) = [1, -2, 3];
const cListBool :List(Bool) = [true, false, true, true, false, false, false, false, true];
const cListText :List(Text) = ["a", "bc", ""];
const cListList :List(List(UInt16)) = [[1, 2], [], [3]];
const cListStruct :List(Inner) = [(a = 1), (b = "x"), (a = 3, b = "y")];
const cListEnum :List(Color) = [red, blue];
const cStruct :Outer = (
  i = 7, t = "text", inner = (a = 5, b = "bee"), list = [1, 2], group = (gx = 3, gy = "gy"),
  u1 = 9, flag = true, colors = [green], f = 2.5, named = (n1 = 4), e = blue);
const cRef :Int32 = .cInt32;
const cRefScoped :Int16 = Outer.nestedConst;
const cRefImported :Int32 = Imp.importedConst;
const cFloatFromInt :Float64 = 42;
const cStructRef :Outer = .cStruct;
const cListOfRef :List(Int32) = [.cInt32, 4];
const cDefaulted :Defaults = (i = 100, t = "override", e = red);
const cGeneric :Box(Text) = (value = "boxed");

enum Color $Cxx.name("Colour") {
  red @0;
  green @2 $Cxx.name("grün");  # declared out of order
  blue @1;
}

annotation anyTarget(*) :Text;
annotation structAnn(struct, field) :Inner;
annotation listAnn(field, enumerant, method, param, union, group, interface, const, enum, annotation, file) :List(Int32);
annotation voidAnn(field, struct) :Void;
annotation enumAnn(field) :Color;
annotation floatAnn(field) :Float32;
$anyTarget("on the file");

struct Inner {
  a @0 :Int32;
  b @1 :Text;
}

struct Outer $structAnn((a = 1, b = "ann")) $voidAnn {
  # Outer's doc.
  const nestedConst :Int16 = -5;
  i @0 :Int32;
  t @1 :Text;   # a text
  inner @2 :Inner;
  list @3 :List(Int32);
  group :group {
    # A group's doc.
    gx @4 :UInt8;
    gy @5 :Text;
  }
  union {
    u1 @6 :UInt64;
    u2 @7 :Void;
    ug :group {
      ua @8 :Bool;
      ub @9 :Int16;
    }
  }
  flag @10 :Bool $listAnn([1, 2]) $enumAnn(green) $floatAnn(1.5);
  colors @11 :List(Color);
  f @12 :Float32;
  named :union $listAnn([3]) {
    n1 @13 :Int8;
    n2 @14 :Text;
    n3 @15 :Float64;
  }
  e @16 :Color;
  struct Deep {
    struct Deeper {
      x @0 :Int32;
    }
  }
}

struct Defaults {
  i @0 :Int32 = 42;
  u @1 :UInt64 = 0x123456789abcdef0;
  b @2 :Bool = true;
  b2 @3 :Bool = false;
  f @4 :Float32 = 3.5;
  d @5 :Float64 = -1e100;
  t @6 :Text = "default";
  data @7 :Data = 0x"0102";
  e @8 :Color = green;
  inner @9 :Inner = (a = 7, b = "seven");
  list @10 :List(Int32) = [5, 6, 7];
  listInner @11 :List(Inner) = [(a = 1), (b = "two")];
  nested @12 :List(List(Text)) = [["a"], ["b", "c"]];
  constRef @13 :Int64 = .cInt64;
  structRef @14 :Outer = .cStruct;
  ap @15 :AnyPointer;
  i8 @16 :Int8 = -1;
  u16 @17 :UInt16 = 65535;
  v @18 :Void = void;
  listVoid @19 :List(Void) = [void, void];
  listF64 @20 :List(Float64) = [1.5, -inf];
}

struct OutOfOrder {
  c @2 :Int32;
  a @0 :Bool;
  d @3 :Text;
  b @1 :UInt8;
  f @5 :Int64;
  e @4 :Int16;
}

struct UnionInGroup {
  g :group {
    union {
      x @0 :Int32;
      y @1 :Text;
      z @2 :Bool;
    }
    after @3 :UInt16;
  }
  h :group {
    inner :union {
      p @4 :Float64;
      q :group {
        q1 @5 :Int8;
        q2 @6 :Int8;
      }
    }
  }
}

struct Retro {
  # A retroactively unionized field: the union's ordinal is above its first member's.
  old @0 :Int32;
  other @1 :Text;
  u @2! :union {
    a @3 :Int32;
    b @4 :Int64;
  }
}

struct Packing {
  b1 @0 :Bool;
  i64 @1 :Int64;
  b2 @2 :Bool;
  i8 @3 :Int8;
  i16 @4 :Int16;
  i32 @5 :Int32;
  b3 @6 :Bool;
  u8 @7 :UInt8;
  union {
    ua @8 :Bool;
    ub @9 :Int64;
    uc @10 :Int32;
    ud @11 :Int8;
    ue @12 :Text;
  }
  after @13 :Int16;
  v @14 :Void;
}

struct Box(T) {
  value @0 :T;
  struct Nested {
    t @0 :T;
    box @1 :Box(T);
  }
}

struct Pair(A, B) {
  first @0 :A;
  second @1 :B;
  flip @2 :Pair(B, A);
  boxOfA @3 :Box(A).Nested;
}

struct Triple(A, B, C) {
  # capnp 0.9.2 accepts List(P) only for a generic parameter P at index 2 or more.
  c @0 :List(C);
  nested @1 :List(List(C));
}

struct UsesGenerics {
  p @0 :Pair(Text, Inner);
  nested @1 :Box(Box(List(Text)));
  deep @2 :Pair(Box(Data), List(Pair(Text, AnyPointer)));
  inner @3 :Box(Inner).Nested;
  any @4 :AnyStruct;
  anyList @5 :AnyList;
  cap @6 :Capability;
  shared @7 :Shared;
  imported @8 :Imp.Shared;
}

interface Base(T) {
  get @0 () -> (value :T);
}

interface Service extends(Base(Text), Imp.Remote) $anyTarget("iface") {
  # A service.
  plain @0 (a :Int32, b :Text = "dflt", c :Inner = (a = 3), d :Color = blue) -> (r :Int32 $listAnn([7]));
  # plain's doc.
  generic @1 [T, U] (t :T, u :U) -> (out :Box(T));
  typed @2 Inner -> Outer;
  noResults @3 ();
  stream @4 (data :Data) -> stream;
  withNull @5 (p :Text = null, q :Inner = null) -> ();
  boxed @6 (b :Box(Text)) -> Box(Data);
}

interface Empty {}

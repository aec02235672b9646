# Test schema for mpgen's value mappings (issue 14): defaulted params and struct fields (defaults
# naming consts included), consts, unions (unnamed, named, with group members, inside groups) as
# discriminated TS unions, and generic structs the way real projects write them. Generated into
# proto/src/test/mappings.capnp.ts by `pnpm gen`; exercised by proto/test/mappings-roundtrip.test.ts.

@0xd3a1c0b7e5f24a91;

const maxDouble :Float64 = 1.7976931348623157e308;
const answer :Int32 = 42;
const minusOne :Int8 = -1;
const bigUnsigned :UInt64 = 18446744073709551615;
const bigSigned :Int64 = -9007199254740993;
const ratio :Float32 = 0.5;
const yes :Bool = true;
const greeting :Text = "hello \"mappings\"";
const blob :Data = 0x"01 02 ff";
const primes :List(Int32) = [2, 3, 5, 7];
const words :List(Text) = ["a", "b"];
const loud :Level = high;
const defaultOptions :Options = (precious = true, label = "const", tags = ["c"]);
const circle :Shape = (name = "unit", circle = 1.0, style = (dashed = void), meta = (id = 3, byName = "m"));
const many :List(Inner) = [(a = 1, b = "one"), (b = "two")];

enum Level {
  low @0;
  mid @1;
  high @2;
}

struct Inner {
  a @0 :Int32 = 1;
  b @1 :Text;
}

struct Options {
  # Every field but `plain` has a default: writers accept a partial object.
  timeout @0 :Float64 = .maxDouble;
  precious @1 :Bool = false;
  retries @2 :UInt32 = 3;
  label @3 :Text = "none";
  level @4 :Level = mid;
  tags @5 :List(Text) = ["x", "y"];
  blob @6 :Data = 0x"aa bb";
  inner @7 :Inner = (a = 5, b = "in");
  big @8 :Int64 = -9000000000;
  ratio @9 :Float32 = .ratio;
  plain @10 :Int32;
}

struct Shape {
  name @0 :Text;
  union {
    circle @1 :Float64;
    square :group {
      side @2 :Float64;
      filled @3 :Bool;
    }
    none @4 :Void;
    label @5 :Text;
    points @6 :List(Int32);
  }
  style :union {
    solid @7 :UInt32;
    dashed @8 :Void;
  }
  meta :group {
    id @9 :UInt16;
    union {
      byName @10 :Text;
      byIndex @11 :Int32;
    }
  }
}

struct Result(Value) {
  value @0 :Value;
  error @1 :Text;
}

struct ResultVoid(Value) {
  # The parameter is unused (as in real schemas that share one shape for every result).
  error @0 :Text;
}

struct Pair(Key, Value) {
  key @0 :Key;
  value @1 :Value;
}

struct Expected(Value, Error) {
  union {
    value @0 :Value;
    error @1 :Error;
  }
}

struct Generics {
  result @0 :Result(Text);
  resultVoid @1 :ResultVoid(Text);
  pair @2 :Pair(Text, Inner);
  expected @3 :Expected(Inner, Text);
  expectedList @4 :Expected(List(Int32), Options);
}

interface Mapper {
  send @0 (data :Text, timeout :Float64 = .maxDouble, precious :Bool = false, retries :UInt32 = 3, label :Text = "none") -> (result :Options);
  # Every param after `data` has a default: the client may leave them out.
  configure @1 (options :Options) -> (result :Options);
  middle @2 (a :Int32 = 7, b :Int32) -> (result :Int32);
  # A defaulted param before a required one: `a` takes `undefined` for its default.
  withOptions @3 (options :Options = (retries = 9, label = "param")) -> (result :Options);
  shape @4 (shape :Shape) -> (result :Shape);
  generics @5 (g :Generics) -> (result :Generics);
  expected @6 (e :Expected(Inner, Text)) -> (result :Expected(Inner, Text));
  blank @7 () -> (options :Options, shape :Shape);
  # Results left unset by the server: the client reads the defaults.
}

# Oracle schema: `embed` of struct values (and Text/Data). embed-full.bin is
# `capnp eval -b` of `(a = 1, b = "bee", c = [1, 2], u = (y = "why"))` for this S; embed-small.bin
# the same for an older S with only `a @0 :Int32 = 5` (a = 7): a struct smaller than the schema's.
@0xa1b2c3d4e5f6071a;

struct S {
  a @0 :Int32 = 5;
  b @1 :Text;
  c @2 :List(Int32);
  u :union {
    x @3 :UInt8;
    y @4 :Text;
  }
}

const full :S = embed "embed-full.bin";
const small :S = embed "embed-small.bin";
const bytes :Data = embed "embed-small.bin";

struct Holder {
  d @0 :S = embed "embed-full.bin";
  e @1 :S = embed "embed-small.bin";
  f @2 :List(S) = [embed "embed-small.bin", (a = 2)];
}

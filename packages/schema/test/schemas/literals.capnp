# Integer literals of 2^64 or more: capnp's lexer accumulates them in a uint64, so they wrap
# before the range check against the type (found by the damaged-schema test, seed 1139336197).
@0xc3d9f0a1b2e4c601;

const hexWrapped :UInt64 = 0x123456789abcde0f0;
const decimalWrapped :UInt64 = 18446744073709551617;
const negatedWrapped :Int64 = -18446744073709551617;
const octalWrapped :UInt64 = 02000000000000000000001;
const exactMax :UInt64 = 18446744073709551615;

struct Defaults {
  u @0 :UInt64 = 0x123456789abcde0f0;
  i @1 :Int64 = -18446744073709551617;
  l @2 :List(UInt64) = [18446744073709551616, 0x10000000000000001];
}

/**
 * The FlatEcho values the flat-params tests send (flat-params.test.ts: the client's flat writer;
 * flat-read.test.ts: the server's flat reader): zeros, each kind's extremes, all bits set, the
 * sign bits, ±0, ±Infinity and NaN.
 */
import { FlatKind, type FlatEcho } from "@multiprocess-ts/proto/test/fixtures.capnp.js";

/** What `FlatEcho.echo` returns: its parameters, by name. */
export type FlatEchoValues = Awaited<ReturnType<FlatEcho["echo"]>>;

export const FLAT_ECHO_CASES: readonly FlatEchoValues[] = [
  { i8: 0, u8: 0, i16: 0, u16: 0, i32: 0, u32: 0, i64: 0n, u64: 0n, f32: 0, f64: 0, k: FlatKind.zero },
  { i8: -128, u8: 255, i16: -32768, u16: 65535, i32: -0x80000000, u32: 0xffffffff, i64: -(2n ** 63n), u64: 2n ** 64n - 1n, f32: -3.4028234663852886e38, f64: -Number.MAX_VALUE, k: FlatKind.last },
  { i8: 127, u8: 1, i16: 32767, u16: 1, i32: 0x7fffffff, u32: 1, i64: 2n ** 63n - 1n, u64: 1n, f32: 1.5, f64: Number.MIN_VALUE, k: FlatKind.one },
  { i8: -1, u8: 0x80, i16: -1, u16: 0x8000, i32: -1, u32: 0x80000000, i64: -1n, u64: 2n ** 63n, f32: -0, f64: -0, k: FlatKind.zero },
  { i8: 5, u8: 6, i16: 7, u16: 8, i32: 9, u32: 10, i64: 11n, u64: 12n, f32: Infinity, f64: NaN, k: FlatKind.one },
];

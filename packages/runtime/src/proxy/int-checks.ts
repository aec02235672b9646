/**
 * Integer range checks generated readers use (upstream "out of bound int received"; ours throw
 * {@link IntRangeError}, a RangeError).
 *
 * Each check is one small function with one integer test (for a number, `(v | 0) === v` is true
 * exactly for the integers of Int32 range, -0 included, false for NaN, ±Infinity and fractions;
 * the shifts and masks likewise for the narrower types; anything not a number, a bigint or an
 * object, is refused without converting it): a generated method checks every integer it passes, and
 * until the process has optimised it (its first ~1,000 calls: bench/README "Cold start") each
 * extra call and `Number.isInteger` costs. The error is built out of line.
 *
 * Owns: nothing (pure functions). Threading: any thread.
 */
import { IntRangeError } from "../errors.js";

function outOfRange(v: number, type: string): never {
  throw new IntRangeError(`value ${v} out of range for ${type}`);
}
export const checkInt8 = (v: number): number => (typeof v === "number" && (v << 24) >> 24 === v ? v : outOfRange(v, "Int8"));
export const checkInt16 = (v: number): number => (typeof v === "number" && (v << 16) >> 16 === v ? v : outOfRange(v, "Int16"));
export const checkInt32 = (v: number): number => (typeof v === "number" && (v | 0) === v ? v : outOfRange(v, "Int32"));
export const checkUint8 = (v: number): number => (typeof v === "number" && (v & 0xff) === v ? v : outOfRange(v, "UInt8"));
export const checkUint16 = (v: number): number => (typeof v === "number" && (v & 0xffff) === v ? v : outOfRange(v, "UInt16"));
export const checkUint32 = (v: number): number => (typeof v === "number" && v >>> 0 === v ? v : outOfRange(v, "UInt32"));

/**
 * Integer range checks generated readers use (upstream "out of bound int received"; ours throw
 * {@link IntRangeError}, a RangeError).
 *
 * Owns: nothing (pure functions). Threading: any thread.
 */
import { IntRangeError } from "../errors.js";

function checkRange(v: number, min: number, max: number, type: string): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new IntRangeError(`value ${v} out of range for ${type}`);
  return v;
}
export const checkInt8 = (v: number): number => checkRange(v, -0x80, 0x7f, "Int8");
export const checkInt16 = (v: number): number => checkRange(v, -0x8000, 0x7fff, "Int16");
export const checkInt32 = (v: number): number => checkRange(v, -0x80000000, 0x7fffffff, "Int32");
export const checkUint8 = (v: number): number => checkRange(v, 0, 0xff, "UInt8");
export const checkUint16 = (v: number): number => checkRange(v, 0, 0xffff, "UInt16");
export const checkUint32 = (v: number): number => checkRange(v, 0, 0xffffffff, "UInt32");

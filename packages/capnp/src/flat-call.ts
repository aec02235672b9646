/**
 * The encoder of flat Calls (issue 13, tenth session): a Call whose params struct has data words
 * only (no pointer: no capability, no Context) written as bytes into a caller's buffer, with no
 * capnp-ts object, byte for byte what fastpath.ts `callMessage` plus the target and question
 * ID rpc/questions.ts writes produce (`packages/capnp/test/flat-call.test.ts` compares the two).
 * rpc/questions.ts `sendFlat` uses it; docs/rpc.md "Envelope fast path".
 *
 * Layout (word = 8 bytes), as fastpath.ts documents for a Call, then, for a promisedAnswer
 * target, the PromisedAnswer struct (1 data word, 1 pointer) right behind the content and its
 * transform list (a composite list of 1-word Ops, tag word first) behind that, in the order
 * core.ts `writePromisedAnswer` allocates them.
 *
 * Owns no state: pure functions. Threading: any thread.
 */

import { CALL, MSG_CALL } from "./fastpath.js";

function ptrHi(dataWords: number, ptrs: number): number {
  return (dataWords | (ptrs << 16)) >>> 0;
}

/**
 * The part both encoders share: zeroes the message's `len` bytes and writes the frame's root,
 * the Message (a Call), the Call's fields, its target and params pointers and the params'
 * content pointer, whose upper word (the struct's data and pointer sizes) is `contentHi`.
 */
function writeCallEnvelope(out: Uint8Array, dv: DataView, len: number, qid: number, interfaceId: bigint, methodId: number, contentHi: number): void {
  out.fill(0, 0, len);
  dv.setUint32(4, ptrHi(1, 1), true); // root → Message at word 1
  out[8] = MSG_CALL;
  dv.setUint32(20, ptrHi(3, 3), true); // → Call at word 3
  dv.setUint32(CALL.qid, qid, true);
  dv.setUint16(CALL.methodId, methodId, true);
  dv.setBigUint64(CALL.interfaceId, interfaceId, true);
  dv.setUint32(48, 2 << 2, true); // target → word 9
  dv.setUint32(52, ptrHi(1, 1), true);
  dv.setUint32(56, 3 << 2, true); // params → word 11
  dv.setUint32(60, ptrHi(0, 2), true);
  dv.setUint32(CALL.contentPtr, 1 << 2, true); // content → word 13
  dv.setUint32(CALL.contentPtr + 4, contentHi, true);
}

/**
 * The Call of a flat params struct (`dataWords` data words, no pointers: nothing is allocated
 * behind it) written straight into `out` from byte 0, no capnp-ts object: the same bytes as
 * fastpath.ts `callMessage` + the params' data + questions.ts's target (importedCap `importId` when
 * >= 0, else promisedAnswer(`pqid`, `path`) as core.ts writePromisedAnswer allocates it behind
 * the content). The params' data section (at {@link CALL}.envelopeBytes, zeroed) is the
 * caller's to fill. Returns the message's length in bytes; `out` must hold
 * {@link flatCallBytes}. `packages/capnp/test/flat-call.test.ts` compares the two encoders.
 */
export function encodeFlatCall(
  out: Uint8Array,
  dv: DataView,
  qid: number,
  interfaceId: bigint,
  methodId: number,
  dataWords: number,
  importId: number,
  pqid: number,
  path: readonly number[] | null,
): number {
  const content = CALL.envelopeBytes + dataWords * 8;
  const len = flatCallBytes(dataWords, importId, path);
  writeCallEnvelope(out, dv, len, qid, interfaceId, methodId, dataWords);
  if (importId >= 0) {
    dv.setUint32(CALL.importedCap, importId, true);
    return len;
  }
  // promisedAnswer: the PromisedAnswer struct (1 data word, 1 ptr) right behind the content.
  const w = content >>> 3;
  dv.setUint16(CALL.targetWhich, 1, true);
  dv.setUint32(80, (w - 11) << 2, true);
  dv.setUint32(84, ptrHi(1, 1), true);
  dv.setUint32(content, pqid, true);
  const n = path === null ? 0 : path.length;
  if (n === 0) return len;
  // transform: a composite list of n Ops (1 data word each) behind it, its tag word first.
  dv.setUint32(content + 8, 1, true);
  dv.setUint32(content + 12, ((n << 3) | 7) >>> 0, true);
  dv.setUint32(content + 16, n << 2, true);
  dv.setUint32(content + 20, ptrHi(1, 0), true);
  for (let i = 0; i < n; i++) {
    const op = content + 24 + i * 8;
    dv.setUint16(op, 1, true); // getPointerField
    dv.setUint16(op + 2, path![i]!, true);
  }
  return len;
}

/** Bytes {@link encodeFlatCall} writes for these arguments. */
export function flatCallBytes(dataWords: number, importId: number, path: readonly number[] | null): number {
  // A constant chosen by data, one call site: a warm call loop's Calls all go to an importedCap,
  // a new connection's first Call to the bootstrap's promisedAnswer (rpc/dispatch.ts `hotMessage`).
  const bytes = importId >= 0 ? importedCallBytes : promisedCallBytes;
  return bytes(CALL.envelopeBytes + dataWords * 8, path);
}

const importedCallBytes = (content: number, _path: readonly number[] | null): number => content;
const promisedCallBytes = (content: number, path: readonly number[] | null): number => {
  const n = path === null ? 0 : path.length;
  return content + 16 + (n === 0 ? 0 : 8 + n * 8);
};

/**
 * The Call of a params struct with capabilities in one struct of its own (issue 13, twelfth
 * session: a method's `Proxy.Context`), to importedCap `importId`, written into `out` from byte 0:
 * the same bytes as fastpath.ts `callMessage` (params of `dataWords` data words and `ptrWords`
 * pointers), the struct of `capStructPtrs` pointers initialised at params pointer `capStruct`
 * behind the content (runtime threads/proxy-context.ts `initContextIn`'s layout), capability
 * `i` of the cap table at its pointer `slots[i]` (capnp `writeCap`, in table order), and the
 * cap table list rpc/exports.ts `capListAt` allocates behind that for `n` descriptors. The
 * params' data section (at {@link CALL}.envelopeBytes, zeroed) is the caller's to fill, and the
 * descriptors' words (zeroed) the export table's (`writeCapList`). Returns the byte offset of
 * descriptor 0; the message is {@link flatCapsCallBytes} long. `packages/capnp/test/flat-call.test.ts`
 * compares it with the general builder.
 */
export function encodeFlatCapsCall(
  out: Uint8Array,
  dv: DataView,
  qid: number,
  interfaceId: bigint,
  methodId: number,
  dataWords: number,
  ptrWords: number,
  capStruct: number,
  capStructPtrs: number,
  slots: readonly number[],
  n: number,
  importId: number,
): number {
  const len = flatCapsCallBytes(dataWords, ptrWords, capStructPtrs, n);
  writeCallEnvelope(out, dv, len, qid, interfaceId, methodId, ptrHi(dataWords, ptrWords));
  dv.setUint32(CALL.importedCap, importId, true);
  // The capabilities' struct right behind the content, its pointer in the params' pointer section.
  const s = CALL.envelopeBytes + (dataWords + ptrWords) * 8;
  const q = CALL.envelopeBytes + (dataWords + capStruct) * 8;
  dv.setUint32(q, ((s - q - 8) >>> 3) << 2, true);
  dv.setUint32(q + 4, ptrHi(0, capStructPtrs), true);
  for (let i = 0; i < n; i++) {
    const at = s + slots[i]! * 8;
    dv.setUint32(at, 3, true); // PointerType.OTHER, capability
    dv.setUint32(at + 4, i, true);
  }
  // The cap table (Payload pointer 1, at byte 96): an inline composite list of n CapDescriptors
  // (1 data word, 1 pointer each) behind the struct, its tag word first.
  const t = s + capStructPtrs * 8;
  dv.setUint32(96, (((t - 96 - 8) >>> 3) << 2) | 1, true);
  dv.setUint32(100, 7 | ((n * 2) << 3), true);
  dv.setUint32(t, n << 2, true);
  dv.setUint32(t + 4, ptrHi(1, 1), true);
  return t + 8;
}

/** Bytes {@link encodeFlatCapsCall} writes for these arguments. */
export function flatCapsCallBytes(dataWords: number, ptrWords: number, capStructPtrs: number, n: number): number {
  return CALL.envelopeBytes + (dataWords + ptrWords + capStructPtrs + 1 + n * 2) * 8;
}

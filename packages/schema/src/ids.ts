/**
 * Ids of nodes declared without `@0x…`, derived as capnp does: the first 8 bytes of an MD5 over the
 * parent id (8 bytes little-endian) and the child's name, group index or method ordinal, read
 * big-endian, with the top bit set. Runs at build time.
 *
 * Reference: capnproto c++/src/capnp/compiler/type-id.c++.
 *
 * @module
 */
import { createHash } from "node:crypto";

function le(v: bigint, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return b;
}

function finish(parts: Buffer[]): bigint {
  const h = createHash("md5");
  for (const p of parts) h.update(p);
  return h.digest().readBigUInt64BE(0) | (1n << 63n);
}

/** A nested declaration's id from its parent's id and its name. */
export function childId(parent: bigint, name: string): bigint {
  return finish([le(parent, 8), Buffer.from(name, "utf8")]);
}

/** A group's (or named union's) id from its parent's id and its index in the parent's fields. */
export function groupId(parent: bigint, index: number): bigint {
  return finish([le(parent, 8), le(BigInt(index), 2)]);
}

/** The id of a method's implicit `$Params` / `$Results` struct. */
export function methodParamsId(parent: bigint, ordinal: number, isResults: boolean): bigint {
  return finish([le(parent, 8), le(BigInt(ordinal), 2), Buffer.from([isResults ? 1 : 0])]);
}

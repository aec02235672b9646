/**
 * {@link ContextView}: a two-pointer struct view with the shape of proxy.capnp `Context` (thread,
 * callbackThread), for the bridge code that reads and refills a Context it only knows by pointer
 * index; and {@link findContext}, which finds such a Context among a call's params by what its
 * capability field holds.
 *
 * Owns: nothing. Threading: any thread (loop and worker alike).
 */
import * as capnp from "capnp-ts";
import { readCap } from "@multiprocess-ts/capnp";
import { getTargetPointerType as pointerType } from "capnp-ts/src/serialization/pointers/pointer.js";
import { PointerType } from "capnp-ts/src/serialization/pointers/pointer-type.js";
import { pointerField } from "./copy.js";

/** A two-pointer struct view: the shape of proxy.capnp `Context` (thread, callbackThread). */
export class ContextView extends capnp.Struct {
  static readonly _capnp = { displayName: "ContextView", id: "0", size: new capnp.ObjectSize(0, 2) };
}

/**
 * The first pointer field of `params` that is a struct whose capability field `field` (0: thread,
 * 1: callbackThread) holds a local server for which `match` is true: its index and a
 * {@link ContextView} over it; undefined when there is none.
 */
export function findContext(
  params: capnp.Struct,
  field: 0 | 1,
  match: (server: unknown) => boolean,
): { index: number; view: ContextView } | undefined {
  for (let i = 0; ; i++) {
    const p = pointerField(params, i);
    if (p === null) return undefined;
    if (capnp.Pointer.isNull(p) || pointerType(p) !== PointerType.STRUCT) continue;
    const view = new ContextView(p.segment, p.byteOffset, p._capnp.depthLimit);
    const fp = pointerField(view, field);
    if (fp === null || capnp.Pointer.isNull(fp) || pointerType(fp) !== PointerType.OTHER) continue;
    let server: unknown;
    try {
      const cap = readCap(view, field);
      server = cap?.localServer();
      cap?.close();
    } catch {
      continue;
    }
    if (match(server)) return { index: i, view };
  }
}

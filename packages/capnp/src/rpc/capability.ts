/**
 * The public capability constructors and cap-in-message accessors: {@link nullCapability},
 * {@link brokenCapability}, {@link promiseCapability}, {@link writeCap}, {@link readCap}
 * (localCapability lives in local.ts; rpc/index.ts re-exports them all). The machinery behind them: hook.ts (the Hook model),
 * local.ts, promise.ts, sink.ts, client.ts; the connection's tables (questions.ts, answers.ts,
 * exports.ts, imports.ts) carry calls between vats.
 *
 * Threading: belongs to the thread (event loop) that created it.
 */

import * as capnp from "capnp-ts";
import {
  getTargetPointerType,
  setInterfacePointer,
  getCapabilityId,
  erase,
} from "capnp-ts/src/serialization/pointers/pointer.js";
import { PointerType } from "capnp-ts/src/serialization/pointers/pointer-type.js";
import { getSize as getStructSize } from "capnp-ts/src/serialization/pointers/struct.js";
import { ProtocolError, toRpcError } from "../errors.js";
import { BrokenHook, NullHook } from "./hook.js";
import type { Hook } from "./hook.js";
import { PromiseHook } from "./promise.js";
import { CapHandle, hookOf } from "./client.js";
import { nullPointerIn } from "./cap-peek.js";
import type { Capability, Struct } from "./types.js";

export function nullCapability(): Capability {
  return new CapHandle(new NullHook());
}

export function brokenCapability(err: Error): Capability {
  return new CapHandle(new BrokenHook(toRpcError(err)));
}

/**
 * A local promise capability. Calls queue until `p` settles; then they go to the resolved
 * capability (we take ownership of it and close it once we hold our own reference), or fail with
 * the rejection.
 */
export function promiseCapability(p: Promise<Capability>): Capability {
  const hook = new PromiseHook();
  hook.addRef(); // held by the resolver below
  p.then(
    (cap) => {
      let h: Hook;
      try {
        h = hookOf(cap);
      } catch (e) {
        h = new BrokenHook(toRpcError(e));
        hook.resolve(h);
        h.release();
        hook.release();
        return;
      }
      hook.resolve(h);
      cap.close();
      hook.release();
    },
    (e: unknown) => {
      const b = new BrokenHook(toRpcError(e));
      hook.resolve(b);
      b.release();
      hook.release();
    },
  );
  return new CapHandle(hook);
}

// ---------------------------------------------------------------------------------------------
// Caps inside messages

/** Store a capability in pointer `ptrIndex` of `s` (the message keeps its own reference). */
export function writeCap(s: Struct, ptrIndex: number, cap: Capability | null): void {
  if (cap !== null) {
    // A null pointer of a near struct (the usual case: a field of a message being built) is
    // written in place, as setInterfacePointer writes it, without capnp-ts Pointer objects.
    const q = nullPointerIn(s, ptrIndex);
    if (q >= 0) {
      const table = (s.segment.message._capnp.capTable ??= []) as unknown as (Hook | null)[];
      const id = table.push(hookOf(cap).addRef()) - 1;
      const dv = (s.segment as unknown as { _dv: DataView })._dv;
      dv.setUint32(q, 3, true); // PointerType.OTHER, capability
      dv.setUint32(q + 4, id, true);
      return;
    }
  }
  const p = capnp.Struct.getPointer(ptrIndex, s);
  if (cap === null) {
    erase(p);
    return;
  }
  const m = s.segment.message;
  const table = (m._capnp.capTable ??= []) as unknown as (Hook | null)[];
  const hook = hookOf(cap).addRef();
  const id = table.push(hook) - 1;
  setInterfacePointer(id, p);
}

/** Read the capability in pointer `ptrIndex` of `s`: a new handle the caller closes, or null. */
export function readCap(s: Struct, ptrIndex: number): Capability | null {
  let p: capnp.Pointer;
  try {
    if (ptrIndex >= getStructSize(s).pointerLength) return null;
    p = capnp.Struct.getPointer(ptrIndex, s);
  } catch {
    return null;
  }
  if (capnp.Pointer.isNull(p)) return null;
  if (getTargetPointerType(p) !== PointerType.OTHER) {
    throw new ProtocolError(`pointer ${ptrIndex} is not a capability`);
  }
  const id = getCapabilityId(p);
  const table = s.segment.message._capnp.capTable as unknown as (Hook | null)[] | undefined;
  const h = table?.[id];
  if (h === undefined) throw new ProtocolError(`capability index ${id} is not in the message's cap table`);
  if (h === null) return null;
  return new CapHandle(h.addRef());
}

/** True when pointer `ptrIndex` of `s` is a capability (for log lines that show `<cap>`). */
export function isCapabilityPointer(s: Struct, ptrIndex: number): boolean {
  try {
    if (ptrIndex >= getStructSize(s).pointerLength) return false;
    const p = capnp.Struct.getPointer(ptrIndex, s);
    return !capnp.Pointer.isNull(p) && getTargetPointerType(p) === PointerType.OTHER;
  } catch {
    return false;
  }
}

// The cap table of our own outgoing Call written without capnp-ts objects (issue 13, twelfth
// session): ExportTable.writeCapTableAt against the capnp-ts path (initCapTable and the
// descriptors' setters, ExportTable.writeDescriptor) byte for byte, for several cap-table shapes
// (senderHosted, senderPromise, receiverHosted from an import and from an import-routed promise,
// none, a capability twice), the export ids and references each adds, and the cases it hands to
// capnp-ts (a receiverAnswer descriptor; no room in the segment).
// Threading: loop thread (the test's thread).
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import { describe, expect, it } from "vitest";
import { deferred, fastpath, localCapability, promiseCapability, readCap, type Capability } from "@multiprocess-ts/capnp";
import { capListAt } from "../dist/rpc/exports.js";
import { hookOf } from "../dist/rpc/client.js";
import { Box, CounterServer, M, call, drain, makePair } from "./rpc-helpers.js";

const { CALL, callMessage } = fastpath;

/** What the engine's ExportTable offers the two paths (its private capnp-ts path by name). */
interface Exports {
  writeCapTableAt(seg: unknown, p: number, caps: readonly unknown[]): number[] | null;
  writeCapTableSlow(payload: rpc.Payload, caps: readonly unknown[]): number[] | null;
  release(id: number, count: number): void;
}

const bytesOf = (m: ReturnType<typeof callMessage>): Uint8Array[] =>
  m._capnp.segments.map((s) => new Uint8Array(s.buffer, 0, s.byteLength).slice());

/** A Call message of `Box` params, as the engine's DirectCall.begin makes it. */
function newCall(extraBytes?: number): ReturnType<typeof callMessage> {
  return callMessage(0x1234n, 3, Box._capnp.size, extraBytes);
}

/** Writes `caps` both ways into two fresh Calls; expects the same bytes and export ids; releases what each added. */
function compare(ex: Exports, caps: readonly (Capability | null)[], extraBytes?: number): number[] | null {
  const hooks = caps.map((c) => (c === null ? null : hookOf(c)));
  const a = newCall(extraBytes);
  const b = newCall(extraBytes);
  const expA = ex.writeCapTableAt(a._capnp.segments[0]!, CALL.paramsPtr, hooks);
  const expB = ex.writeCapTableSlow(new rpc.Payload(b._capnp.segments[0]!, CALL.paramsPtr), hooks);
  expect(bytesOf(a)).toEqual(bytesOf(b));
  expect(expA).toEqual(expB);
  for (const id of [...(expA ?? []), ...(expB ?? [])]) ex.release(id, 1);
  return expA;
}

describe("ExportTable.writeCapTableAt", () => {
  it("writes the bytes capnp-ts writes, for every descriptor kind it writes in place", async () => {
    await using p = makePair();
    const ex = (p.client as unknown as { core: { exports: Exports } }).core.exports;
    const local = localCapability(new CounterServer(1));
    const local2 = localCapability(new CounterServer(2));
    const resolver = deferred<Capability>();
    const later = promiseCapability(resolver.promise); // an unresolved local promise: senderPromise
    const made = await call(p.boot, M.makeCounter, (b) => (b.a = 3));
    const imported = readCap(made.results(Box), 0)!; // an ImportHook of this connection
    made.close();
    const pending = call(p.boot, M.makeCounter, (b) => (b.a = 4));
    const pipelined = pending.pipeline(0); // a promise routed to a promised answer: receiverAnswer
    const shapes: (Capability | null)[][] = [
      [local],
      [later],
      [imported],
      [p.boot],
      [null],
      [local, null, imported, later, local2, local],
      [null, null],
      Array.from({ length: 9 }, (_, i) => [local, imported, null][i % 3]!),
    ];
    for (const caps of shapes) compare(ex, caps);
    const mixed = compare(ex, [local, imported, later]);
    expect(mixed).toHaveLength(2); // senderHosted and senderPromise add an export each; receiverHosted none
    // The cases capnp-ts writes: a receiverAnswer descriptor, and a table with no room left in the segment.
    compare(ex, [local, pipelined]);
    compare(ex, [local, imported], 0);
    const tight = newCall(0);
    const seg = tight._capnp.segments[0]!;
    expect(capListAt(seg, CALL.paramsPtr, 16)).toBe(-1);
    expect(capListAt(newCall()._capnp.segments[0]!, CALL.paramsPtr, 1)).toBeGreaterThan(0);
    pipelined.close();
    (await pending).close();
    imported.close();
    resolver.resolve(localCapability(new CounterServer(5)));
    later.close();
    local.close();
    local2.close();
    await drain();
  });
});

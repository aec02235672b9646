// ReaderLimits: configuration, and that each limit reaches the RPC engine end to end.
import { describe, expect, it } from "vitest";
import { Duplex, PassThrough } from "node:stream";
import {
  DEFAULT_LIMITS,
  resolveLimits,
  RpcConnection,
  LimitError,
  memoryTransportPair,
  streamTransport,
  encodeFrameToBytes,
} from "@multiprocess-ts/capnp";
import type { ReaderLimits } from "@multiprocess-ts/capnp";
import { nestedChain, seg, segOf, listPtr, structPtr, data, NULL } from "./fixtures/wire.js";
import type { Word } from "./fixtures/wire.js";

describe("resolveLimits", () => {
  it("fills defaults and keeps given values", () => {
    expect(resolveLimits()).toEqual(DEFAULT_LIMITS);
    expect(resolveLimits({ nestingLimit: 5 })).toEqual({ ...DEFAULT_LIMITS, nestingLimit: 5 });
    expect(resolveLimits({ maxMessageBytes: Infinity }).maxMessageBytes).toBe(Infinity);
    expect(resolveLimits({ maxSegments: undefined })).toEqual(DEFAULT_LIMITS);
  });
  it("rejects non-positive or fractional values with a RangeError naming the field", () => {
    for (const k of ["maxSegments", "maxMessageBytes", "traversalLimitWords", "nestingLimit"] as const) {
      for (const v of [0, -1, 2.5, NaN]) {
        expect(() => resolveLimits({ [k]: v } as Partial<ReaderLimits>)).toThrow(new RegExp(`ReaderLimits.${k}`));
      }
    }
  });
  it("DEFAULT_LIMITS is frozen", () => {
    expect(Object.isFrozen(DEFAULT_LIMITS)).toBe(true);
  });
});

/** Feed `segs` as the peer to an RpcConnection with `limits` over a memory transport; its end error. */
async function endErrorMemory(segs: Uint8Array[], limits: Partial<ReaderLimits>): Promise<Error | undefined> {
  const [peer, mine] = memoryTransportPair();
  const conn = new RpcConnection(mine, { limits });
  peer.start({ message: () => {}, closed: () => {} });
  peer.send(segs);
  const err = await conn.closed;
  expect(conn.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
  return err;
}

/** The same over a stream transport (framing limits apply in the transport). */
async function endErrorStream(frame: Uint8Array, limits: Partial<ReaderLimits>): Promise<Error | undefined> {
  const ab = new PassThrough();
  const ba = new PassThrough();
  ab.on("error", () => {});
  ba.on("error", () => {});
  const peer = Duplex.from({ readable: ba, writable: ab });
  peer.on("error", () => {});
  peer.resume();
  const conn = new RpcConnection(streamTransport(Duplex.from({ readable: ab, writable: ba }), limits), { limits });
  peer.write(frame);
  const err = await conn.closed;
  peer.destroy();
  return err;
}

describe("each limit ends an RpcConnection with a LimitError", () => {
  const wide = (n: number): Word[] => [structPtr(0, 0, 1), listPtr(0, 5, n), ...Array.from({ length: n }, (_, i) => data(i))];

  it("maxSegments", async () => {
    const segs = [seg(NULL), seg(), seg(), seg()];
    const e1 = await endErrorMemory(segs, { maxSegments: 3 });
    expect(e1).toBeInstanceOf(LimitError);
    expect(e1!.message).toMatch(/maxSegments = 3/);
    const e2 = await endErrorStream(encodeFrameToBytes(segs), { maxSegments: 3 });
    expect(e2).toBeInstanceOf(LimitError);
    expect(e2!.message).toMatch(/maxSegments = 3/);
  });

  it("maxMessageBytes", async () => {
    const segs = [segOf(wide(20))];
    const e1 = await endErrorMemory(segs, { maxMessageBytes: 128 });
    expect(e1).toBeInstanceOf(LimitError);
    expect(e1!.message).toMatch(/maxMessageBytes = 128/);
    const e2 = await endErrorStream(encodeFrameToBytes(segs), { maxMessageBytes: 128 });
    expect(e2).toBeInstanceOf(LimitError);
    expect(e2!.message).toMatch(/maxMessageBytes = 128/);
  });

  it("traversalLimitWords", async () => {
    const segs = [segOf(wide(100))];
    const e1 = await endErrorMemory(segs, { traversalLimitWords: 50 });
    expect(e1).toBeInstanceOf(LimitError);
    expect(e1!.message).toMatch(/traversalLimitWords = 50/);
    const e2 = await endErrorStream(encodeFrameToBytes(segs), { traversalLimitWords: 50 });
    expect(e2).toBeInstanceOf(LimitError);
  });

  it("nestingLimit", async () => {
    const segs = nestedChain(10);
    const e1 = await endErrorMemory(segs, { nestingLimit: 8 });
    expect(e1).toBeInstanceOf(LimitError);
    expect(e1!.message).toMatch(/nestingLimit = 8/);
    const e2 = await endErrorStream(encodeFrameToBytes(segs), { nestingLimit: 8 });
    expect(e2).toBeInstanceOf(LimitError);
  });
});

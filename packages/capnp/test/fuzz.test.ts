// Seeded fuzzing of everything that reads bytes from a peer: FrameDecoder, validate(Rpc)Message,
// capnp-ts decoding, and the RPC engine (RpcConnection) behind memory and stream transports.
//
// Reproduce a failure with the seed printed in its message: FUZZ_SEED=<seed> pnpm exec vitest run
// packages/capnp/test/fuzz.test.ts (FUZZ_FRAMES=<n> changes the number of frames per part).
// Threading: loop thread (the test's thread).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PassThrough, Duplex } from "node:stream";
import * as rpc from "capnp-ts/src/std/rpc.capnp.js";
import {
  FrameDecoder,
  encodeFrameToBytes,
  validateRpcMessage,
  messageFromSegments,
  ProtocolError,
  memoryTransportPair,
  streamTransport,
} from "@multiprocess-ts/capnp";
import {
  FRAMES,
  FUZZ_LIMITS,
  Rng,
  SEED,
  STREAM_FRAMES,
  buildValid,
  capnpTsFailures,
  fuzzEngine,
  hex,
  isCapnpTsError,
  mutateFrame,
  mutateSegments,
  onUnhandled,
  randomBytesFrame,
  touchRpc,
  unhandled,
  where,
} from "./fuzz-support.js";

beforeAll(() => {
  process.on("unhandledRejection", onUnhandled);
});
afterAll(() => {
  process.off("unhandledRejection", onUnhandled);
  if (capnpTsFailures.size > 0 && process.env.FUZZ_VERBOSE) {
    console.log("capnp-ts internal errors behind ProtocolErrors:", Object.fromEntries(capnpTsFailures));
  }
});

// ---------------------------------------------------------------------------------------------

describe(`fuzz (FUZZ_SEED=${SEED})`, () => {
  it(`FrameDecoder + validateRpcMessage + capnp-ts decode: ${FRAMES} frames`, () => {
    const r = new Rng(SEED);
    const pool = Array.from({ length: 300 }, () => encodeFrameToBytes(buildValid(r)));
    let validated = 0;
    let rejected = 0;
    const pa = { gen: 0, frame: 0, validate: 0, decode: 0, decodeErrors: 0 };
    for (let i = 0; i < FRAMES; i++) {
      const t0 = performance.now();
      const roll = r.u32() / 4294967296;
      const frame = roll < 0.2 ? randomBytesFrame(r) : roll < 0.3 ? r.pick(pool) : mutateFrame(r, r.pick(pool));
      const t1 = performance.now();
      pa.gen += t1 - t0;
      const d = new FrameDecoder(FUZZ_LIMITS);
      const msgs: Uint8Array[][] = [];
      try {
        // random chunking
        let off = 0;
        while (off < frame.byteLength) {
          const n = 1 + r.int(r.chance(0.5) ? frame.byteLength : 16);
          for (const m of d.push(frame.subarray(off, off + n))) msgs.push(m);
          off += n;
        }
        d.end();
      } catch (e) {
        if (!(e instanceof ProtocolError)) expect.fail(`${where("framing", i)}: ${String(e)} for ${hex(frame)}`);
        rejected++;
      }
      const t2 = performance.now();
      pa.frame += t2 - t1;
      for (const segs of msgs) {
        const t3 = performance.now();
        try {
          validateRpcMessage(segs, FUZZ_LIMITS);
        } catch (e) {
          if (!(e instanceof ProtocolError)) expect.fail(`${where("validate", i)}: ${String(e)} for ${hex(frame)}`);
          rejected++;
          continue;
        }
        validated++;
        const t4 = performance.now();
        pa.validate += t4 - t3;
        try {
          touchRpc(messageFromSegments(segs).getRoot(rpc.Message));
        } catch (e) {
          pa.decodeErrors++;
          if (!isCapnpTsError(e)) {
            expect.fail(`${where("decode", i)}: validated message broke capnp-ts: ${(e as Error).stack} for ${hex(frame)}`);
          }
        }
        pa.decode += performance.now() - t4;
      }
    }
    if (process.env.FUZZ_VERBOSE) console.log("decode part", pa, { validated, rejected });
    expect(validated).toBeGreaterThan(FRAMES / 10);
    expect(rejected).toBeGreaterThan(FRAMES / 10);
    expect(unhandled).toEqual([]);
  });

  it(`RpcConnection over memory transports: ${FRAMES} frames`, { timeout: 120_000 }, async () => {
    const r = new Rng(SEED ^ 0x9e3779b9);
    const pool = Array.from({ length: 300 }, () => buildValid(r));
    const stats = await fuzzEngine(r, FRAMES, "memory", (_batch) => {
      const [peer, mine] = memoryTransportPair();
      return {
        peer: (segs) => peer.send(segs),
        peerEnd: () => peer.close(),
        mine,
        start: (sink) => peer.start(sink),
        sentKinds: () => mine.wireLog.map((e) => (e.variant === undefined ? e.which : `${e.which}.${e.variant}`)),
      };
    }, () => {
      // A batch: a valid-looking script (bootstrap first) with some frames mutated or random.
      const n = r.chance(0.3) ? 1 : 1 + r.int(40);
      const out: Uint8Array[][] = [];
      if (r.chance(0.5)) out.push(buildValid(r, "bootstrap"));
      for (let i = out.length; i < n; i++) {
        const roll = r.u32() / 4294967296;
        if (roll < 0.1) out.push([r.bytes(8 * r.int(12))]);
        else if (roll < 0.45) out.push(mutateSegments(r, r.pick(pool)));
        else out.push(r.pick(pool));
      }
      return out;
    });
    expect(stats.frames).toBeGreaterThanOrEqual(FRAMES);
    expect(stats.errorEnds).toBeGreaterThan(FRAMES / 1000);
    expect(stats.cleanEnds).toBeGreaterThan(FRAMES / 10_000);
    // The engine did real work, not only refusals: it answered calls (with results and with
    // exceptions), refused unknown messages with Unimplemented and bad ones with Abort.
    const f = Math.min(1, FRAMES / 100_000);
    const sent = JSON.stringify(Object.fromEntries(stats.sent));
    expect(stats.sent.get("return.results") ?? 0, sent).toBeGreaterThan(1000 * f);
    expect(stats.sent.get("abort") ?? 0, sent).toBeGreaterThan(1000 * f);
    expect(stats.sent.get("unimplemented") ?? 0, sent).toBeGreaterThan(100 * f);
    expect(stats.sent.get("return.exception") ?? 0, sent).toBeGreaterThan(FRAMES >= 50_000 ? 0 : -1);
    expect(unhandled).toEqual([]);
  });

  it(`RpcConnection over stream transports with byte-level damage: ${STREAM_FRAMES} frames`, { timeout: 120_000 }, async () => {
    const r = new Rng(SEED ^ 0x85ebca6b);
    const pool = Array.from({ length: 200 }, () => encodeFrameToBytes(buildValid(r)));
    const stats = await fuzzEngine(r, STREAM_FRAMES, "stream", () => {
      const ab = new PassThrough();
      const ba = new PassThrough();
      ab.on("error", () => {});
      ba.on("error", () => {});
      const peerSide = Duplex.from({ readable: ba, writable: ab });
      const mineSide = Duplex.from({ readable: ab, writable: ba });
      peerSide.on("error", () => {});
      const mine = streamTransport(mineSide, FUZZ_LIMITS);
      return {
        peer: (segs) => {
          // segs[0] carries the raw bytes of a (possibly damaged) frame
          if (!peerSide.destroyed) peerSide.write(segs[0]!);
        },
        peerEnd: () =>
          new Promise<void>((res) => {
            // 'finish' after end(), or 'close' if the other side destroyed the pair meanwhile
            peerSide.once("close", () => res());
            peerSide.once("finish", () => res());
            if (peerSide.destroyed || peerSide.writableFinished) res();
            else peerSide.end();
          }),
        mine,
        start: (sink) => {
          peerSide.on("data", () => sink.message([]));
          peerSide.on("close", () => sink.closed());
        },
      };
    }, () => {
      const n = r.chance(0.3) ? 1 : 1 + r.int(30);
      const out: Uint8Array[][] = [];
      for (let i = 0; i < n; i++) {
        const roll = r.u32() / 4294967296;
        if (roll < 0.1) out.push([randomBytesFrame(r)]);
        else if (roll < 0.4) out.push([mutateFrame(r, r.pick(pool))]);
        else out.push([r.pick(pool)]);
      }
      return out;
    });
    expect(stats.frames).toBeGreaterThanOrEqual(STREAM_FRAMES);
    expect(unhandled).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Engine driver


/**
 * Flat results readers (mpgen: a results struct of data fields only, read as one value, none or an
 * object, gets a DataView reader `(dv, at, words)`; the client's engine reads a Return of such
 * results with no message, capnp questions.ts handleFlatResults; docs/mpgen.md). Over a Unix
 * socket (the socket reader's slab), each reader's value is checked against the general path's
 * (the same call with no flat reader: the capnp-ts results struct and the generated reader) and
 * against what capnp reads: every numeric kind (FlatEcho), results structs of fewer data words
 * than the schema's (an older peer: the missing fields read as defaults), more (a newer peer),
 * none (a null content), bools at bit offsets, a void method, one value; and the Returns that take
 * the general path: an exception, a results struct with a pointer, a traced connection. The
 * readers are counted through a client subclass that wraps them. `FlatEcho` and `FlatResults` are
 * in proto/test/fixtures.capnp.
 *
 * Threading: loop thread (the test's thread); client and server run on two event loops of it.
 */
import * as capnp from "capnp-ts";
import { RpcConnection, localCapability, streamTransport, type FlatRead, type IncomingCall, type Server } from "@multiprocess-ts/capnp";
import { EventLoop, connectTransport, serveTransport, type CallOptions, type Connection } from "@multiprocess-ts/runtime";
import type { ClientIO, ProxyMethod } from "@multiprocess-ts/runtime/gen";
import { assertIdle, unixSocketPair } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import { FlatSwitch } from "./flat-switch.js";
import { FlatEchoClient, FlatKind, FlatResultsClient, FlatResultsServer, type FlatResults } from "@multiprocess-ts/proto/test/fixtures.capnp.js";

type Out = Awaited<ReturnType<FlatEchoClient["echo"]>>;

/** The `words` each flat reader was called with (-1 … : `at` was -1, a null content). */
const sw = new FlatSwitch((at, words) => (at < 0 ? -1 - words : words));

class EchoClient extends FlatEchoClient {
  protected override $invokeFlat<R>(m: ProxyMethod, write: (dv: DataView, at: number) => void, read: (r: any, io: ClientIO) => R, options?: CallOptions, readFlat?: FlatRead): Promise<R> {
    return super.$invokeFlat(m, write, read, options, sw.wrap(readFlat));
  }
}
class ResultsClient extends FlatResultsClient {
  protected override $invokeFlat<R>(m: ProxyMethod, write: (dv: DataView, at: number) => void, read: (r: any, io: ClientIO) => R, options?: CallOptions, readFlat?: FlatRead): Promise<R> {
    return super.$invokeFlat(m, write, read, options, sw.wrap(readFlat));
  }
  protected override $invoke<R>(m: ProxyMethod, build: (p: any, io: ClientIO) => void, read: (r: any, io: ClientIO) => R, options?: CallOptions, readFlat?: FlatRead): Promise<R> {
    return super.$invoke(m, build, read, options, sw.wrap(readFlat));
  }
}

const CASES: Out[] = [
  { i8: -128, u8: 255, i16: -32768, u16: 65535, i32: -0x80000000, u32: 0xffffffff, i64: -(2n ** 63n), u64: 2n ** 64n - 1n, f32: -3.4028234663852886e38, f64: -Number.MAX_VALUE, k: FlatKind.last },
  { i8: 127, u8: 1, i16: 32767, u16: 1, i32: 0x7fffffff, u32: 1, i64: 2n ** 63n - 1n, u64: 1n, f32: 1.5, f64: Number.MIN_VALUE, k: FlatKind.one },
  { i8: -1, u8: 0x80, i16: -1, u16: 0x8000, i32: -1, u32: 0x80000000, i64: -1n, u64: 2n ** 63n, f32: -0, f64: -0, k: FlatKind.zero },
  { i8: 5, u8: 6, i16: 7, u16: 8, i32: 9, u32: 10, i64: 11n, u64: 12n, f32: NaN, f64: -Infinity, k: FlatKind.last },
];
const ZERO: Out = { i8: 0, u8: 0, i16: 0, u16: 0, i32: 0, u32: 0, i64: 0n, u64: 0n, f32: 0, f64: 0, k: FlatKind.zero };
/** Where each FlatEcho result lies (byte offset, width): what a struct of `words` data words holds. */
const LAYOUT: Record<keyof Out, [number, number]> = {
  i8: [0, 1], u8: [1, 1], i16: [2, 2], u16: [4, 2], k: [6, 2], i32: [8, 4], u32: [12, 4], i64: [16, 8], u64: [24, 8], f32: [32, 4], f64: [40, 8],
};
function heldIn(c: Out, words: number): Out {
  const o = { ...c } as Record<keyof Out, unknown>;
  for (const [k, [at, n]] of Object.entries(LAYOUT) as [keyof Out, [number, number]][]) if (at + n > words * 8) o[k] = ZERO[k];
  return o as Out;
}

const ids = { n: 0 };
function structOf(dataWords: number, ptrs: number): capnp.StructCtor<capnp.Struct> {
  const id = (0xf1000000 + ids.n++).toString(16).padStart(16, "0");
  return class extends capnp.Struct {
    static readonly _capnp = { displayName: "R", id, size: new capnp.ObjectSize(dataWords * 8, ptrs) };
  };
}
const PARAMS = structOf(6, 0);

/**
 * FlatEcho served by a hand-written engine server that echoes the params' data into a results
 * struct of `words` data words (a struct of another version of the schema; beyond the params'
 * six words, 0x5a bytes a newer peer's fields would hold), with a text at pointer 0 when `ptrs`,
 * or no results struct at all (`words` -1: a null content).
 */
class SizedEcho implements Server {
  words = 6;
  ptrs = 0;
  dispatch(call: IncomingCall): void {
    if (this.words < 0) return;
    const p = call.params(PARAMS);
    const r = call.results(structOf(this.words, this.ptrs));
    for (let i = 0; i < this.words * 8; i++) capnp.Struct.setUint8(i, i < 48 ? capnp.Struct.getUint8(i, p) : 0x5a, r);
    if (this.ptrs > 0) capnp.Struct.setText(0, "a newer field", r);
  }
}

const args = (c: Out): Parameters<FlatEchoClient["echo"]> => [c.i8, c.u8, c.i16, c.u16, c.i32, c.u32, c.i64, c.u64, c.f32, c.f64, c.k];

describe("flat results readers", () => {
  it("read every numeric kind, and results structs of other sizes, as the general path does", async () => {
    const sockets = await unixSocketPair();
    const clientLoop = new EventLoop("flat-client", { log: { level: "warning" } });
    const echo = new SizedEcho();
    const boot = localCapability(echo);
    const server = new RpcConnection(streamTransport(sockets.server), { bootstrap: boot, name: "server" });
    boot.close();
    const client = await connectTransport(clientLoop, streamTransport(sockets.client), EchoClient);
    const clientConn = client.$connection;
    try {
      for (const words of [6, 0, 1, 2, 3, 4, 5, 7, 9]) {
        echo.words = words;
        for (const c of CASES) {
          const [flat, general] = await sw.both(() => client.echo(...args(c)));
          expect(flat).toEqual(heldIn(c, words));
          expect(general).toEqual(flat);
          expect(sw.reads).toEqual([words]);
        }
      }
      // A null content: every field reads as its default.
      echo.words = -1;
      const [flat, general] = await sw.both(() => client.echo(...args(CASES[0]!)));
      expect(flat).toEqual(ZERO);
      expect(general).toEqual(ZERO);
      expect(sw.reads).toEqual([-1]);
      // A results struct with a non-null pointer (a newer peer's field): the general path.
      echo.words = 6;
      echo.ptrs = 1;
      const [viaPointer] = await sw.both(() => client.echo(...args(CASES[1]!)));
      expect(viaPointer).toEqual(CASES[1]);
      expect(sw.reads).toEqual([]);
    } finally {
      await client.close();
      await server.close();
      await clientLoop.done;
      assertIdle({ connections: { client: clientConn }, loops: { client: clientLoop } });
      expect(server.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
      await sockets.close();
    }
  });

  /** FlatResults over a Unix socket between two loops, the client's at `level`. */
  async function withResults(level: "warning" | "trace", impl: FlatResults, body: (c: ResultsClient) => Promise<void>): Promise<void> {
    const sockets = await unixSocketPair();
    const serverLoop = new EventLoop("flat-server", { log: { level: "warning" } });
    const lines: string[] = [];
    const clientLoop = new EventLoop("flat-client", { log: { level, logFn: (_l, m) => lines.push(m) } });
    const serverConn: Connection = serveTransport(serverLoop, streamTransport(sockets.server), impl, FlatResultsServer);
    const client = await connectTransport(clientLoop, streamTransport(sockets.client), ResultsClient);
    const clientConn = client.$connection;
    try {
      await body(client);
    } finally {
      await client.close();
      await serverConn.close();
      await Promise.all([serverLoop.done, clientLoop.done]);
      assertIdle({ connections: { client: clientConn, server: serverConn }, loops: { client: clientLoop, server: serverLoop } });
      await sockets.close();
    }
    if (level === "trace") expect(lines.some((l) => l.includes("<- return"))).toBe(true);
  }

  const impl: FlatResults = {
    flags: (a, b, n) => ({ a: b, n: (n + 1) & 0xff, b: a }),
    nothing: (x) => {
      if (x < 0) throw new Error(`negative ${x}`);
    },
    half: (x) => x / 2,
  };

  it("read bools at their bit offsets, a void method and one value (params not flat: $invoke)", async () => {
    await withResults("warning", impl, async (c) => {
      for (const [a, b, n] of [[true, false, 0], [false, true, 255], [true, true, 7], [false, false, 1]] as const) {
        const [flat, general] = await sw.both(() => c.flags(a, b, n));
        expect(flat).toEqual({ a: b, n: (n + 1) & 0xff, b: a });
        expect(general).toEqual(flat);
        expect(sw.reads).toEqual([1]);
      }
      const [none, noneGeneral] = await sw.both(() => c.nothing(3));
      expect(none).toBeUndefined();
      expect(noneGeneral).toBeUndefined();
      expect(sw.reads.length).toBe(1);
      for (const x of [3, -0.5, 2 ** -140, Infinity]) {
        const [flat, general] = await sw.both(() => c.half(x));
        expect(flat).toBe(Math.fround(Math.fround(x) / 2));
        expect(general).toBe(flat);
        expect(sw.reads).toEqual([1]);
      }
      // An exception: the general path, the call rejects.
      sw.reads.length = 0;
      await expect(c.nothing(-1)).rejects.toThrow(/negative -1/);
      expect(sw.reads).toEqual([]);
    });
  });

  it("a traced connection reads results the general way, with the same values", async () => {
    await withResults("trace", impl, async (c) => {
      sw.reads.length = 0;
      expect(await c.flags(true, false, 9)).toEqual({ a: false, n: 10, b: true });
      expect(await c.half(5)).toBe(2.5);
      expect(sw.reads).toEqual([]);
    });
  });
});

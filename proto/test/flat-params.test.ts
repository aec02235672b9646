/**
 * Flat params writers (mpgen: a params struct of data fields only gets `(dv, at) => …` and
 * `$invokeFlat`, docs/mpgen.md): every numeric kind (Int8 … UInt64, Float32/64, an enum) with
 * edge values, written by the generated DataView writer and read back by the generated struct
 * readers on the server, then echoed through the struct writers: over a memory transport (the
 * general builder with the same writer) and over a real Unix socket (the engine's flat path:
 * the Call leaves as bytes, checked to come from one reused buffer). A value out of range rejects
 * the call before anything is sent. `FlatEcho` is in proto/test/fixtures.capnp.
 *
 * Threading: loop thread (the test's thread); client and server run on two event loops of it.
 */
import { streamTransport } from "@multiprocess-ts/capnp";
import { Connection, EventLoop, connectTransport, serveTransport } from "@multiprocess-ts/runtime";
import { assertIdle, createTestSetup, unixSocketPair } from "@multiprocess-ts/testing";
import { describe, expect, it } from "vitest";
import { FlatEchoClient, FlatEchoServer, FlatKind, type FlatEcho } from "@multiprocess-ts/proto/test/fixtures.capnp.js";
import { FLAT_ECHO_CASES } from "./flat-echo-cases.js";

type Args = Parameters<FlatEcho["echo"]> extends [...infer A, unknown?] ? A : never;
type Out = Awaited<ReturnType<FlatEchoClient["echo"]>>;

const impl: FlatEcho = {
  echo: (i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, k) => ({ i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, k }),
};

const CASES: Out[] = [
  ...FLAT_ECHO_CASES,
  { i8: 5, u8: 6, i16: 7, u16: 8, i32: 9, u32: 10, i64: 11n, u64: 12n, f32: NaN, f64: -Infinity, k: FlatKind.last },
];

const args = (c: Out): Args => [c.i8, c.u8, c.i16, c.u16, c.i32, c.u32, c.i64, c.u64, c.f32, c.f64, c.k];

async function echoAll(client: FlatEchoClient): Promise<void> {
  for (const c of CASES) expect(await client.echo(...args(c))).toEqual(c);
  // A range check fails the call before it is sent (a RangeError from the writer).
  await expect(client.echo(...args({ ...CASES[0]!, i8: 128 }))).rejects.toThrow(RangeError);
  await expect(client.echo(...args({ ...CASES[0]!, u64: -1n }))).rejects.toThrow(RangeError);
  expect(await client.echo(...args(CASES[2]!))).toEqual(CASES[2]);
}

describe("flat params writers", () => {
  it("round-trip every numeric kind over a memory transport (the general builder)", async () => {
    const s = await createTestSetup({ impl, Server: FlatEchoServer, Client: FlatEchoClient });
    try {
      await echoAll(s.client);
    } finally {
      await s.dispose();
    }
  });

  it("round-trip every numeric kind over a Unix socket (the Call sent as bytes)", async () => {
    const sockets = await unixSocketPair();
    const serverLoop = new EventLoop("flat-server", { log: { level: "warning" } });
    const clientLoop = new EventLoop("flat-client", { log: { level: "warning" } });
    const serverConn: Connection = serveTransport(serverLoop, streamTransport(sockets.server), impl, FlatEchoServer);
    const t = streamTransport(sockets.client);
    // The buffer each Call is handed to the transport in (the flat path's: one reused buffer).
    const from: ArrayBufferLike[] = [];
    if (t.sendCopy === undefined) throw new Error("the stream transport copies small messages (sendCopy)");
    const sendCopy = t.sendCopy.bind(t);
    t.sendCopy = (segs: Uint8Array[]): boolean => {
      if (segs.length === 1 && segs[0]![8] === 2) from.push(segs[0]!.buffer);
      return sendCopy(segs);
    };
    const client = await connectTransport(clientLoop, t, FlatEchoClient);
    const clientConn = client.$connection;
    try {
      await echoAll(client);
      expect(from.length).toBe(CASES.length + 1);
      for (const b of from) expect(b).toBe(from[0]);
    } finally {
      await client.close();
      await serverConn.close();
      // The loops go idle once both teardowns ran (as in call-options.test.ts).
      await Promise.all([serverLoop.done, clientLoop.done]);
      assertIdle({ connections: { client: clientConn, server: serverConn }, loops: { client: clientLoop, server: serverLoop } });
      await sockets.close();
    }
  });
});

// Malformed input from a peer: the C++ peer (`malformed` mode) connects to our TS server and
// writes a bad message. Our side must end *that* connection with a clear ProtocolError (sending
// Abort, as the C++ reference does), and keep serving the others: a TS client connected before
// keeps working, and a fresh C++ connection is served afterwards. An unknown message type is not
// fatal: it is answered with Unimplemented and the connection stays usable.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProtocolError, type Capability, type RpcConnection } from "@multiprocess-ts/capnp";
import {
  add,
  connectUnix,
  runCppBench,
  runMalformed,
  socketDir,
  startTsServer,
  type MalformedKind,
  type MalformedResult,
  type TsServer,
} from "@multiprocess-ts/test-interop";

const FATAL: { kind: MalformedKind; reason: RegExp }[] = [
  { kind: "framing", reason: /segment/i },
  { kind: "segment-size", reason: /large|limit|size|bytes/i },
  { kind: "pointer", reason: /bound|pointer|out of/i },
  { kind: "bad-target", reason: /import|export|target/i },
];

describe("malformed messages from the C++ peer", () => {
  let dir: Awaited<ReturnType<typeof socketDir>>;
  let ts: TsServer;
  let healthy: { rpc: RpcConnection };
  let calc: Capability;
  let next = 1; // connection #0 is the healthy TS client

  beforeAll(async () => {
    dir = await socketDir();
    ts = await startTsServer(join(dir.dir, "ts.sock"));
    healthy = await connectUnix(ts.path, "healthy");
    calc = healthy.rpc.bootstrap();
    expect(await add(calc, 1, 2)).toBe(3);
  });

  afterAll(async () => {
    calc?.close();
    await healthy?.rpc.close();
    await ts?.close();
    await dir?.remove();
  });

  // Runs last (vitest runs a file's tests in order).
  function cleanEnd() {
    it("everything ends clean: no live objects, no table entries on either side of the healthy link", async () => {
      expect(await add(calc, 0, 0)).toBe(0);
      calc.close();
      expect(healthy.rpc.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
      await healthy.rpc.close();
      const served = await ts.connection(0);
      expect(await served.closed).toBeUndefined();
      await served.calc.whenReleased.promise;
      for (const c of ts.connections) {
        await c.closed;
        expect(c.rpc.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
      }
      await ts.tracker.whenIdle();
      expect(ts.tracker.calcs).toBe(0);
    });
  }

  const results = new Map<MalformedKind, MalformedResult>();

  for (const { kind, reason } of FATAL) {
    it(`${kind}: our side ends that connection with a clear ProtocolError; others keep working`, async () => {
      const n = next++;
      const got = await runMalformed(ts.path, kind);
      results.set(kind, got);
      const served = await ts.connection(n);
      const err = await served.closed;
      expect(err).toBeInstanceOf(ProtocolError);
      expect(err!.message).toMatch(reason);
      expect(got.eof).toBe(true); // we hung up
      expect(healthy.rpc.isClosed).toBe(false);
      expect(await add(calc, n, 100)).toBe(n + 100);
      expect(served.rpc.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0, exports: 0 });
    });

    it(`${kind}: the peer is told why with an Abort before we hang up (as the C++ reference does)`, () => {
      const got = results.get(kind);
      expect(got, "the previous test did not run").toBeDefined();
      expect(got!.got[0]?.abort ?? `(no Abort received; got ${JSON.stringify(got!.got)})`).toMatch(reason);
    });
  }

  it("unknown message type: answered with Unimplemented, connection stays usable", async () => {
    const n = next++;
    const got = await runMalformed(ts.path, "unknown");
    expect(got.got).toEqual([{ unimplemented: 99 }, { afterwards: "return" }]);
    const served = await ts.connection(n);
    const err = await served.closed; // the peer hung up after the check
    expect(err?.message ?? "").toBe("");
  });

  it("a fresh C++ connection is served after all that", async () => {
    const r = await runCppBench(ts.path, 20, 0);
    expect(r.n).toBe(20);
    next++;
    expect(await add(calc, 5, 5)).toBe(10);
  });

  cleanEnd();
});

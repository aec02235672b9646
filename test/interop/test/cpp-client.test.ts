// Conformance, C++ client → TS server: the C++ reference peer (cpp/peer.c++, Debian
// libcapnp-rpc) runs its whole check list against our engine serving Calc over a real Unix socket.
// The peer prints one JSON line per check; each becomes one test here, with the same names as in
// ts-client.test.ts. Afterwards our side must be clean: connection ended without error, stats()
// zero, every TS server object released.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Tracker,
  runCppClient,
  serveConnection,
  socketDir,
  spawnFdClient,
  startTsServer,
  type CheckResult,
  type TsServer,
} from "@multiprocess-ts/test-interop";

const CHECKS = [
  "bootstrap", "bootstrap-twice", "scalars", "text-data", "big-data", "callback-during-call", "promise-param", "null-cap", "cap-result", "cap-param-own",
  "cap-param-pipelined", "pipelined-result", "register-fire", "promise-resolve", "identity-await", "identity-pipelined", "tail-call",
  "exception-failed", "exception-overloaded", "exception-disconnected", "exception-unimplemented",
  "exception-plain", "exception-typed", "unknown-method", "cancel", "order-1000", "release", "hang-at-exit",
];

describe("C++ client → TS server (Unix socket)", () => {
  let dir: Awaited<ReturnType<typeof socketDir>>;
  let ts: TsServer;
  let result: Awaited<ReturnType<typeof runCppClient>>;

  beforeAll(async () => {
    dir = await socketDir();
    ts = await startTsServer(join(dir.dir, "ts.sock"));
    result = await runCppClient(ts.path);
  });

  afterAll(async () => {
    await ts?.close();
    await dir?.remove();
  });

  it.each(CHECKS)("%s", (name) => {
    const r: CheckResult | undefined = result.checks.find((c) => c.name === name);
    expect(r, `check ${name} did not run; C++ stderr: ${result.stderr}`).toBeDefined();
    expect(r!.error ?? "").toBe("");
    expect(r!.ok).toBe(true);
  });

  it("the C++ client ran every check and exited 0", () => {
    expect(result.checks.map((c) => c.name)).toEqual(CHECKS);
    expect(result.done).toBe(true);
    expect(result.code).toBe(0);
  });

  it("multi-segment messages arrived from C++ (1 MiB params)", async () => {
    const served = await ts.connection(0);
    expect(served.transport.maxSegmentsIn).toBeGreaterThan(1);
  });

  it("the session exercised every Level-1 message kind both ways, with no Abort/Unimplemented", async () => {
    const served = await ts.connection(0);
    await served.closed;
    const seen = new Set(served.transport.wireSince(0));
    const expected = [
      "in bootstrap", "in call", "in finish", "in release", "in resolve", "in disembargo",
      "in return/results", "in return/resultsSentElsewhere",
      "out return/results", "out return/exception", "out return/canceled", "out return/takeFromOtherQuestion",
      "out call", "out finish", "out release", "out resolve", "out disembargo",
    ];
    expect(expected.filter((e) => !seen.has(e))).toEqual([]);
    expect([...seen].filter((e) => /abort|unimplemented/.test(e))).toEqual([]);
  });

  it("TS side is clean after the C++ client disconnected", async () => {
    const served = await ts.connection(0);
    const err = await served.closed;
    expect(err?.message ?? "").toBe("");
    expect(served.rpc.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    await ts.tracker.whenIdle(); // every Counter released, every kept Callback dropped
    expect(ts.tracker.live).toBe(0);
    expect(ts.tracker.held).toBe(0);
    // Both hang() calls (the canceled one and the one left pending at exit) saw their signal abort.
    expect({ started: ts.tracker.hangsStarted, aborted: ts.tracker.hangsAborted }).toEqual({ started: 2, aborted: 2 });
    // The bootstrap Calc is released once the connection ended (we drop our reference then).
    await served.calc.whenReleased.promise;
    expect(ts.tracker.calcs).toBe(0);
  });
});

describe("C++ client → TS server (inherited socketpair fd, libmultiprocess style)", () => {
  it("every check passes over fd 3, and our side ends clean", async () => {
    const peer = await spawnFdClient();
    const tracker = new Tracker();
    const served = serveConnection(peer.socket, "ts-server-fd", tracker);
    const result = await peer.result;
    const failed = result.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.error}`);
    expect(failed, result.stderr).toEqual([]);
    expect(result.checks.map((c) => c.name)).toEqual(CHECKS);
    expect(result.code).toBe(0);
    expect((await served.closed)?.message ?? "").toBe("");
    await served.calc.whenReleased.promise;
    await tracker.whenIdle();
    expect(served.rpc.stats()).toMatchObject({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    expect({ started: tracker.hangsStarted, aborted: tracker.hangsAborted }).toEqual({ started: 2, aborted: 2 });
  });
});

// spawnProcess startup failures (issue 15), with real child processes: a child that never serves
// is killed after `startupTimeout` (SpawnError MP_ERR_SPAWN_TIMEOUT); a child that dies at startup
// gives a SpawnError with its exit code, signal and the tail of its stderr. Every test ends with
// the loop and handle leak checks. Loop thread only.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { EventLoop } from "@multiprocess-ts/runtime";
import { SpawnError, spawnProcess } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

const DIES = "process.stderr.write('child: starting\\n'); process.stderr.write('fatal: bad config value for --datadir\\n'); process.exit(3)";
const HANGS = "process.stderr.write('child: waiting forever\\n'); setInterval(() => {}, 60000)";

let baseline: HandleBaseline;
let loop: EventLoop;
beforeEach(() => {
  baseline = handleBaseline();
  loop = new EventLoop("spawn-startup", { log: { level: "error", logFn: () => {} } });
});
afterEach(async () => {
  await loop.done;
  expect(loop.numRefs).toBe(0);
  expect(loop.pendingWork).toBe(0);
  await assertNoHandleLeaks(baseline);
});

async function failure(p: Promise<unknown>): Promise<SpawnError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(SpawnError);
  return e as SpawnError;
}

describe("spawnProcess startup", () => {
  it("a child that never serves is killed after startupTimeout: SpawnError MP_ERR_SPAWN_TIMEOUT", async () => {
    const e = await failure(
      spawnProcess(process.execPath, () => ["-e", HANGS], { loop, InitClient: InitInterfaceClient, startupTimeout: 500 }),
    );
    expect(e.code).toBe("MP_ERR_SPAWN_TIMEOUT");
    expect(e.signal).toBe("SIGKILL");
    expect(e.exitCode).toBeNull();
    expect(e.message).toContain("did not serve within 500 ms; killed");
    expect(typeof e.stderr).toBe("string");
  });

  it("a child that dies at startup: SpawnError with exit code, signal and stderr tail", async () => {
    const e = await failure(spawnProcess(process.execPath, () => ["-e", DIES], { loop, InitClient: InitInterfaceClient }));
    expect(e.code).toBe("MP_ERR_SPAWN_FAILED");
    expect(e.exitCode).toBe(3);
    expect(e.signal).toBeNull();
    expect(e.stderr).toBe("child: starting\nfatal: bad config value for --datadir\n");
    expect(e.message).toContain("exited with code 3 before serving");
    expect(e.message).toContain("fatal: bad config value for --datadir");
    expect(e.cause).toBeInstanceOf(Error);
  });

  it("captureStderr: false keeps stderr inherited (no tail); a bad startupTimeout throws RangeError", async () => {
    const e = await failure(
      spawnProcess(process.execPath, () => ["-e", DIES], { loop, InitClient: InitInterfaceClient, captureStderr: false }),
    );
    expect(e.exitCode).toBe(3);
    expect(e.stderr).toBeUndefined();
    await expect(
      spawnProcess(process.execPath, () => ["-e", DIES], { loop, InitClient: InitInterfaceClient, startupTimeout: -1 }),
    ).rejects.toBeInstanceOf(RangeError);
  });
});

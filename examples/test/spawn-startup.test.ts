// spawnProcess startup failures (issue 15), with real child processes: a child that never serves
// is killed after `startupTimeout` (SpawnError MP_ERR_SPAWN_TIMEOUT); a child that dies at startup
// gives a SpawnError with its exit code, signal and the tail of its stderr. Leak check at the end
// of each test: the loop holds no references and has no pending work.
import { fileURLToPath } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import { SpawnError, spawnProcess } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";
import { describe, expect, it } from "vitest";

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

async function failure(p: Promise<unknown>): Promise<SpawnError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(SpawnError);
  return e as SpawnError;
}

async function leakCheck(loop: EventLoop): Promise<void> {
  await loop.done;
  expect(loop.numRefs).toBe(0);
  expect(loop.pendingWork).toBe(0);
}

describe("spawnProcess startup", () => {
  it("a child that never serves is killed after startupTimeout: SpawnError MP_ERR_SPAWN_TIMEOUT", async () => {
    const loop = new EventLoop("spawn-timeout", { log: { level: "error", logFn: () => {} } });
    const e = await failure(
      spawnProcess(process.execPath, () => [fixture("child-hangs.mjs")], { loop, InitClient: InitInterfaceClient, startupTimeout: 500 }),
    );
    expect(e.code).toBe("MP_ERR_SPAWN_TIMEOUT");
    expect(e.signal).toBe("SIGKILL");
    expect(e.exitCode).toBeNull();
    expect(e.message).toContain("did not serve within 500 ms; killed");
    expect(typeof e.stderr).toBe("string");
    await leakCheck(loop);
  });

  it("a child that dies at startup: SpawnError with exit code, signal and stderr tail", async () => {
    const loop = new EventLoop("spawn-dies", { log: { level: "error", logFn: () => {} } });
    const e = await failure(spawnProcess(process.execPath, () => [fixture("child-dies.mjs")], { loop, InitClient: InitInterfaceClient }));
    expect(e.code).toBe("MP_ERR_SPAWN_FAILED");
    expect(e.exitCode).toBe(3);
    expect(e.signal).toBeNull();
    expect(e.stderr).toBe("child: starting\nfatal: bad config value for --datadir\n");
    expect(e.message).toContain("exited with code 3 before serving");
    expect(e.message).toContain("fatal: bad config value for --datadir");
    expect(e.cause).toBeInstanceOf(Error);
    await leakCheck(loop);
  });

  it("captureStderr: false keeps stderr inherited (no tail); a bad startupTimeout throws RangeError", async () => {
    const loop = new EventLoop("spawn-nocapture", { log: { level: "error", logFn: () => {} } });
    const e = await failure(
      spawnProcess(process.execPath, () => [fixture("child-dies.mjs")], { loop, InitClient: InitInterfaceClient, captureStderr: false }),
    );
    expect(e.exitCode).toBe(3);
    expect(e.stderr).toBeUndefined();
    await expect(
      spawnProcess(process.execPath, () => [fixture("child-dies.mjs")], { loop, InitClient: InitInterfaceClient, startupTimeout: -1 }),
    ).rejects.toBeInstanceOf(RangeError);
    await leakCheck(loop);
  });
});

// Every mptest scenario at least once, through the same runner API as the CLI (runIteration:
// scenario, then the leak check against the per-iteration baseline). A failure message carries the
// seed and the command line that replays it.
import { afterAll, describe, expect, it } from "vitest";
import {
  allScenarios,
  childSpareStats,
  closeChildSpare,
  closeLifetimeThread,
  closeWorkerPool,
  defaultProbes,
  heldLifetimeScenario,
  lifetimeThreadStats,
  randomSeed,
  reproduceCommand,
  runIteration,
  workerPoolStats,
} from "@multiprocess-ts/mptest";

const seed = process.env.MPTEST_SEED !== undefined ? Number(process.env.MPTEST_SEED) : randomSeed();

describe(`mptest scenarios (seed ${seed})`, () => {
  it("has all 17 upstream scenarios under their upstream names", () => {
    const upstream = allScenarios().filter((s) => s.origin?.startsWith("upstream"));
    expect(upstream.map((s) => s.name)).toEqual([
      "Call FooInterface methods",
      "Call IPC method after client connection is closed",
      "Calling IPC method after server connection is closed",
      "Calling IPC method and disconnecting during the call",
      "Calling IPC method, disconnecting and blocking during the call",
      "Worker thread destroyed before it is initialized",
      "Calling async IPC method, with server disconnect racing the call",
      "Calling async IPC method, with server disconnect after cleanup",
      "Destroying ProxyClient<> with destroy method after peer disconnect",
      "Make simultaneous IPC calls on single remote thread",
      "Call async IPC method dispatched to pool thread",
      "Call async IPC method without thread or pool errors correctly",
      "ListenConnections accepts incoming connections",
      "ListenConnections enforces a local connection limit",
      "ListenConnections accepts multiple connections",
      "ListenConnections handles a client that disconnects before being accepted",
      "SpawnProcess does not run callback in child",
    ]);
  });

  afterAll(() => Promise.all([closeWorkerPool(), closeChildSpare(), closeLifetimeThread()]));

  it("the capability lifetime scenario runs its iterations on one lifetime thread, checked clean each time", async () => {
    const scenario = allScenarios().find((s) => s.name.startsWith("Capability is released exactly once"))!;
    const before = lifetimeThreadStats();
    for (let i = 0; i < 3; i++) {
      const r = await runIteration(scenario, i, seed + i, { probes: defaultProbes(), timeoutMs: 45_000 });
      expect(r.status, `${r.error ?? ""} ${r.leaks?.join(", ") ?? ""}`).toBe("pass");
    }
    const after = lifetimeThreadStats();
    expect(after.iterations - before.iterations).toBe(3);
    expect(after.started - before.started).toBeLessThanOrEqual(1);
  });

  it("a hang of the capability lifetime scenario dumps the lifetime thread's state (seed, story log, fixtures, handles)", async () => {
    const scenario = allScenarios().find((s) => s.name.startsWith("Capability is released exactly once"))!;
    const opts = { probes: defaultProbes(), timeoutMs: 45_000 };
    // A passing iteration first: the lifetime thread is up and ready when the held one starts.
    expect((await runIteration(scenario, 0, seed, opts)).status).toBe("pass");
    const hung = await runIteration(heldLifetimeScenario(), 1, seed + 1, { ...opts, timeoutMs: 3_000 });
    expect(hung.status).toBe("hang");
    const dump = hung.dump ?? "";
    expect(dump).toContain("[lifetime thread]\n");
    expect(dump).toMatch(new RegExp(`iteration with seed ${seed + 1} running for \\d+ ms \\(thread \\d+; \\d+ finished before\\)`));
    expect(dump).toContain("story log (last 1): held before the story (white-box test)");
    expect(dump).toMatch(/no live TestSetup\n\[handles\] /);
    // The held thread was terminated at the timeout; the next iteration gets a new one, checked clean.
    const started = lifetimeThreadStats().started;
    const after = await runIteration(scenario, 2, seed + 2, opts);
    expect(after.status, `${after.error ?? ""} ${after.leaks?.join(", ") ?? ""}`).toBe("pass");
    expect(lifetimeThreadStats().started).toBe(started + 1);
  });

  it("worker scenarios reuse pooled workers across iterations, each checked clean per iteration", async () => {
    const scenario = allScenarios().find((s) => s.name === "Worker disposes its thread handle while the connection tears down")!;
    const before = workerPoolStats();
    for (let i = 0; i < 2; i++) {
      const r = await runIteration(scenario, i, seed + i, { probes: defaultProbes(), timeoutMs: 45_000 });
      expect(r.status, `${r.error ?? ""} ${r.leaks?.join(", ") ?? ""}`).toBe("pass");
    }
    const after = workerPoolStats();
    // Six attachments (three orders, two iterations) on at most one new thread.
    expect(after.started - before.started).toBeLessThanOrEqual(1);
    expect(after.reused - before.reused).toBeGreaterThanOrEqual(5);
    expect(after.idle).toBeGreaterThanOrEqual(1);
  });

  it("scenarios that end a fresh worker or child take one started ahead of use, a new one each time", async () => {
    // The first pooled worker to come back clean makes the code cache of the workers' bundle.
    if (workerPoolStats().codeCacheBytes === 0) {
      const pooled = allScenarios().find((s) => s.name === "A closure posted across threads is rejected with a clear error")!;
      const r = await runIteration(pooled, 0, seed, { probes: defaultProbes(), timeoutMs: 45_000 });
      expect(r.status, `${r.error ?? ""} ${r.leaks?.join(", ") ?? ""}`).toBe("pass");
    }
    expect(workerPoolStats().codeCacheBytes).toBeGreaterThan(0);
    const cacheBefore = workerPoolStats().codeCache;
    const names = ["Worker is terminated in the middle of a call", "Spawned child killed with SIGKILL in the middle of a call"];
    for (const name of names) {
      const scenario = allScenarios().find((s) => s.name === name)!;
      for (let i = 0; i < 2; i++) {
        const r = await runIteration(scenario, i, seed + i, { probes: defaultProbes(), timeoutMs: 45_000 });
        expect(r.status, `${name}: ${r.error ?? ""} ${r.leaks?.join(", ") ?? ""}`).toBe("pass");
      }
    }
    // The second iteration of each took the spare the first one left (started, never used).
    expect(workerPoolStats().freshWarm).toBeGreaterThanOrEqual(1);
    expect(childSpareStats().warm).toBeGreaterThanOrEqual(1);
    // Those fresh workers were started after the code cache existed, and V8 took it.
    const cacheAfter = workerPoolStats().codeCache;
    expect(cacheAfter.accepted - cacheBefore.accepted).toBeGreaterThanOrEqual(2);
    expect(cacheAfter.rejected).toBe(0);
  });

  for (const scenario of allScenarios()) {
    it(scenario.name, async () => {
      const r = await runIteration(scenario, 0, seed, { probes: defaultProbes(), timeoutMs: 45_000 });
      const detail = [
        r.error,
        r.leaks && `leaked: ${r.leaks.join(", ")}`,
        r.dump && `state: ${r.dump}`,
        r.log?.length ? `log:\n${r.log.join("\n")}` : undefined,
        `reproduce: ${reproduceCommand("packages/mptest/dist/cli.js", scenario.name, seed)}`,
      ]
        .filter(Boolean)
        .join("\n");
      expect(r.status, detail).toBe("pass");
    });
  }
});

// CLI tests: argument parsing, --list, exit codes (with deliberately failing fake scenarios through
// the API hook and through MPTEST_SCENARIO_MODULE on the real binary), --json shape, --jobs.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createRng,
  iterationSeed,
  parseArgs,
  parseDuration,
  percentile,
  runCli,
  runScenarios,
  CHARGE_CAP_MS,
  UsageError,
  type JsonReport,
  type Scenario,
} from "@multiprocess-ts/mptest";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const FAKE = fileURLToPath(new URL("./fixtures/fake-scenarios.mjs", import.meta.url));
const FIXTURE_HANG = fileURLToPath(new URL("./fixtures/fixture-hang.mjs", import.meta.url));

function buffer(): { write(s: string): boolean; text: () => string } {
  let t = "";
  return { write: (s: string) => ((t += s), true), text: () => t };
}

const pass: Scenario = { name: "api/pass", run: async () => {} };
const fail: Scenario = {
  name: "api/fail",
  run: async (ctx) => {
    throw new Error(`boom ${ctx.seed}`);
  },
};

async function cli(argv: string[], scenarios: Scenario[]) {
  const stdout = buffer();
  const stderr = buffer();
  const code = await runCli(argv, { scenarios, stdout, stderr });
  return { code, out: stdout.text(), err: stderr.text() };
}

describe("argument parsing", () => {
  it("parses every option", () => {
    const a = parseArgs(["--filter", "^a.*b$", "--repeat", "3", "--until-fail", "--seed", "0x10", "--jobs", "2", "--timeout=500", "--json", "r.json", "--list"]);
    expect(a.filter?.source).toBe("^a.*b$");
    expect(a).toMatchObject({ repeat: 3, untilFail: true, seed: 16, jobs: 2, timeoutMs: 500, json: "r.json", list: true });
    expect(parseArgs(["--duration", "2m"]).durationMs).toBe(120_000);
    expect(parseArgs([])).toMatchObject({ jobs: 1, untilFail: false, list: false });
  });
  it("parses durations", () => {
    expect(parseDuration("45s")).toBe(45_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1.5")).toBe(1500);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(() => parseDuration("soon")).toThrow(UsageError);
  });
  it("rejects bad input", () => {
    expect(() => parseArgs(["--repeat", "1", "--duration", "1s"])).toThrow(/exclusive/);
    expect(() => parseArgs(["--repeat", "0"])).toThrow(UsageError);
    expect(() => parseArgs(["--seed", "-1"])).toThrow(UsageError);
    expect(() => parseArgs(["--filter", "("])).toThrow(UsageError);
    expect(() => parseArgs(["--bogus"])).toThrow(/unknown argument/);
    expect(() => parseArgs(["--repeat"])).toThrow(/needs a value/);
  });
});

describe("helpers", () => {
  it("derives iteration seeds so that iteration 0 is the base seed", () => {
    expect(iterationSeed(1234, 0)).toBe(1234);
    expect(iterationSeed(1234, 1)).not.toBe(1234);
    expect(iterationSeed(1234, 5)).toBe(iterationSeed(1234, 5));
    const a = createRng(99);
    const b = createRng(99);
    expect([a(), a.int(10), a.bool()]).toEqual([b(), b.int(10), b.bool()]);
  });
  it("computes nearest-rank percentiles", () => {
    const d = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(d, 50)).toBe(50);
    expect(percentile(d, 99)).toBe(99);
    expect(percentile([], 50)).toBe(0);
  });
});

describe("runScenarios", () => {
  it("with --repeat runs round-robin, and a shard runs its share of the iteration indexes", async () => {
    const a: Scenario = { name: "a", run: async () => {} };
    const b: Scenario = { name: "b", run: async () => {} };
    const all = await runScenarios({ scenarios: [a, b], seed: 1, repeat: 3 });
    expect(all.results.map((r) => `${r.scenario}${r.iteration}`)).toEqual(["a0", "b0", "a1", "b1", "a2", "b2"]);
    const shard = await runScenarios({ scenarios: [a, b], seed: 1, repeat: 5, shard: { index: 1, count: 2 } });
    expect(shard.results.map((r) => `${r.scenario}${r.iteration}`)).toEqual(["a1", "b1", "a3", "b3"]);
    expect(shard.results.map((r) => r.seed)).toEqual([1, 1, 3, 3].map((i) => iterationSeed(1, i)));
  });
  it("without retainResults reports every result to onResult, keeps none, and counts the non-passing", async () => {
    const a: Scenario = { name: "a", run: async () => {} };
    const b: Scenario = {
      name: "b",
      run: async () => {
        throw new Error("b fails");
      },
    };
    const seen: string[] = [];
    const res = await runScenarios({ scenarios: [a, b], seed: 1, repeat: 2, retainResults: false, onResult: (r) => void seen.push(`${r.scenario}${r.iteration}:${r.status}`) });
    expect(seen).toEqual(["a0:pass", "b0:fail", "a1:pass", "b1:fail"]);
    expect(res.results).toEqual([]);
    expect(res.notPassed).toBe(2);
  });
  it("pins an error that surfaces between iterations on the iteration that ran last", async () => {
    const a: Scenario = { name: "a", run: async () => {} };
    let emitted = false;
    const res = await runScenarios({
      scenarios: [a],
      seed: 1,
      repeat: 2,
      onResult: () => {
        // Between iterations: no iteration's own handler is installed now.
        if (!emitted) {
          emitted = true;
          process.emit("uncaughtException", new Error("late boom"));
        }
      },
    });
    expect(res.results.map((r) => `${r.scenario}${r.iteration}:${r.status}`)).toEqual(["a0:pass", "a0:fail", "a1:pass"]);
    expect(res.results[1]!.error).toContain("escaped after the iteration ended: Error: late boom");
  });
  it("with a duration gives scenarios slower than the charge cap the same count", async () => {
    // Iteration cost stands in for work here (a timer, not an ordering): 20 ms and 60 ms are both
    // above CHARGE_CAP_MS, so both are charged the cap per iteration and run equally often. (How
    // much more the fast ones run is FairShare's, tested with made-up times in schedule.test.ts.)
    expect(CHARGE_CAP_MS).toBeLessThan(20);
    const slow: Scenario = { name: "slow", run: () => new Promise((r) => setTimeout(r, 20)) };
    const slower: Scenario = { name: "slower", run: () => new Promise((r) => setTimeout(r, 60)) };
    const fast: Scenario = { name: "fast", run: async () => {} };
    const res = await runScenarios({ scenarios: [slow, slower, fast], seed: 1, durationMs: 1000, settleMs: 50 });
    const count = (n: string) => res.results.filter((r) => r.scenario === n).length;
    expect(count("slower")).toBeGreaterThan(2);
    expect(Math.abs(count("slow") - count("slower"))).toBeLessThanOrEqual(1);
    expect(count("fast")).toBeGreaterThanOrEqual(count("slow"));
    expect(res.results.every((r) => r.status === "pass")).toBe(true);
    expect(res.results.every((r) => typeof r.cpuMs === "number" && r.cpuMs >= 0)).toBe(true);
  });
});

describe("runCli (API hook)", () => {
  it("--list prints the selected names and exits 0", async () => {
    const r = await cli(["--list", "--filter", "pass"], [pass, fail]);
    expect(r.code).toBe(0);
    expect(r.out.trim().split("\n")).toEqual(["api/pass"]);
  });
  it("exits 0 when everything passes and prints the summary table", async () => {
    const r = await cli(["--repeat", "3", "--seed", "5"], [pass]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^api\/pass\s+3\s+0\s+0\s+0/m);
    expect(r.out).toContain("mptest: OK: 3 runs");
  });
  it("exits 1 on a failure and prints its seed and the reproducing command", async () => {
    const r = await cli(["--repeat", "2", "--seed", "42"], [pass, fail]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("FAIL api/fail (iteration 0, seed 42)");
    expect(r.err).toContain("boom 42");
    expect(r.err).toMatch(/reproduce: node \S*cli\.js --filter '\^api\/fail\$' --seed 42 --repeat 1/);
    const s1 = iterationSeed(42, 1);
    expect(r.err).toContain(`FAIL api/fail (iteration 1, seed ${s1})`);
    expect(r.out).toMatch(/^api\/fail\s+2\s+2\s+0\s+0/m);
  });
  it("--until-fail stops at the first failure", async () => {
    const r = await cli(["--until-fail", "--seed", "1"], [pass, fail]);
    expect(r.code).toBe(1);
    expect(r.out).toContain("2 runs, 1 failed");
    expect(r.out).toContain("stopped: failure");
  });
  it("draws a live progress line on a TTY and plain lines otherwise", async () => {
    const slow: Scenario = { name: "api/slow", run: () => new Promise((r) => setTimeout(r, 30)) };
    const tty = { ...buffer(), isTTY: true };
    expect(await runCli(["--repeat", "5"], { scenarios: [slow], stdout: buffer(), stderr: tty })).toBe(0);
    expect(tty.text()).toMatch(/\r\x1b\[K\[\d+\.\ds\] \d+ runs, 0 failed \| api\/slow #\d/);
    const plain = buffer();
    expect(await runCli(["--repeat", "5"], { scenarios: [slow], stdout: buffer(), stderr: plain })).toBe(0);
    expect(plain.text()).not.toContain("\x1b");
  });
  it("exits 2 on usage errors and when nothing matches", async () => {
    expect((await cli(["--nope"], [pass])).code).toBe(2);
    const r = await cli(["--filter", "zzz"], [pass]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("no scenario matches");
  });
  it("writes a --json report with the documented shape", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mptest-"));
    try {
      const file = join(dir, "r.json");
      const r = await cli(["--repeat", "2", "--seed", "9", "--json", file], [pass, fail]);
      expect(r.code).toBe(1);
      const j = JSON.parse(readFileSync(file, "utf8")) as JsonReport;
      expect(j).toMatchObject({ version: 1, ok: false, seed: 9, jobs: 1, stopped: "done" });
      expect(j.totals).toEqual({ runs: 4, passed: 2, failures: 2, leaks: 0, hangs: 0 });
      expect(j.scenarios.map((s) => s.name)).toEqual(["api/pass", "api/fail"]);
      for (const s of j.scenarios) {
        expect(Object.keys(s).sort()).toEqual(["failures", "hangs", "leaks", "maxMs", "name", "p50CpuMs", "p50Ms", "p99Ms", "passed", "runs"]);
      }
      expect(j.failures).toHaveLength(2);
      expect(j.failures[0]).toMatchObject({ scenario: "api/fail", iteration: 0, seed: 9, status: "fail" });
      expect(j.failures[0]!.reproduce).toContain("--seed 9 --repeat 1");
      expect(typeof j.elapsedMs).toBe("number");
      expect(new Date(j.startedAt).getTime()).not.toBeNaN();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the mptest binary", () => {
  const env = { ...process.env, MPTEST_SCENARIO_MODULE: FAKE };
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { env, encoding: "utf8", timeout: 60_000 });

  it("lists the fake scenarios loaded through MPTEST_SCENARIO_MODULE", () => {
    const r = run(["--list", "--filter", "^fake/"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("fake/pass");
    expect(r.stdout).toContain("fake/hang");
  });
  it("exits 0 for passing scenarios, in-process and with --jobs 2", () => {
    expect(run(["--filter", "^fake/pass$", "--repeat", "3"]).status).toBe(0);
    const r = run(["--filter", "^fake/pass$", "--repeat", "10", "--jobs", "2", "--seed", "3"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^fake\/pass\s+10\s+0\s+0\s+0/m);
  });
  it("exits 1 for a failure, a leak, an escaped rejection and a hang, naming each", () => {
    const f = run(["--filter", "^fake/(fail|leak|unhandled)$", "--repeat", "1", "--seed", "11"]);
    expect(f.status).toBe(1);
    expect(f.stderr).toContain("FAIL fake/fail (iteration 0, seed 11)");
    expect(f.stderr).toContain("LEAK fake/leak (iteration 0, seed 11)");
    expect(f.stderr).toContain("handle.Timeout: 0 -> 1");
    expect(f.stderr).toContain("FAIL fake/unhandled");
    expect(f.stderr).toContain("nobody awaited me");
    expect(f.stderr).toContain("reproduce: MPTEST_SCENARIO_MODULE=");
    const h = run(["--filter", "^fake/hang$", "--repeat", "1", "--timeout", "200"]);
    expect(h.status).toBe(1);
    expect(h.stderr).toContain("HANG fake/hang");
    expect(h.stderr).toContain("state at timeout:");
    expect(h.stderr).toContain("fake probe: 0 leaked timers");
  });
  it("a hang inside a TestSetup call dumps the pending questions, answers and threads", () => {
    const r = spawnSync(process.execPath, [CLI, "--filter", "^fake/fixture-hang$", "--repeat", "1", "--timeout", "500"], {
      env: { ...process.env, MPTEST_SCENARIO_MODULE: FIXTURE_HANG },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("HANG fake/fixture-hang");
    expect(r.stderr).toMatch(/server: rpc open \{"questions":0,"answers":1,/);
    expect(r.stderr).toMatch(/client: rpc open \{"questions":1,/);
    expect(r.stderr).toMatch(/server threads: \S+ \(from [^)]+\) \(load 1\)/);
    expect(r.stderr).toContain("server impl calls: callFnAsync");
  });
  it("a failure inside a --jobs child fails the run and names its seed", () => {
    const r = run(["--filter", "^fake/(pass|fail)$", "--repeat", "4", "--jobs", "2", "--seed", "21"]);
    expect(r.status).toBe(1);
    for (let i = 0; i < 4; i++) expect(r.stderr).toContain(`FAIL fake/fail (iteration ${i}, seed ${iterationSeed(21, i)})`);
    expect(r.stdout).toMatch(/^fake\/pass\s+4\s+0/m);
  });
  it("--jobs kills a child whose event loop is blocked and counts a hang", () => {
    const r = run(["--filter", "^fake/block$", "--repeat", "1", "--jobs", "2", "--timeout", "200"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("HANG fake/block (iteration 0");
    expect(r.stderr).toMatch(/job 0 stopped responding .* for more than 2200 ms; killed/);
    expect(r.stdout).toMatch(/^fake\/block\s+1\s+0\s+0\s+1/m);
  });
  it("replays a failing iteration from its printed seed", () => {
    const s = iterationSeed(77, 2);
    const r = run(["--filter", "^fake/fail$", "--seed", String(s), "--repeat", "1"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`deliberate failure (seed ${s})`);
  });
});

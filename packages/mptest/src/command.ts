/**
 * The `mptest` command, as a function: `runCli(argv, hooks)` returns the exit status. The bin
 * (cli.ts) is a two-line wrapper; tests call this directly with fake scenarios and streams.
 *
 * Threading: runs on the mptest process's main thread (or a `--jobs` shard child's main thread).
 */

import { writeFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { relative, delimiter, isAbsolute, resolve as resolvePath } from "node:path";
import { DEFAULT_DURATION_MS, USAGE, UsageError, parseArgs, type CliArgs } from "./args.js";
import { randomSeed } from "./rng.js";
import { runScenarios, type IterationResult, type RunResult } from "./runner.js";
import { runJobs, type ShardMessage } from "./parallel.js";
import {
  formatTable,
  reproduceCommand,
  shellQuote,
  summarize,
  totals,
  type FailureRecord,
  type JsonReport,
} from "./report.js";
import type { LeakProbe } from "./leaks.js";
import type { Scenario } from "./scenario.js";

/** Minimal writable used for output (process.stdout/stderr or a test buffer). */
export interface Out {
  write(s: string): unknown;
  isTTY?: boolean;
}

export interface CliHooks {
  /** Replaces the default scenario list (API hook for tests; not usable with --jobs > 1). */
  scenarios?: readonly Scenario[];
  probes?: readonly LeakProbe[];
  stdout?: Out;
  stderr?: Out;
  /** Path printed in reproduce commands and forked by --jobs (default: this package's dist/cli.js). */
  cliPath?: string;
}

/** The env var naming extra scenario modules (path-delimiter separated), each exporting `scenarios`. */
export const SCENARIO_MODULE_ENV = "MPTEST_SCENARIO_MODULE";

interface Loaded {
  scenarios: Scenario[];
  probes: LeakProbe[];
}

async function loadScenarios(hooks: CliHooks): Promise<Loaded> {
  let scenarios: Scenario[];
  let probes: LeakProbe[];
  if (hooks.scenarios !== undefined) {
    scenarios = [...hooks.scenarios];
    probes = [...(hooks.probes ?? [])];
  } else {
    // Loaded lazily so that `--help` and the API hook do not load the whole runtime.
    const mod = await import("./scenarios/index.js");
    scenarios = mod.allScenarios();
    probes = [...mod.defaultProbes(), ...(hooks.probes ?? [])];
  }
  for (const p of (process.env[SCENARIO_MODULE_ENV] ?? "").split(delimiter).filter(Boolean)) {
    const url = pathToFileURL(isAbsolute(p) ? p : resolvePath(p)).href;
    const m = (await import(url)) as { scenarios?: Scenario[]; probes?: LeakProbe[] };
    scenarios.push(...(m.scenarios ?? []));
    probes.push(...(m.probes ?? []));
  }
  const seen = new Set<string>();
  for (const s of scenarios) {
    if (seen.has(s.name)) throw new UsageError(`duplicate scenario name '${s.name}'`);
    seen.add(s.name);
  }
  return { scenarios, probes };
}

function defaultCliPath(): string {
  return fileURLToPath(new URL("./cli.js", import.meta.url));
}

/** Arguments a --jobs child needs to run the same plan. */
function childArgs(args: CliArgs, seed: number): string[] {
  const out = ["--seed", String(seed), "--timeout", String(args.timeoutMs)];
  if (args.filter) out.push("--filter", args.filter.source);
  if (args.repeat !== undefined) out.push("--repeat", String(args.repeat));
  if (args.durationMs !== undefined) out.push("--duration", `${args.durationMs}ms`);
  if (args.untilFail) out.push("--until-fail");
  return out;
}

/** Failures printed in full per scenario; later ones get one line (all are in --json). */
const FULL_REPORTS_PER_SCENARIO = 3;

function firstLine(text: string): string {
  return text.split("\n", 1)[0]!.slice(0, 200);
}

function indent(text: string, pad = "    "): string {
  return text
    .split("\n")
    .map((l) => pad + l)
    .join("\n");
}

type Selected = { args: CliArgs; loaded: Loaded; selected: Scenario[] };

/** Parses argv and loads the scenarios; a number is the exit status (help, --list, usage error). */
async function prepare(argv: readonly string[], hooks: CliHooks, stdout: Out, stderr: Out): Promise<Selected | number> {
  let args: CliArgs;
  let loaded: Loaded;
  try {
    args = parseArgs(argv);
    if (args.help) {
      stdout.write(USAGE + "\n");
      return 0;
    }
    loaded = await loadScenarios(hooks);
  } catch (e) {
    if (e instanceof UsageError) {
      stderr.write(`mptest: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    throw e;
  }
  const selected = loaded.scenarios.filter((s) => args.filter === undefined || args.filter.test(s.name));
  if (args.list) {
    for (const s of selected) stdout.write(s.origin ? `${s.name}\t(${s.origin})\n` : `${s.name}\n`);
    return 0;
  }
  if (selected.length === 0) {
    stderr.write(`mptest: no scenario matches --filter ${args.filter?.source}\n`);
    return 2;
  }
  if (args.repeat === undefined && args.durationMs === undefined && !args.untilFail) args.durationMs = DEFAULT_DURATION_MS;
  return { args, loaded, selected };
}

/** A --jobs shard child: reports over IPC and prints nothing but the scenarios' own output. */
async function runShard({ args, loaded, selected }: Selected, seed: number): Promise<number> {
  const send = (m: ShardMessage): void => void process.send!(m);
  const res = await runScenarios({
    scenarios: selected,
    probes: loaded.probes,
    seed,
    timeoutMs: args.timeoutMs,
    untilFail: args.untilFail,
    shard: args.shard!,
    retainResults: false, // every result goes to the parent; none is kept here
    ...(args.repeat !== undefined ? { repeat: args.repeat } : {}),
    ...(args.durationMs !== undefined ? { durationMs: args.durationMs } : {}),
    onStart: (scenario, iteration, s) => send({ t: "start", scenario, iteration, seed: s }),
    onResult: (r) => send({ t: "result", r }),
  });
  send({ t: "end", stopped: res.stopped });
  return res.notPassed === 0 ? 0 : 1;
}

interface Reporter {
  readonly failures: FailureRecord[];
  onStart(scenario: string, iteration: number): void;
  onResult(r: IterationResult): void;
  clearLine(): void;
}

/** The full report of one failed iteration (the first few per scenario are printed this way). */
function failureReport(r: IterationResult, reproduce: string): string {
  const parts = [`${r.status.toUpperCase()} ${r.scenario} (iteration ${r.iteration}, seed ${r.seed})`];
  if (r.error) parts.push(indent(r.error));
  if (r.leaks) parts.push("  leaked (counter: baseline -> after):", indent(r.leaks.join("\n")));
  if (r.dump) parts.push("  state at timeout:", indent(r.dump));
  if (r.log && r.log.length > 0) parts.push("  scenario log:", indent(r.log.join("\n")));
  parts.push(`  reproduce: ${reproduce}`);
  return parts.join("\n") + "\n";
}

/** Progress line (redrawn on a TTY, every 5 s otherwise) and failures as they happen. */
function createReporter(args: CliArgs, stderr: Out, cliPath: string): Reporter {
  const displayCli = relative(process.cwd(), cliPath) || cliPath;
  const tty = stderr.isTTY === true;
  const extraModules = process.env[SCENARIO_MODULE_ENV];
  const envPrefix = extraModules ? `${SCENARIO_MODULE_ENV}=${shellQuote(extraModules)} ` : "";
  const t0 = Date.now();
  let runs = 0;
  let bad = 0;
  let lastPlain = t0;
  let lastTty = 0;
  let current = "";
  const clearLine = (): void => {
    if (tty) stderr.write("\r\x1b[K");
  };
  const progress = (): void => {
    const now = Date.now();
    // Redraw at most 10 times a second: fast scenarios finish thousands of iterations a second.
    if (tty && now - lastTty < 100) return;
    const line = `[${((now - t0) / 1000).toFixed(1)}s] ${runs} runs, ${bad} failed${current ? ` | ${current}` : ""}`;
    if (tty) {
      lastTty = now;
      stderr.write(`\r\x1b[K${line.slice(0, 160)}`);
    } else if (now - lastPlain >= 5000) {
      lastPlain = Date.now();
      stderr.write(line + "\n");
    }
  };
  const failures: FailureRecord[] = [];
  const printed = new Map<string, number>();
  const onResult = (r: IterationResult): void => {
    runs++;
    if (r.status !== "pass") {
      bad++;
      const rec: FailureRecord = {
        scenario: r.scenario,
        iteration: r.iteration,
        seed: r.seed,
        status: r.status,
        reproduce: envPrefix + reproduceCommand(displayCli, r.scenario, r.seed, ["--timeout", String(args.timeoutMs)]),
        ...(r.error !== undefined ? { error: r.error } : {}),
        ...(r.leaks !== undefined ? { leaks: r.leaks } : {}),
        ...(r.dump !== undefined ? { dump: r.dump } : {}),
        ...(r.log !== undefined && r.log.length > 0 ? { log: r.log } : {}),
      };
      failures.push(rec);
      clearLine();
      const shown = (printed.get(r.scenario) ?? 0) + 1;
      printed.set(r.scenario, shown);
      // A deterministic failure repeats every iteration: one line each after the first few.
      stderr.write(
        shown > FULL_REPORTS_PER_SCENARIO
          ? `${r.status.toUpperCase()} ${r.scenario} (iteration ${r.iteration}, seed ${r.seed}): ${firstLine(r.error ?? r.leaks?.join(", ") ?? "")}\n` +
              `  reproduce: ${rec.reproduce}\n`
          : failureReport(r, rec.reproduce),
      );
    }
    progress();
  };
  const onStart = (scenario: string, iteration: number): void => {
    current = `${scenario} #${iteration}`;
    progress();
  };
  return { failures, onStart, onResult, clearLine };
}

/** Runs the plan in-process or over --jobs children; a number is the exit status (usage error). */
async function execute(sel: Selected, hooks: CliHooks, seed: number, cliPath: string, reporter: Reporter, stderr: Out): Promise<RunResult | number> {
  const { args, loaded, selected } = sel;
  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) process.exit(130);
    interrupted = true;
  };
  const { onStart, onResult } = reporter;
  process.on("SIGINT", onSigint);
  try {
    if (args.jobs > 1) {
      if (hooks.scenarios !== undefined) throw new UsageError("--jobs > 1 cannot use in-memory scenarios (use MPTEST_SCENARIO_MODULE)");
      return await runJobs({
        cliPath,
        jobs: args.jobs,
        childArgs: childArgs(args, seed),
        timeoutMs: args.timeoutMs,
        untilFail: args.untilFail,
        onStart,
        onResult,
        shouldStop: () => interrupted,
      });
    }
    return await runScenarios({
      scenarios: selected,
      probes: loaded.probes,
      seed,
      timeoutMs: args.timeoutMs,
      untilFail: args.untilFail,
      ...(args.repeat !== undefined ? { repeat: args.repeat } : {}),
      ...(args.durationMs !== undefined ? { durationMs: args.durationMs } : {}),
      onStart,
      onResult,
      shouldStop: () => interrupted,
    });
  } catch (e) {
    if (e instanceof UsageError) {
      stderr.write(`mptest: ${e.message}\n`);
      return 2;
    }
    throw e;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** Prints the summary table and verdict, writes --json; returns the exit status. */
function finish(argv: readonly string[], sel: Selected, seed: number, startedAt: Date, res: RunResult, failures: FailureRecord[], stdout: Out): number {
  const { args, selected } = sel;
  const summary = summarize(
    selected.map((s) => s.name),
    res.results,
  );
  const t = totals(summary);
  const ok = t.runs > 0 && t.failures + t.leaks + t.hangs === 0 && failures.length === 0 && res.stopped !== "interrupted";
  stdout.write(formatTable(summary) + "\n");
  stdout.write(
    `mptest: ${ok ? "OK" : res.stopped === "interrupted" && t.failures + t.leaks + t.hangs === 0 ? "INTERRUPTED" : "FAILED"}: ${t.runs} runs, ${t.failures} failed, ${t.leaks} leaked, ${t.hangs} hung in ${(res.elapsedMs / 1000).toFixed(1)}s (seed ${seed}${res.stopped !== "done" ? `, stopped: ${res.stopped}` : ""})\n`,
  );
  if (args.json !== undefined) {
    const report: JsonReport = {
      version: 1,
      ok,
      seed,
      argv: [...argv],
      jobs: args.jobs,
      startedAt: startedAt.toISOString(),
      elapsedMs: res.elapsedMs,
      stopped: res.stopped,
      totals: t,
      scenarios: summary,
      failures,
    };
    writeFileSync(args.json, JSON.stringify(report, null, 2) + "\n");
  }
  return ok ? 0 : 1;
}

export async function runCli(argv: readonly string[], hooks: CliHooks = {}): Promise<number> {
  const stdout = hooks.stdout ?? process.stdout;
  const stderr = hooks.stderr ?? process.stderr;
  const sel = await prepare(argv, hooks, stdout, stderr);
  if (typeof sel === "number") return sel;
  const { args, selected } = sel;
  const seed = args.seed ?? randomSeed();
  const cliPath = hooks.cliPath ?? defaultCliPath();
  if (args.shard !== undefined && process.send !== undefined) return runShard(sel, seed);

  // Parent (or single process): progress, failures as they happen, summary.
  const startedAt = new Date();
  const reporter = createReporter(args, stderr, cliPath);
  const plan = args.repeat !== undefined ? `--repeat ${args.repeat}` : args.durationMs !== undefined ? `--duration ${args.durationMs / 1000}s` : "until failure";
  stderr.write(
    `mptest: ${selected.length} scenario(s), seed ${seed}, ${plan}${args.untilFail ? " --until-fail" : ""}, jobs ${args.jobs}, timeout ${args.timeoutMs} ms\n`,
  );
  const res = await execute(sel, hooks, seed, cliPath, reporter, stderr);
  if (typeof res === "number") return res;
  reporter.clearLine();
  return finish(argv, sel, seed, startedAt, res, reporter.failures, stdout);
}

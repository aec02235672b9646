// Public API of @multiprocess-ts/mptest: the runner used by the CLI and by the vitest suite.
// Threading: everything here runs on the mptest process's main thread (see each module).
export type { Scenario, ScenarioContext } from "./scenario.js";
export { createRng, iterationSeed, parseSeed, randomSeed } from "./rng.js";
export type { Rng } from "./rng.js";
export { runScenarios, runIteration, CHARGE_CAP_MS } from "./runner.js";
export type { RunOptions, RunResult, IterationResult, IterationStatus } from "./runner.js";
export { takeSnapshot, resourceSnapshot, diffSnapshots, settle, dumpProbes, dumpProbesAsync, DUMP_WAIT_MS } from "./leaks.js";
export type { LeakProbe, Snapshot } from "./leaks.js";
export { parseArgs, parseDuration, UsageError, USAGE, DEFAULT_DURATION_MS, DEFAULT_TIMEOUT_MS } from "./args.js";
export type { CliArgs } from "./args.js";
export { runCli, SCENARIO_MODULE_ENV } from "./command.js";
export type { CliHooks, Out } from "./command.js";
export { summarize, formatTable, percentile, reproduceCommand, totals } from "./report.js";
export type { ScenarioSummary, FailureRecord, JsonReport } from "./report.js";
export { allScenarios, defaultProbes } from "./scenarios/index.js";
export { closeWorkerPool, fooWorkerEntry, workerPoolStats } from "./scenarios/worker-driver.js";
export type { WorkerPoolStats } from "./scenarios/worker-driver.js";
export { CodeCachedBundle } from "./bundle-loader.js";
export type { CodeCacheUse } from "./loaded-bundle.js";
export { childSpareStats, closeChildSpare } from "./scenarios/process.js";
export { closeLifetimeThread, lifetimeThreadStats, lifetimeProbe, heldLifetimeScenario } from "./scenarios/lifetime.js";
export { FairShare } from "./schedule.js";
export { SharedGc } from "./shared-gc.js";
export { bundled, cachedChildArgv } from "./bundle.js";
export { loadBundle, loadCachedBundle, cacheData, cacheFileOf, wrapBundle } from "./code-cache.js";
export type { LoadedBundle } from "./code-cache.js";
export { Spare } from "./spare.js";
export type { SpareHooks, SpareStats } from "./spare.js";

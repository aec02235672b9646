/**
 * The default scenario list and leak probes of `mptest`.
 *
 * Threading: loop thread (the runner's main thread).
 */

import { dumpFixtures, fixtureCounters } from "@multiprocess-ts/testing";
import type { LeakProbe } from "../leaks.js";
import type { Scenario } from "../scenario.js";
import { listenScenarios } from "./listen.js";
import { upstreamScenarios } from "./upstream.js";
import { workerScenarios } from "./workers.js";
import { liveWorkers } from "./worker-driver.js";
import { randomScenarios } from "./random.js";
import { lifetimeProbe, lifetimeScenarios } from "./lifetime.js";
import { shutdownScenarios } from "./shutdown.js";
import { processScenarios, spawnScenarios } from "./process.js";

/** Every scenario, runnable or not, in suite order. */
export function allScenarios(): Scenario[] {
  return [
    ...upstreamScenarios,
    ...listenScenarios,
    ...spawnScenarios, // upstream #17
    ...workerScenarios,
    ...lifetimeScenarios,
    ...shutdownScenarios,
    ...randomScenarios,
    ...processScenarios,
  ];
}

/**
 * Leak counters: live TestSetups (their RPC tables and loop refs, with their state for hang
 * dumps) and live worker threads (which process.getActiveResourcesInfo() does not list).
 */
export function defaultProbes(): LeakProbe[] {
  return [
    { name: "fixture", snapshot: fixtureCounters, dump: dumpFixtures },
    lifetimeProbe,
    {
      name: "workers",
      snapshot: () => ({ alive: liveWorkers.size }),
      dump: () => `${liveWorkers.size} worker thread(s) alive: ${[...liveWorkers].map((w) => w.threadId).join(", ") || "none"}`,
    },
  ];
}

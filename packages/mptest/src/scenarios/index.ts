/** The default scenario list and leak probes of `mptest`. */

import type { LeakProbe } from "../leaks.js";
import type { Scenario } from "../scenario.js";

export function defaultScenarios(): Scenario[] {
  return [];
}

export function defaultProbes(): LeakProbe[] {
  return [];
}
